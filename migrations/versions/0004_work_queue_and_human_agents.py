"""The work queue (bot replies, outbound deliveries) and human agents: queue, agents,
assignments, replies.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 21:49:47.326705
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.db.entities import AGENT_TRIGGERS, QUEUE_TRIGGERS, RELEASE_AGENT_CAPACITY

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "support_agents",
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column(
            "skills",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column("max_concurrent_conversations", sa.Integer(), server_default="5", nullable=False),
        sa.Column(
            "shifts",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("timezone", sa.Text(), server_default="UTC", nullable=False),
        sa.Column("status", sa.Text(), server_default="offline", nullable=False),
        sa.Column(
            "status_changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("active_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('online', 'away', 'busy', 'offline')", name=op.f("ck_support_agents_status")
        ),
        sa.CheckConstraint("active_count >= 0", name=op.f("ck_support_agents_active_count")),
        sa.CheckConstraint(
            "max_concurrent_conversations >= 1", name=op.f("ck_support_agents_capacity")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_support_agents_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_agents")),
        sa.UniqueConstraint("org_id", "email", name=op.f("uq_support_agents_org_id")),
    )
    op.create_index(
        "ix_support_agents_org_id_status", "support_agents", ["org_id", "status"], unique=False
    )
    op.create_table(
        "agent_assignments",
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("conversation_id", sa.UUID(), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column("assignment_type", sa.Text(), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.CheckConstraint(
            "assignment_type IN ('auto', 'manual', 'escalation', 'transfer')",
            name=op.f("ck_agent_assignments_type"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["support_agents.id"],
            name=op.f("fk_agent_assignments_agent_id_support_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_agent_assignments_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_agent_assignments_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_assignments")),
    )
    op.create_index(
        "ix_agent_assignments_agent_id_started_at",
        "agent_assignments",
        ["agent_id", "started_at"],
        unique=False,
    )
    op.create_index(
        "ix_agent_assignments_unanswered",
        "agent_assignments",
        ["started_at"],
        unique=False,
        postgresql_where=sa.text("ended_at IS NULL AND first_response_at IS NULL"),
    )
    op.create_index(
        "uq_agent_assignments_active_conversation",
        "agent_assignments",
        ["conversation_id"],
        unique=True,
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    op.create_table(
        "agent_queue",
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("conversation_id", sa.UUID(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "required_skills",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), server_default="waiting", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "tried_agent_ids",
            postgresql.ARRAY(sa.UUID()),
            server_default=sa.text("'{}'::uuid[]"),
            nullable=False,
        ),
        sa.Column(
            "enqueued_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "priority_changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("dequeued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('waiting', 'assigned', 'cancelled')", name=op.f("ck_agent_queue_status")
        ),
        sa.CheckConstraint("priority BETWEEN 0 AND 3", name=op.f("ck_agent_queue_priority")),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_agent_queue_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_agent_queue_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_queue")),
    )
    op.create_index(
        "ix_agent_queue_waiting_order",
        "agent_queue",
        ["org_id", sa.literal_column("priority DESC"), "enqueued_at"],
        unique=False,
        postgresql_where=sa.text("status = 'waiting'"),
    )
    op.create_index(
        "uq_agent_queue_waiting_conversation",
        "agent_queue",
        ["conversation_id"],
        unique=True,
        postgresql_where=sa.text("status = 'waiting'"),
    )
    op.create_table(
        "agent_responses",
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("assignment_id", sa.UUID(), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column("conversation_id", sa.UUID(), nullable=False),
        sa.Column("message_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["support_agents.id"],
            name=op.f("fk_agent_responses_agent_id_support_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["agent_assignments.id"],
            name=op.f("fk_agent_responses_assignment_id_agent_assignments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_agent_responses_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_agent_responses_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_agent_responses_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_responses")),
    )
    op.create_index(
        "ix_agent_responses_assignment_id", "agent_responses", ["assignment_id"], unique=False
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("conversation_id", sa.UUID(), nullable=False),
        sa.Column("message_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "run_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('bot_reply', 'deliver')", name=op.f("ck_jobs_kind")),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'done', 'failed')", name=op.f("ck_jobs_status")
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_jobs_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_jobs_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_jobs_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("kind", "message_id", name=op.f("uq_jobs_kind")),
    )
    op.create_index(
        "ix_jobs_claim",
        "jobs",
        ["kind", "run_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )
    op.create_foreign_key(
        op.f("fk_api_keys_agent_id_support_agents"),
        "api_keys",
        "support_agents",
        ["agent_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.add_column("conversations", sa.Column("escalation_reason", sa.Text(), nullable=True))
    op.create_entity(RELEASE_AGENT_CAPACITY)
    for trigger in (*QUEUE_TRIGGERS, *AGENT_TRIGGERS):
        op.create_entity(trigger)


def downgrade() -> None:
    for trigger in (*QUEUE_TRIGGERS, *AGENT_TRIGGERS):
        op.drop_entity(trigger)
    op.drop_entity(RELEASE_AGENT_CAPACITY)
    op.drop_column("conversations", "escalation_reason")
    op.drop_constraint(op.f("fk_api_keys_agent_id_support_agents"), "api_keys", type_="foreignkey")
    op.drop_index(
        "ix_jobs_claim",
        table_name="jobs",
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )
    op.drop_table("jobs")
    op.drop_index("ix_agent_responses_assignment_id", table_name="agent_responses")
    op.drop_table("agent_responses")
    op.drop_index(
        "uq_agent_queue_waiting_conversation",
        table_name="agent_queue",
        postgresql_where=sa.text("status = 'waiting'"),
    )
    op.drop_index(
        "ix_agent_queue_waiting_order",
        table_name="agent_queue",
        postgresql_where=sa.text("status = 'waiting'"),
    )
    op.drop_table("agent_queue")
    op.drop_index(
        "uq_agent_assignments_active_conversation",
        table_name="agent_assignments",
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    op.drop_index(
        "ix_agent_assignments_unanswered",
        table_name="agent_assignments",
        postgresql_where=sa.text("ended_at IS NULL AND first_response_at IS NULL"),
    )
    op.drop_index("ix_agent_assignments_agent_id_started_at", table_name="agent_assignments")
    op.drop_table("agent_assignments")
    op.drop_index("ix_support_agents_org_id_status", table_name="support_agents")
    op.drop_table("support_agents")
