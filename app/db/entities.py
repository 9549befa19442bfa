"""SQL functions and triggers, declared once here and owned by Alembic (through alembic_utils).

`ENTITIES` is what `migrations/env.py` registers, so `alembic check` fails when the database and
these declarations drift apart. Migrations import the same objects they create, which keeps one
definition of each function.

Auditing is statement-level with transition tables: one `INSERT ... SELECT` per statement instead
of one trigger call per row, which keeps bulk writes cheap. Columns named in a trigger's arguments
are left out of the audit row (secrets, hashes) and out of the "did anything change" comparison
(counters the database maintains itself), so a no-op update writes nothing.
"""

from __future__ import annotations

from alembic_utils.pg_function import PGFunction
from alembic_utils.pg_trigger import PGTrigger
from alembic_utils.replaceable_entity import ReplaceableEntity

LOG_AUDIT_EVENT = PGFunction(
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


def audit_triggers(table: str, *ignored_columns: str) -> list[PGTrigger]:
    """The three statement-level triggers that audit `table` (one per event: a trigger with
    transition tables may only fire on one event)."""
    args = ", ".join(f"'{column}'" for column in ignored_columns)
    events = {
        "insert": "REFERENCING NEW TABLE AS new_rows",
        "update": "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "delete": "REFERENCING OLD TABLE AS old_rows",
    }
    return [
        PGTrigger(
            schema="public",
            signature=f"audit_{table}_{event}",
            on_entity=f"public.{table}",
            definition=(
                f"AFTER {event.upper()} ON public.{table} {clause} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION public.log_audit_event({args})"
            ),
        )
        for event, clause in events.items()
    ]


FOUNDATION_TRIGGERS = [*audit_triggers("organizations"), *audit_triggers("api_keys", "key_hash")]

# Columns the database keeps itself; changing them is not a user's change.
CONVERSATION_METRIC_COLUMNS = (
    "message_count",
    "last_message_at",
    "first_bot_response_at",
    "first_human_response_at",
)

UPDATE_CONVERSATION_METRICS = PGFunction(
    schema="public",
    signature="update_conversation_metrics()",
    definition="""
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE conversations AS c
    SET message_count = c.message_count + m.added,
        last_message_at = greatest(c.last_message_at, m.last_at),
        first_bot_response_at = coalesce(c.first_bot_response_at, m.first_bot),
        first_human_response_at = coalesce(c.first_human_response_at, m.first_agent)
    FROM (
        SELECT conversation_id,
               count(*) AS added,
               max(created_at) AS last_at,
               min(created_at) FILTER (WHERE role = 'bot') AS first_bot,
               min(created_at) FILTER (WHERE role = 'agent') AS first_agent
        FROM new_rows
        GROUP BY conversation_id
    ) AS m
    WHERE c.id = m.conversation_id;
    RETURN NULL;
END;
$$
""",
)

MESSAGES_METRICS_TRIGGER = PGTrigger(
    schema="public",
    signature="messages_update_conversation_metrics",
    on_entity="public.messages",
    definition=(
        "AFTER INSERT ON public.messages REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION public.update_conversation_metrics()"
    ),
)

INTEGRATION_TRIGGERS = [
    *audit_triggers("integrations"),
    *audit_triggers("integration_configs", "secrets"),
    *audit_triggers("conversations", *CONVERSATION_METRIC_COLUMNS),
    MESSAGES_METRICS_TRIGGER,
]

ENTITIES: list[ReplaceableEntity] = [
    LOG_AUDIT_EVENT,
    *FOUNDATION_TRIGGERS,
    UPDATE_CONVERSATION_METRICS,
    *INTEGRATION_TRIGGERS,
]
