"""Organizations and API keys: creation, bootstrap, listing, revocation."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from litestar.exceptions import NotFoundException, ValidationException
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.security.keys import generate_api_key, hash_api_key, key_prefix
from app.db.models import ApiKey, Organization, SupportAgent
from app.domain.orgs.auth import Principal
from app.domain.orgs.repository import ApiKeyRepository, OrganizationRepository

DEFAULT_ORG = "default"
# Serialises the first-start bootstrap across replicas starting at once.
BOOTSTRAP_LOCK_ID = 7_314_001


async def issue_key(
    session: AsyncSession,
    org_id: uuid.UUID,
    name: str,
    role: str,
    agent_id: uuid.UUID | None = None,
    key: str | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key (only its hash) and return the row with the one clear copy of the key."""
    key = key or generate_api_key()
    row = ApiKey(
        org_id=org_id,
        name=name,
        role=role,
        agent_id=agent_id,
        prefix=key_prefix(key),
        key_hash=hash_api_key(key),
    )
    return await ApiKeyRepository(session, org_id).add(row), key


async def create_organization(
    session: AsyncSession, name: str, admin_key: str | None = None
) -> tuple[Organization, str]:
    org = await OrganizationRepository(session).add(Organization(name=name))
    _, key = await issue_key(session, org.id, "admin", "admin", key=admin_key)
    return org, key


async def bootstrap(session: AsyncSession, admin_key: str | None) -> str | None:
    """On an empty database create the `default` organization; return a generated key to show."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": BOOTSTRAP_LOCK_ID})
    if await OrganizationRepository(session).exists_any():
        return None
    _, key = await create_organization(session, DEFAULT_ORG, admin_key)
    return None if admin_key else key


class OrganizationService:
    def __init__(self, session: AsyncSession, principal: Principal) -> None:
        self.session = session
        self.principal = principal
        self.orgs = OrganizationRepository(session)

    async def current(self) -> Organization:
        org = await self.orgs.get(self.principal.org_id)
        if org is None:  # the key was valid a moment ago; the org was deleted meanwhile
            raise NotFoundException("Organization not found")
        return org

    async def rename(self, name: str) -> Organization:
        self.principal.require_admin()
        return await self.orgs.update(await self.current(), {"name": name})


class ApiKeyService:
    def __init__(self, session: AsyncSession, principal: Principal) -> None:
        principal.require_admin()
        self.session = session
        self.principal = principal
        self.keys = ApiKeyRepository(session, principal.org_id)

    async def create(self, name: str, role: str, agent_id: uuid.UUID | None) -> tuple[ApiKey, str]:
        if agent_id is not None:
            agent = await self.session.get(SupportAgent, agent_id)
            if agent is None or agent.org_id != self.principal.org_id:
                raise ValidationException(
                    "No such agent", extra=[{"key": "agent_id", "message": "no such agent"}]
                )
        return await issue_key(self.session, self.principal.org_id, name, role, agent_id)

    async def list(self) -> Sequence[ApiKey]:
        return await self.keys.list_active()

    async def revoke(self, key_id: uuid.UUID) -> None:
        row = await self.keys.get_active(key_id)
        if row is None:
            raise NotFoundException("API key not found")
        await self.keys.update(row, {"revoked_at": datetime.now(UTC)})
