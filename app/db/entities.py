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

# BM25 needs, per knowledge base, the number of chunks, their total length and how many chunks
# hold each term. Kept here, statement by statement, so every path that writes or deletes chunks
# (replacing a document, cascades from a document, knowledge base or organization) keeps them
# exact. The knowledge base row is updated first: concurrent writers to one knowledge base queue
# on it and then take the term rows in the same (sorted) order, so they cannot deadlock.
MAINTAIN_KNOWLEDGE_BASE_STATISTICS = PGFunction(
    schema="public",
    signature="maintain_knowledge_base_statistics()",
    definition="""
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE knowledge_bases AS kb
        SET chunk_count = kb.chunk_count - s.chunks, token_count = kb.token_count - s.tokens
        FROM (
            SELECT knowledge_base_id, count(*) AS chunks, sum(token_count) AS tokens
            FROM old_rows GROUP BY knowledge_base_id
        ) AS s
        WHERE kb.id = s.knowledge_base_id;
        -- One statement: the rows that drop to zero are deleted, the others decremented.
        WITH c AS (
            SELECT knowledge_base_id, lexeme AS term, count(*) AS df
            FROM old_rows, unnest(tsvector_to_array(terms)) AS lexeme
            GROUP BY knowledge_base_id, lexeme
        ), gone AS (
            DELETE FROM knowledge_base_terms AS t
            USING c
            WHERE t.knowledge_base_id = c.knowledge_base_id AND t.term = c.term AND t.df <= c.df
        )
        UPDATE knowledge_base_terms AS t
        SET df = t.df - c.df
        FROM c
        WHERE t.knowledge_base_id = c.knowledge_base_id AND t.term = c.term AND t.df > c.df;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE knowledge_bases AS kb
        SET chunk_count = kb.chunk_count + s.chunks, token_count = kb.token_count + s.tokens
        FROM (
            SELECT knowledge_base_id, count(*) AS chunks, sum(token_count) AS tokens
            FROM new_rows GROUP BY knowledge_base_id
        ) AS s
        WHERE kb.id = s.knowledge_base_id;
        INSERT INTO knowledge_base_terms AS t (knowledge_base_id, term, df)
        SELECT knowledge_base_id, lexeme, count(*)
        FROM new_rows, unnest(tsvector_to_array(terms)) AS lexeme
        GROUP BY knowledge_base_id, lexeme
        ORDER BY knowledge_base_id, lexeme
        ON CONFLICT (knowledge_base_id, term) DO UPDATE SET df = t.df + excluded.df;
    END IF;
    RETURN NULL;
END;
$$
""",
)


def statistics_triggers(table: str) -> list[PGTrigger]:
    events = {
        "insert": "REFERENCING NEW TABLE AS new_rows",
        "update": "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "delete": "REFERENCING OLD TABLE AS old_rows",
    }
    return [
        PGTrigger(
            schema="public",
            signature=f"statistics_{table}_{event}",
            on_entity=f"public.{table}",
            definition=(
                f"AFTER {event.upper()} ON public.{table} {clause} FOR EACH STATEMENT "
                "EXECUTE FUNCTION public.maintain_knowledge_base_statistics()"
            ),
        )
        for event, clause in events.items()
    ]


KNOWLEDGE_TRIGGERS = [
    *audit_triggers("knowledge_bases", "chunk_count", "token_count"),
    *audit_triggers("documents", "content"),
    *audit_triggers("document_chunks", "content", "terms", "embedding"),
    *statistics_triggers("document_chunks"),
]

QUEUE_TRIGGERS = audit_triggers("agent_queue")

RELEASE_AGENT_CAPACITY = PGFunction(
    schema="public",
    signature="release_agent_capacity()",
    definition="""
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- Whoever ends an assignment (an agent, a timeout, a cleanup function) frees its slot.
    IF TG_OP = 'UPDATE' THEN
        UPDATE support_agents AS a SET active_count = a.active_count - ended.n
        FROM (
            SELECT n.agent_id, count(*) AS n
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE o.ended_at IS NULL AND n.ended_at IS NOT NULL
            GROUP BY n.agent_id
        ) AS ended
        WHERE a.id = ended.agent_id;
    ELSE
        UPDATE support_agents AS a SET active_count = a.active_count - ended.n
        FROM (
            SELECT agent_id, count(*) AS n FROM old_rows WHERE ended_at IS NULL GROUP BY agent_id
        ) AS ended
        WHERE a.id = ended.agent_id;
    END IF;
    RETURN NULL;
END;
$$
""",
)

CAPACITY_TRIGGERS = [
    PGTrigger(
        schema="public",
        signature=f"agent_assignments_release_{event}",
        on_entity="public.agent_assignments",
        definition=(
            f"AFTER {event.upper()} ON public.agent_assignments {clause} FOR EACH STATEMENT "
            "EXECUTE FUNCTION public.release_agent_capacity()"
        ),
    )
    for event, clause in {
        "update": "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "delete": "REFERENCING OLD TABLE AS old_rows",
    }.items()
]

AGENT_TRIGGERS = [
    *audit_triggers("support_agents", "active_count", "last_assigned_at"),
    *audit_triggers("agent_assignments"),
    *audit_triggers("agent_responses"),
    *CAPACITY_TRIGGERS,
]

ENTITIES: list[ReplaceableEntity] = [
    LOG_AUDIT_EVENT,
    *FOUNDATION_TRIGGERS,
    UPDATE_CONVERSATION_METRICS,
    *INTEGRATION_TRIGGERS,
    MAINTAIN_KNOWLEDGE_BASE_STATISTICS,
    *KNOWLEDGE_TRIGGERS,
    *QUEUE_TRIGGERS,
    RELEASE_AGENT_CAPACITY,
    *AGENT_TRIGGERS,
]
