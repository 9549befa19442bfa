"""Messages and jobs keep one foreign key each on the path from their organization.

A message references its conversation and a job its message, and each cascades from the one
above it up to the organization. The other keys they had (`messages.org_id`, `jobs.org_id`,
`jobs.conversation_id`: copies kept to scope queries) added nothing a delete needs, and each
cost an inbound message a check that locks the referenced row: every message of an
organization locked the same `organizations` row, so concurrent deliveries shared that lock
(PostgreSQL records several holders of a row lock in a multixact). Three of the five checks an
accepted webhook delivery made are gone.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 06:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, referenced table)
_KEYS = (
    ("messages", "org_id", "organizations"),
    ("jobs", "org_id", "organizations"),
    ("jobs", "conversation_id", "conversations"),
)


def upgrade() -> None:
    for table, column, referenced in _KEYS:
        op.drop_constraint(op.f(f"fk_{table}_{column}_{referenced}"), table, type_="foreignkey")


def downgrade() -> None:
    for table, column, referenced in _KEYS:
        op.create_foreign_key(
            op.f(f"fk_{table}_{column}_{referenced}"),
            table,
            referenced,
            [column],
            ["id"],
            ondelete="CASCADE",
        )
