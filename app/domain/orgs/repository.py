"""Data access for organizations and API keys."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select

from app.db.models import ApiKey, Organization
from app.db.repository import OrgScopedRepository, Repository


class OrganizationRepository(Repository[Organization]):
    model = Organization

    async def get_by_name(self, name: str) -> Organization | None:
        return await self.one_or_none(select(Organization).where(Organization.name == name))

    async def exists_any(self) -> bool:
        return bool((await self.session.execute(select(func.count(Organization.id)))).scalar_one())


class ApiKeyRepository(OrgScopedRepository[ApiKey]):
    model = ApiKey

    async def list_active(self) -> Sequence[ApiKey]:
        return await self.all(
            self.select().where(ApiKey.revoked_at.is_(None)).order_by(ApiKey.created_at, ApiKey.id)
        )

    async def get_active(self, key_id: uuid.UUID) -> ApiKey | None:
        return await self.one_or_none(
            self.select().where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        )


class ApiKeyLookup(Repository[ApiKey]):
    """Finds a key across organizations: only authentication needs this, before an org is known."""

    model = ApiKey

    async def by_prefix(self, prefix: str) -> ApiKey | None:
        return await self.one_or_none(
            select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
        )

    async def active(self, key_id: uuid.UUID) -> ApiKey | None:
        return await self.one_or_none(
            select(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        )
