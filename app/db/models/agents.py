"""Human support: agents, the queue of conversations waiting for one, assignments, replies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, IdMixin, TimestampMixin, one_of

PRIORITIES = ("low", "normal", "high", "urgent")


class AgentQueueEntry(IdMixin, Base):
    __tablename__ = "agent_queue"
    __table_args__ = (
        CheckConstraint("priority BETWEEN 0 AND 3", name="priority"),
        one_of("status", "waiting", "assigned", "cancelled"),
        # A conversation waits in the queue at most once.
        Index(
            "uq_agent_queue_waiting_conversation",
            "conversation_id",
            unique=True,
            postgresql_where=text("status = 'waiting'"),
        ),
        Index(
            "ix_agent_queue_waiting_order",
            "org_id",
            text("priority DESC"),
            "enqueued_at",
            postgresql_where=text("status = 'waiting'"),
        ),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    # 0 low, 1 normal, 2 high, 3 urgent: a number so the queue orders by it directly.
    priority: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    required_skills: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")
    )
    reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="waiting")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    tried_agent_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(UUID(as_uuid=True)), nullable=False, server_default=text("'{}'::uuid[]")
    )
    enqueued_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # When the entry last rose a priority step (queue timeout) or was (re)queued.
    priority_changed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    dequeued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SupportAgent(IdMixin, TimestampMixin, Base):
    __tablename__ = "support_agents"
    __table_args__ = (
        one_of("status", "online", "away", "busy", "offline"),
        CheckConstraint("max_concurrent_conversations >= 1", name="capacity"),
        # Raised by assignment (a conditional UPDATE), lowered by the trigger that sees an
        # assignment end; never negative whoever ends it.
        CheckConstraint("active_count >= 0", name="active_count"),
        UniqueConstraint("org_id", "email"),
        Index("ix_support_agents_org_id_status", "org_id", "status"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(Text, nullable=False)
    email: Mapped[str] = mapped_column(Text, nullable=False)
    skills: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")
    )
    max_concurrent_conversations: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default="5"
    )
    # [{"weekday": 0-6 (Monday = 0), "start": "HH:MM", "end": "HH:MM"}] in `timezone`.
    shifts: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    timezone: Mapped[str] = mapped_column(Text, nullable=False, server_default="UTC")
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="offline")
    status_changed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    active_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AgentAssignment(IdMixin, Base):
    __tablename__ = "agent_assignments"
    __table_args__ = (
        one_of("assignment_type", "auto", "manual", "escalation", "transfer", name="type"),
        # The invariant: a conversation is never held by two agents.
        Index(
            "uq_agent_assignments_active_conversation",
            "conversation_id",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index("ix_agent_assignments_agent_id_started_at", "agent_id", "started_at"),
        Index(
            "ix_agent_assignments_unanswered",
            "started_at",
            postgresql_where=text("ended_at IS NULL AND first_response_at IS NULL"),
        ),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    agent_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("support_agents.id", ondelete="CASCADE"), nullable=False
    )
    assignment_type: Mapped[str] = mapped_column(Text, nullable=False)
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    first_response_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    end_reason: Mapped[str | None] = mapped_column(Text)


class AgentResponse(IdMixin, Base):
    __tablename__ = "agent_responses"
    __table_args__ = (
        Index("ix_agent_responses_assignment_id", "assignment_id"),
        # Deleting messages finds their replies (ON DELETE CASCADE) through it.
        Index("ix_agent_responses_message_id", "message_id"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    assignment_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("agent_assignments.id", ondelete="CASCADE"), nullable=False
    )
    agent_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("support_agents.id", ondelete="CASCADE"), nullable=False
    )
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    message_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
