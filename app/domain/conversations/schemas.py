"""Conversation and message bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

ConversationStatus = Literal["bot", "queued", "assigned", "resolved"]


class Contact(msgspec.Struct):
    external_id: str
    name: str | None


class ConversationOut(msgspec.Struct):
    id: uuid.UUID
    status: ConversationStatus
    integration_id: uuid.UUID
    contact: Contact
    assigned_agent_id: uuid.UUID | None
    priority: str
    created_at: datetime
    last_message_at: datetime
    message_count: int
    escalation_reason: str | None
    resolved_at: datetime | None
    resolution_reason: str | None


class ConversationList(msgspec.Struct):
    items: list[ConversationOut]
    next_cursor: str | None


class MessageOut(msgspec.Struct):
    id: uuid.UUID
    role: Literal["user", "bot", "agent", "system"]
    content: str
    created_at: datetime
    delivery_status: Literal["pending", "sent", "failed"] | None
    sources: list[dict[str, Any]] | None


class MessageList(msgspec.Struct):
    items: list[MessageOut]
    next_cursor: str | None


class ResolveRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)] = "resolved"
