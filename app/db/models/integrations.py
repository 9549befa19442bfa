"""Integrations (the channels end users write in through), their configuration and every webhook
attempt made against them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, IdMixin, TimestampMixin, one_of


class Integration(IdMixin, TimestampMixin, Base):
    __tablename__ = "integrations"
    __table_args__ = (
        one_of("type", "generic", "evolution"),
        one_of("status", "active", "disabled"),
        Index("ix_integrations_org_id", "org_id"),
        # The knowledge base must be the organization's own; deleting it nulls only the
        # reference (the integration then answers from the organization's default one).
        ForeignKeyConstraint(
            ["knowledge_base_id", "org_id"],
            ["knowledge_bases.id", "knowledge_bases.org_id"],
            ondelete="SET NULL (knowledge_base_id)",
        ),
        Index("ix_integrations_knowledge_base_id", "knowledge_base_id"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    type: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="active")
    knowledge_base_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    # Soft delete: the webhook answers 410 Gone for a deleted integration instead of 404.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IntegrationConfig(IdMixin, TimestampMixin, Base):
    """One row per integration: what the webhook checks and how replies go back out.

    `secrets` is the rotation history, newest first: `[{"secret", "created_at", "expires_at"}]`;
    a secret is active until its `expires_at` (null for the current one).
    """

    __tablename__ = "integration_configs"

    org_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    integration_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("integrations.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    )
    secrets: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    allowed_ips: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")
    )
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    rate_limit_per_hour: Mapped[int | None] = mapped_column(Integer)
    # Channel settings: `callback_url` (generic), `instance` and `api_key` (evolution).
    settings: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )


class IntegrationEvent(Base):
    """One row per webhook attempt, accepted or not. Never the secret, signature or body."""

    __tablename__ = "integration_events"
    __table_args__ = (
        one_of("outcome", "accepted", "duplicate", "rejected"),
        # The database decides what a duplicate is: one accepted delivery per key.
        Index(
            "uq_integration_events_delivery",
            "integration_id",
            "delivery_key",
            unique=True,
            postgresql_where=text("outcome = 'accepted'"),
        ),
        Index("ix_integration_events_integration_id_id", "integration_id", "id"),
        Index("ix_integration_events_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    org_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    integration_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    status_code: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    reason: Mapped[str] = mapped_column(String(64), nullable=False)
    client_ip: Mapped[str | None] = mapped_column(INET)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    delivery_key: Mapped[str | None] = mapped_column(Text)
    event_type: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
