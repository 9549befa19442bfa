"""Maintenance: clean-up and retention functions, daily audit partitions, the indexes they need;
a cheaper audit trigger (value-less insert rows, row-level updates).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 22:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic_utils.pg_function import PGFunction
from alembic_utils.pg_trigger import PGTrigger

from app.db.entities import (
    AGENT_TRIGGERS,
    FOUNDATION_TRIGGERS,
    INTEGRATION_TRIGGERS,
    KNOWLEDGE_TRIGGERS,
    LOG_AUDIT_EVENT,
    MAINTENANCE_FUNCTIONS,
    QUEUE_TRIGGERS,
)

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("status <> 'resolved'")
RESOLVED_WITH_MESSAGES = sa.text("status = 'resolved' AND message_count > 0")

# The update audit triggers of the tables 0001-0004 created (a later table gets its own in the
# migration that creates it).
AUDIT_UPDATE_TRIGGERS = [
    trigger
    for trigger in (
        *FOUNDATION_TRIGGERS,
        *INTEGRATION_TRIGGERS,
        *KNOWLEDGE_TRIGGERS,
        *QUEUE_TRIGGERS,
        *AGENT_TRIGGERS,
    )
    if trigger.signature.startswith("audit_") and trigger.signature.endswith("_update")
]

# What 0001-0004 had, for the downgrade: statement-level updates, values on insert rows.
PREVIOUS_UPDATE_TIMING = (
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT"
)
PREVIOUS_LOG_AUDIT_EVENT = PGFunction(
    schema="public",
    signature="log_audit_event()",
    definition="""
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    actor text := nullif(current_setting('app.user_id', true), '');
    actor_org uuid := nullif(current_setting('app.org_id', true), '')::uuid;
    ignored text[] := TG_ARGV::text[] || ARRAY['updated_at'];
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO audit_logs (table_name, record_id, operation, new_values, user_id, org_id)
        SELECT TG_TABLE_NAME, r.j ->> 'id', 'INSERT', r.j - ignored, actor,
               coalesce(actor_org, (r.j ->> 'org_id')::uuid,
                        CASE WHEN TG_TABLE_NAME = 'organizations' THEN (r.j ->> 'id')::uuid END)
        FROM (SELECT to_jsonb(n) AS j FROM new_rows n) AS r;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO audit_logs
            (table_name, record_id, operation, old_values, new_values, user_id, org_id)
        SELECT TG_TABLE_NAME, r.o ->> 'id', 'UPDATE', r.o, r.n, actor,
               coalesce(actor_org, (r.n ->> 'org_id')::uuid,
                        CASE WHEN TG_TABLE_NAME = 'organizations' THEN (r.n ->> 'id')::uuid END)
        FROM (
            SELECT to_jsonb(o) - ignored AS o, to_jsonb(n) - ignored AS n
            FROM old_rows o JOIN new_rows n ON n.id = o.id
        ) AS r
        WHERE r.o IS DISTINCT FROM r.n;
    ELSE
        INSERT INTO audit_logs (table_name, record_id, operation, old_values, user_id, org_id)
        SELECT TG_TABLE_NAME, r.j ->> 'id', 'DELETE', r.j - ignored, actor,
               coalesce(actor_org, (r.j ->> 'org_id')::uuid,
                        CASE WHEN TG_TABLE_NAME = 'organizations' THEN (r.j ->> 'id')::uuid END)
        FROM (SELECT to_jsonb(o) AS j FROM old_rows o) AS r;
    END IF;
    RETURN NULL;
END;
$$
""",
)


def _previous(trigger: PGTrigger) -> PGTrigger:
    function = trigger.definition.rsplit("EXECUTE FUNCTION", 1)[1]
    return PGTrigger(
        schema=trigger.schema,
        signature=trigger.signature,
        on_entity=trigger.on_entity,
        definition=(
            f"AFTER UPDATE ON {trigger.on_entity} {PREVIOUS_UPDATE_TIMING} "
            f"EXECUTE FUNCTION{function}"
        ),
    )


def upgrade() -> None:
    op.create_index(
        "ix_conversations_open_last_message_at",
        "conversations",
        ["last_message_at"],
        postgresql_where=OPEN,
    )
    op.create_index(
        "ix_conversations_resolved_with_messages",
        "conversations",
        ["resolved_at"],
        postgresql_where=RESOLVED_WITH_MESSAGES,
    )
    op.create_index("ix_agent_responses_message_id", "agent_responses", ["message_id"])
    op.drop_constraint(op.f("uq_jobs_kind"), "jobs", type_="unique")
    op.create_unique_constraint(op.f("uq_jobs_message_id"), "jobs", ["message_id", "kind"])
    op.replace_entity(LOG_AUDIT_EVENT)
    for trigger in AUDIT_UPDATE_TRIGGERS:
        op.replace_entity(trigger)
    for function in MAINTENANCE_FUNCTIONS:
        op.create_entity(function)
    # Today's and the coming days' partitions; the scheduler keeps them ahead from here on.
    op.execute("SELECT ensure_audit_partitions()")


def downgrade() -> None:
    # Rows of the daily partitions go back to the default partition, which 0004 had alone.
    op.execute(
        """
DO $$
DECLARE
    daily regclass;
BEGIN
    FOR daily IN
        SELECT inhrelid::regclass FROM pg_inherits
        WHERE inhparent = 'public.audit_logs'::regclass
          AND inhrelid <> 'public.audit_logs_default'::regclass
    LOOP
        EXECUTE format('ALTER TABLE public.audit_logs DETACH PARTITION %s', daily);
        EXECUTE format(
            'INSERT INTO public.audit_logs OVERRIDING SYSTEM VALUE SELECT * FROM %s', daily
        );
        EXECUTE format('DROP TABLE %s', daily);
    END LOOP;
END;
$$
"""
    )
    for function in reversed(MAINTENANCE_FUNCTIONS):
        op.drop_entity(function)
    for trigger in AUDIT_UPDATE_TRIGGERS:
        op.replace_entity(_previous(trigger))
    op.replace_entity(PREVIOUS_LOG_AUDIT_EVENT)
    op.drop_constraint(op.f("uq_jobs_message_id"), "jobs", type_="unique")
    op.create_unique_constraint(op.f("uq_jobs_kind"), "jobs", ["kind", "message_id"])
    op.drop_index("ix_agent_responses_message_id", table_name="agent_responses")
    op.drop_index(
        "ix_conversations_resolved_with_messages",
        table_name="conversations",
        postgresql_where=RESOLVED_WITH_MESSAGES,
    )
    op.drop_index(
        "ix_conversations_open_last_message_at", table_name="conversations", postgresql_where=OPEN
    )
