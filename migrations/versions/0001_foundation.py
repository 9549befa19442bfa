"""Foundation: organizations, API keys, the partitioned audit trail and its trigger.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 21:17:50.625672
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.db.entities import FOUNDATION_TRIGGERS, LOG_AUDIT_EVENT

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_logs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column(
            "timestamp", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("table_name", sa.String(length=63), nullable=False),
        sa.Column("record_id", sa.Text(), nullable=False),
        sa.Column("operation", sa.String(length=8), nullable=False),
        sa.Column("old_values", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("new_values", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("org_id", sa.UUID(), nullable=True),
        sa.PrimaryKeyConstraint("id", "timestamp", name=op.f("pk_audit_logs")),
        postgresql_partition_by="RANGE (timestamp)",
    )
    op.create_index(
        "ix_audit_logs_org_id_timestamp", "audit_logs", ["org_id", "timestamp"], unique=False
    )
    op.create_index("ix_audit_logs_record", "audit_logs", ["table_name", "record_id"], unique=False)
    # Rows land here until time-ranged partitions exist for them.
    op.execute("CREATE TABLE audit_logs_default PARTITION OF audit_logs DEFAULT")
    op.create_table(
        "organizations",
        sa.Column("name", sa.String(length=200), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
        sa.UniqueConstraint("name", name=op.f("uq_organizations_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
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
        sa.CheckConstraint("role IN ('admin', 'agent')", name=op.f("ck_api_keys_role")),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_api_keys_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_index("ix_api_keys_org_id", "api_keys", ["org_id"], unique=False)
    op.create_entity(LOG_AUDIT_EVENT)
    for trigger in FOUNDATION_TRIGGERS:
        op.create_entity(trigger)


def downgrade() -> None:
    for trigger in FOUNDATION_TRIGGERS:
        op.drop_entity(trigger)
    op.drop_entity(LOG_AUDIT_EVENT)
    op.drop_index("ix_api_keys_org_id", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("organizations")
    op.drop_index("ix_audit_logs_record", table_name="audit_logs")
    op.drop_index("ix_audit_logs_org_id_timestamp", table_name="audit_logs")
    op.drop_table("audit_logs")
