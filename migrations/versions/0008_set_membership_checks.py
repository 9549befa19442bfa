"""Set-membership CHECK constraints written as one comparison with an array literal.

PostgreSQL reads and plans a table's CHECK expressions again in every statement that writes the
table. `status IN ('a', 'b')` on a varchar column is stored as an array built by casting each
value, which every statement rebuilt; `status::text = ANY ('{a,b}'::text[])` is the same test
with one constant. On an accepted webhook delivery (four tables written) the old form was about a
tenth of PostgreSQL's time. The allowed values do not change.

Each constraint is swapped under a brief lock (the new one `NOT VALID`), then validated outside
the migration's transaction, which reads the table without blocking writes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 06:10:00.000000
"""

from collections.abc import Callable, Sequence

from alembic import op

from app.db.base import one_of_expression

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, constraint name, column, allowed values)
_CHECKS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("api_keys", "role", "role", ("admin", "agent")),
    ("integrations", "type", "type", ("generic", "evolution")),
    ("integrations", "status", "status", ("active", "disabled")),
    ("integration_events", "outcome", "outcome", ("accepted", "duplicate", "rejected")),
    ("conversations", "status", "status", ("bot", "queued", "assigned", "resolved")),
    ("conversations", "priority", "priority", ("low", "normal", "high", "urgent")),
    ("messages", "role", "role", ("user", "bot", "agent", "system")),
    ("messages", "delivery_status", "delivery_status", ("pending", "sent", "failed")),
    ("support_agents", "status", "status", ("online", "away", "busy", "offline")),
    (
        "agent_assignments",
        "type",
        "assignment_type",
        ("auto", "manual", "escalation", "transfer"),
    ),
    ("agent_queue", "status", "status", ("waiting", "assigned", "cancelled")),
    ("jobs", "kind", "kind", ("bot_reply", "deliver")),
    ("jobs", "status", "status", ("pending", "running", "done", "failed")),
)


def _swap(expression: Callable[[str, tuple[str, ...]], str]) -> None:
    for table, name, column, values in _CHECKS:
        constraint = op.f(f"ck_{table}_{name}")
        op.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT {constraint}, "
            f"ADD CONSTRAINT {constraint} CHECK ({expression(column, values)}) NOT VALID"
        )
    with op.get_context().autocommit_block():
        for table, name, _, _ in _CHECKS:
            op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {op.f(f'ck_{table}_{name}')}")


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def upgrade() -> None:
    _swap(lambda column, values: one_of_expression(column, *values))


def downgrade() -> None:
    _swap(_in_list)
