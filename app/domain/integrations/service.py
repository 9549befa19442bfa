"""Integrations: creation with a signing secret, configuration, rotation, soft deletion, events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar.exceptions import NotFoundException, ValidationException
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.security.signatures import generate_secret
from app.db.models import Integration, IntegrationConfig, IntegrationEvent
from app.domain.integrations.repository import (
    IntegrationConfigRepository,
    IntegrationEventRepository,
    IntegrationRepository,
)
from app.domain.integrations.schemas import (
    IntegrationCreate,
    IntegrationOut,
    IntegrationUpdate,
)
from app.domain.knowledge.repository import KnowledgeBaseRepository
from app.domain.orgs.auth import Principal

WEBHOOK_PATH = "/api/v1/integrations/webhook/{id}"


SecretEntries = tuple[tuple[str, datetime | None], ...]


def parse_secrets(secrets: list[dict[str, Any]]) -> SecretEntries:
    """Stored secrets as (secret, end of its grace period or None)."""
    return tuple(
        (
            entry["secret"],
            datetime.fromisoformat(entry["expires_at"]) if entry.get("expires_at") else None,
        )
        for entry in secrets
    )


def usable_secrets(secrets: SecretEntries, now: datetime) -> list[str]:
    """Secrets a signature may use now: the current one and those still in their grace period."""
    return [secret for secret, expires in secrets if expires is None or expires > now]


def active_secrets(secrets: list[dict[str, Any]], now: datetime) -> list[str]:
    return usable_secrets(parse_secrets(secrets), now)


def present(integration: Integration, config: IntegrationConfig) -> IntegrationOut:
    return IntegrationOut(
        id=integration.id,
        name=integration.name,
        type=integration.type,  # type: ignore[arg-type]
        status=integration.status,
        allowed_ips=list(config.allowed_ips),
        rate_limit_per_minute=config.rate_limit_per_minute,
        rate_limit_per_hour=config.rate_limit_per_hour,
        knowledge_base_id=integration.knowledge_base_id,
        # The Evolution API key is a credential: say whether it is set, never what it is.
        config={k: ("***" if k == "api_key" else v) for k, v in config.settings.items()},
        webhook_path=WEBHOOK_PATH.format(id=integration.id),
        active_secrets=len(active_secrets(config.secrets, datetime.now(UTC))),
        created_at=integration.created_at,
        updated_at=max(integration.updated_at, config.updated_at),
    )


class IntegrationService:
    def __init__(self, session: AsyncSession, principal: Principal) -> None:
        self.session = session
        self.principal = principal
        self.integrations = IntegrationRepository(session, principal.org_id)
        self.configs = IntegrationConfigRepository(session, principal.org_id)
        self.event_log = IntegrationEventRepository(session, principal.org_id)

    async def _check_knowledge_base(self, kb_id: uuid.UUID | None) -> None:
        """An integration may only answer from its own organization's knowledge."""
        if (
            kb_id is not None
            and await KnowledgeBaseRepository(self.session, self.principal.org_id).get(kb_id)
            is None
        ):
            raise ValidationException(
                "No such knowledge base",
                extra=[{"key": "knowledge_base_id", "message": "no such knowledge base"}],
            )

    async def create(self, data: IntegrationCreate) -> tuple[IntegrationOut, str]:
        self.principal.require_admin()
        await self._check_knowledge_base(data.knowledge_base_id)
        integration = await self.integrations.add(
            Integration(
                org_id=self.principal.org_id,
                name=data.name,
                type=data.type,
                knowledge_base_id=data.knowledge_base_id,
            )
        )
        secret = data.secret or generate_secret()
        config = await self.configs.add(
            IntegrationConfig(
                org_id=self.principal.org_id,
                integration_id=integration.id,
                secrets=[_secret_entry(secret)],
                allowed_ips=data.allowed_ips or [],
                rate_limit_per_minute=data.rate_limit_per_minute,
                rate_limit_per_hour=data.rate_limit_per_hour,
                settings=msgspec.to_builtins(data.config) if data.config else {},
            )
        )
        return present(integration, config), secret

    async def _live(self, integration_id: uuid.UUID) -> tuple[Integration, IntegrationConfig]:
        integration = await self.integrations.get_live(integration_id)
        if integration is None:
            raise NotFoundException("Integration not found")
        return integration, await self.configs.for_integration(integration_id)

    async def get(self, integration_id: uuid.UUID) -> IntegrationOut:
        return present(*await self._live(integration_id))

    async def list(self) -> list[IntegrationOut]:
        integrations = await self.integrations.list_live()
        configs = await self.configs.for_integrations([i.id for i in integrations])
        return [present(i, configs[i.id]) for i in integrations]

    async def update(self, integration_id: uuid.UUID, data: IntegrationUpdate) -> IntegrationOut:
        self.principal.require_admin()
        integration, config = await self._live(integration_id)
        # Only the fields the client sent change.
        sent = {f for f in data.__struct_fields__ if getattr(data, f) is not None}
        integration_values: dict[str, Any] = {
            f: getattr(data, f) for f in ("name", "status") if f in sent
        }
        if "knowledge_base_id" in sent:
            await self._check_knowledge_base(data.knowledge_base_id)
            integration_values["knowledge_base_id"] = data.knowledge_base_id
        config_values: dict[str, Any] = {
            f: getattr(data, f)
            for f in ("allowed_ips", "rate_limit_per_minute", "rate_limit_per_hour")
            if f in sent
        }
        if data.config is not None:
            config_values["settings"] = {**config.settings, **msgspec.to_builtins(data.config)}
        if integration_values:
            integration = await self.integrations.update(integration, integration_values)
        if config_values:
            config = await self.configs.update(config, config_values)
        return present(integration, config)

    async def delete(self, integration_id: uuid.UUID) -> None:
        self.principal.require_admin()
        integration, _ = await self._live(integration_id)
        await self.integrations.update(integration, {"deleted_at": datetime.now(UTC)})

    async def rotate_secret(
        self, integration_id: uuid.UUID, grace_seconds: int, secret: str | None
    ) -> tuple[str, datetime]:
        """Make a new current secret; older ones stay valid for `grace_seconds` at most."""
        self.principal.require_admin()
        _, config = await self._live(integration_id)
        now = datetime.now(UTC)
        grace_end = now + timedelta(seconds=grace_seconds)
        kept = []
        for entry in config.secrets:
            expires = entry.get("expires_at")
            if expires is None or datetime.fromisoformat(expires) > now:
                ends = min(grace_end, datetime.fromisoformat(expires)) if expires else grace_end
                kept.append({**entry, "expires_at": ends.isoformat()})
        new_secret = secret or generate_secret()
        await self.configs.update(config, {"secrets": [_secret_entry(new_secret), *kept]})
        return new_secret, grace_end

    async def events(
        self, integration_id: uuid.UUID, outcome: str | None, limit: int, cursor: int | None
    ) -> Sequence[IntegrationEvent]:
        await self._live(integration_id)
        return await self.event_log.page(integration_id, outcome, limit, cursor)


def _secret_entry(secret: str) -> dict[str, Any]:
    return {"secret": secret, "created_at": datetime.now(UTC).isoformat(), "expires_at": None}
