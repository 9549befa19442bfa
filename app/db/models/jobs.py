"""The work queue: durable jobs claimed by workers with `FOR UPDATE SKIP LOCKED`.

A job is written in the same transaction (often the same statement) as the row it is about, so
nothing accepted can be lost between "stored" and "queued". Kinds: `bot_reply` (answer an inbound
message) and `deliver` (send an outbound message to its channel: the transactional outbox).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, one_of


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        one_of("kind", "bot_reply", "deliver"),
        one_of("status", "pending", "running", "done", "failed"),
        # At most one job of a kind per message: enqueueing twice is harmless. message_id first
        # so deleting messages finds their jobs (ON DELETE CASCADE) through this index.
        UniqueConstraint("message_id", "kind"),
        # Claims scan only live jobs, in due order.
        Index(
            "ix_jobs_claim",
            "kind",
            "run_at",
            postgresql_where=text("status IN ('pending', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    # Organization and conversation through the message (its key cascades); no keys of their own.
    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    conversation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    message_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    run_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # A claimed job is leased; a worker that dies mid-job lets the lease lapse and another
    # worker takes the job again.
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
