"""Conversations with end users and their messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, IdMixin, TimestampMixin, one_of
from app.db.models.agents import PRIORITIES

CONVERSATION_STATUSES = ("bot", "queued", "assigned", "resolved")
MESSAGE_ROLES = ("user", "bot", "agent", "system")


class Conversation(IdMixin, TimestampMixin, Base):
    __tablename__ = "conversations"
    __table_args__ = (
        one_of("status", *CONVERSATION_STATUSES),
        one_of("priority", *PRIORITIES),
        # One conversation per thread of an integration, found again by the sender's key and
        # reopened when it was resolved.
        UniqueConstraint("integration_id", "thread_key"),
        Index(
            "ix_conversations_org_id_status_last_message_at", "org_id", "status", "last_message_at"
        ),
        # Maintenance: idle open conversations (abandoned), and resolved ones that still have
        # messages (retention); each holds only the rows its clean-up may still touch.
        Index(
            "ix_conversations_open_last_message_at",
            "last_message_at",
            postgresql_where=text("status <> 'resolved'"),
        ),
        Index(
            "ix_conversations_resolved_with_messages",
            "resolved_at",
            postgresql_where=text("status = 'resolved' AND message_count > 0"),
        ),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    integration_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("integrations.id", ondelete="CASCADE"), nullable=False
    )
    thread_key: Mapped[str] = mapped_column(Text, nullable=False)
    contact_external_id: Mapped[str] = mapped_column(Text, nullable=False)
    contact_name: Mapped[str | None] = mapped_column(Text)
    # Where replies go: the Evolution instance and number, as the inbound message gave them.
    channel: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="bot")
    priority: Mapped[str] = mapped_column(String(8), nullable=False, server_default="normal")
    assigned_agent_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    # Kept by the update_conversation_metrics trigger; lowered when retention deletes messages,
    # so it counts the messages the conversation still has.
    message_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_message_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    first_bot_response_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_human_response_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolution_reason: Mapped[str | None] = mapped_column(Text)
    escalation_reason: Mapped[str | None] = mapped_column(Text)


class Message(IdMixin, Base):
    __tablename__ = "messages"
    __table_args__ = (
        one_of("role", *MESSAGE_ROLES),
        one_of("delivery_status", "pending", "sent", "failed"),
        Index("ix_messages_conversation_id_created_at", "conversation_id", "created_at"),
        Index(
            "uq_messages_conversation_external",
            "conversation_id",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
    )

    # The organization through the conversation (its key cascades); no key of its own.
    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    role: Mapped[str] = mapped_column(String(8), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    external_id: Mapped[str | None] = mapped_column(Text)
    delivery_status: Mapped[str | None] = mapped_column(String(16))
    sources: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
