"""Request and response bodies of organizations and API keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Role = Literal["admin", "agent"]


class OrganizationOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime


class OrganizationUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    role: Role = "admin"
    agent_id: uuid.UUID | None = None


class ApiKeyOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    role: Role
    prefix: str
    agent_id: uuid.UUID | None
    created_at: datetime


class ApiKeyCreated(ApiKeyOut):
    """Carries the key itself: the only time it is ever shown."""

    api_key: str


class ApiKeyList(msgspec.Struct):
    items: list[ApiKeyOut]
    total: int
