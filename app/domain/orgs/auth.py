"""Who is calling: the API key dependency every `/api/v1` handler receives.

The key is resolved inside the request's own transaction, and the acting key and organization are
handed to the audit trigger there (`set_config(..., true)`), so audit rows name the caller.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TypeAlias

from litestar import Request
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from loguru import logger
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import DbSession, set_actor
from app.core.security.keys import key_matches, key_prefix
from app.domain.orgs.repository import ApiKeyLookup

BEARER = "bearer "
MAX_KEY_LENGTH = 256


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: uuid.UUID
    org_id: uuid.UUID
    role: str
    agent_id: uuid.UUID | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def require_admin(self) -> None:
        if not self.is_admin:
            raise PermissionDeniedException("This operation needs an admin API key")


def presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization")
    if authorization is not None and authorization[: len(BEARER)].lower() == BEARER:
        return authorization[len(BEARER) :].strip() or None
    return request.headers.get("x-api-key") or None


async def authenticate(db_session: AsyncSession, key: str) -> Principal | None:
    """The principal of an active API key, with the audit actor set; None for any other key."""
    row = None
    if len(key) <= MAX_KEY_LENGTH:
        row = await ApiKeyLookup(db_session).by_prefix(key_prefix(key))
    if row is None or not key_matches(key, row.key_hash):
        logger.info("rejected an unknown API key")
        return None
    await set_actor(db_session, str(row.id), str(row.org_id))
    return Principal(key_id=row.id, org_id=row.org_id, role=row.role, agent_id=row.agent_id)


async def provide_principal(request: Request, db_session: DbSession) -> Principal:
    key = presented_key(request)
    if key is None:
        raise NotAuthorizedException("Missing API key", headers={"WWW-Authenticate": "Bearer"})
    principal = await authenticate(db_session, key)
    if principal is None:
        raise NotAuthorizedException("Invalid API key", headers={"WWW-Authenticate": "Bearer"})
    request.scope["state"]["org_id"] = str(principal.org_id)
    return principal


# What a handler declares to receive the authenticated caller.
Caller: TypeAlias = NamedDependency[Principal]
