"""Short-lived stream tokens: how a browser's EventSource (which cannot send headers) proves
its API key without the key ever appearing in a URL.

A token is `<key id>.<expiry>.<signature>`, the signature an HMAC-SHA256 keyed by the API key's
stored hash. Any server process can check it (the hash is in the database they share), nobody
without the database can forge one, it expires after `TOKEN_TTL_SECONDS`, and revoking the key
voids it. It opens the event stream and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import set_actor
from app.domain.orgs.auth import Principal
from app.domain.orgs.repository import ApiKeyLookup

TOKEN_TTL_SECONDS = 120
_DOMAIN = "botlyne-events-v1"


def _signature(key_hash: str, key_id: uuid.UUID, expires: int) -> str:
    digest = hmac.new(
        key_hash.encode(), f"{_DOMAIN}:{key_id}:{expires}".encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue_token(key_id: uuid.UUID, key_hash: str, now: float | None = None) -> tuple[str, int]:
    """A token for the key and its expiry (Unix seconds)."""
    expires = int(now if now is not None else time.time()) + TOKEN_TTL_SECONDS
    return f"{key_id.hex}.{expires}.{_signature(key_hash, key_id, expires)}", expires


async def token_key_hash(session: AsyncSession, key_id: uuid.UUID) -> str | None:
    row = await ApiKeyLookup(session).active(key_id)
    return row.key_hash if row is not None else None


async def principal_for_token(
    session: AsyncSession, token: str, now: float | None = None
) -> Principal | None:
    """The principal of a valid, unexpired token of an active key; None otherwise."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 200:
        return None
    try:
        key_id = uuid.UUID(hex=parts[0])
        expires = int(parts[1])
    except ValueError:
        return None
    if expires < (now if now is not None else time.time()):
        return None
    row = await ApiKeyLookup(session).active(key_id)
    if row is None or not hmac.compare_digest(
        parts[2].encode(), _signature(row.key_hash, key_id, expires).encode()
    ):
        return None
    await set_actor(session, str(row.id), str(row.org_id))
    return Principal(key_id=row.id, org_id=row.org_id, role=row.role, agent_id=row.agent_id)
