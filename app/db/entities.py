"""SQL functions and triggers, declared once here and owned by Alembic (through alembic_utils).

`ENTITIES` is what `migrations/env.py` registers, so `alembic check` fails when the database and
these declarations drift apart. Migrations import the same objects they create, which keeps one
definition of each function.

Auditing: inserts and deletes are audited per statement over transition tables (one
`INSERT ... SELECT` per statement instead of one trigger call per row, which keeps bulk writes
cheap), updates per row. Insert rows carry no values (the row holds them until its first update
or its delete records them). Columns named in a trigger's arguments are left out of the audit row
(secrets, hashes) and out of the "did anything change" comparison (counters the database
maintains itself), so a no-op update writes nothing.
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
    ignored text[];
    new_row jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- No values: they are the row itself, and the row's first UPDATE (or its DELETE) records
        -- them as old_values. Serialising every inserted row would cost more than the insert.
        IF TG_TABLE_NAME = 'organizations' THEN
            INSERT INTO audit_logs (table_name, record_id, operation, user_id, org_id)
            SELECT TG_TABLE_NAME, n.id::text, 'INSERT', actor, coalesce(actor_org, n.id)
            FROM new_rows AS n;
        ELSE
            INSERT INTO audit_logs (table_name, record_id, operation, user_id, org_id)
            SELECT TG_TABLE_NAME, n.id::text, 'INSERT', actor, coalesce(actor_org, n.org_id)
            FROM new_rows AS n;
        END IF;
        RETURN NULL;
    END IF;
    ignored := TG_ARGV::text[] || ARRAY['updated_at'];
    IF TG_OP = 'UPDATE' THEN
        -- The trigger's WHEN has already found a change outside the ignored columns.
        new_row := to_jsonb(NEW) - ignored;
        INSERT INTO audit_logs
            (table_name, record_id, operation, old_values, new_values, user_id, org_id)
        VALUES (TG_TABLE_NAME, NEW.id::text, 'UPDATE', to_jsonb(OLD) - ignored, new_row, actor,
                coalesce(actor_org, (new_row ->> 'org_id')::uuid,
                         CASE WHEN TG_TABLE_NAME = 'organizations' THEN NEW.id END));
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

# How each event is audited, chosen by measurement (bench/audit_overhead.py): inserts and deletes
# once per statement over a transition table, so a bulk statement costs one trigger call;
# updates once per row, which for the usual single-row update is cheaper than building two
# transition tables and joining them. (A trigger with transition tables may only fire on one
# event.)
AUDIT_INSERT = "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
AUDIT_DELETE = "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"


def audit_update_condition(*ignored_columns: str) -> str:
    """The update trigger's WHEN: the row changed outside the ignored columns. Compared as
    records with those columns blanked, in the executor, so a no-op update or one that only moves
    counters (update_conversation_metrics on every message) never calls the function."""
    blank = ", ".join(f'"{column}": null' for column in (*ignored_columns, "updated_at"))
    return (
        f"jsonb_populate_record(OLD, '{{{blank}}}'::jsonb) "
        f"IS DISTINCT FROM jsonb_populate_record(NEW, '{{{blank}}}'::jsonb)"
    )


def audit_triggers(table: str, *ignored_columns: str) -> list[PGTrigger]:
    """The three triggers that audit `table`, one per event."""
    args = ", ".join(f"'{column}'" for column in ignored_columns)
    timing = {
        "insert": AUDIT_INSERT,
        "update": f"FOR EACH ROW WHEN ({audit_update_condition(*ignored_columns)})",
        "delete": AUDIT_DELETE,
    }
    return [
        PGTrigger(
            schema="public",
            signature=f"audit_{table}_{event}",
            on_entity=f"public.{table}",
            definition=(
                f"AFTER {event.upper()} ON public.{table} {clause} "
                f"EXECUTE FUNCTION public.log_audit_event({args})"
            ),
        )
        for event, clause in timing.items()
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


# The full-text index holds each chunk's terms behind the first 8 hex digits of its knowledge base
# id ("1b2c3d4e:refund"), so posting lists are per knowledge base: a search in a small knowledge
# base never walks the postings of a large one sharing the table (which a plain GIN index on
# `terms` does, and `btree_gin` would avoid, but the embedded PostgreSQL ships no extension).
KNOWLEDGE_BASE_LEXEMES = PGFunction(
    schema="public",
    signature="knowledge_base_lexemes(kb uuid, terms tsvector)",
    definition="""
RETURNS tsvector
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT array_to_tsvector(ARRAY(
        SELECT left(kb::text, 8) || ':' || lexeme FROM unnest(tsvector_to_array(terms)) AS lexeme
    ))
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

# The database's own work: retention and clean-up, one bounded batch per call so every call is a
# short transaction; callers repeat while a batch comes back full. `run_maintenance_tasks` is the
# one entry point (the app's scheduler, `botlyne maintenance run`, pg_cron, an operator in psql).

# Any constant shared by every caller; one maintenance pass runs at a time.
MAINTENANCE_LOCK_ID = 7_314_003

CLEANUP_ABANDONED_CONVERSATIONS = PGFunction(
    schema="public",
    signature=(
        "cleanup_abandoned_conversations(idle interval DEFAULT '24 hours', "
        "batch integer DEFAULT 1000)"
    ),
    definition="""
RETURNS integer
LANGUAGE sql
AS $$
-- Jobs are left alone: a pending bot turn finds the conversation resolved and ends silently, and
-- a reply already written is still delivered (or given up by the delivery worker).
WITH abandoned AS (
    SELECT id FROM conversations
    WHERE status <> 'resolved' AND last_message_at < now() - idle
    ORDER BY last_message_at
    LIMIT batch
    -- A conversation a request holds right now is not idle; a later pass looks again.
    FOR UPDATE SKIP LOCKED
), resolved AS (
    -- Keys as arrays (here and below): index lookups, where a join may pick a full scan.
    UPDATE conversations
    SET status = 'resolved', resolution_reason = 'abandoned', resolved_at = now(),
        assigned_agent_id = NULL, updated_at = now()
    WHERE id = ANY (ARRAY(SELECT id FROM abandoned))
    RETURNING id
), dequeued AS (
    UPDATE agent_queue SET status = 'cancelled', dequeued_at = now()
    WHERE conversation_id = ANY (ARRAY(SELECT id FROM resolved)) AND status = 'waiting'
), released AS (
    -- The release_agent_capacity trigger frees the agents' slots.
    UPDATE agent_assignments SET ended_at = now(), end_reason = 'abandoned'
    WHERE conversation_id = ANY (ARRAY(SELECT id FROM resolved)) AND ended_at IS NULL
)
SELECT count(*)::integer FROM resolved
$$
""",
)

# `message_count` counts the messages a conversation still has, so a conversation whose history is
# gone leaves the partial index the batches are found through, and a batch never walks over
# conversations emptied before. Jobs and agent replies of the messages go with them (ON DELETE
# CASCADE, through indexes on their message_id).
CLEANUP_OLD_MESSAGES = PGFunction(
    schema="public",
    signature="cleanup_old_messages(age interval DEFAULT '7 days', batch integer DEFAULT 5000)",
    definition="""
RETURNS integer
LANGUAGE sql
AS $$
WITH candidates AS (
    -- The oldest conversations, as many as hold `batch` messages (by their message_count).
    SELECT id,
           sum(message_count) OVER (ORDER BY resolved_at ROWS UNBOUNDED PRECEDING)
           - message_count AS before
    FROM conversations
    WHERE status = 'resolved' AND resolved_at < now() - age AND message_count > 0
    ORDER BY resolved_at
    LIMIT batch
), expired AS (
    SELECT id FROM conversations
    WHERE id = ANY (ARRAY(SELECT id FROM candidates WHERE before < batch))
      AND status = 'resolved' AND resolved_at < now() - age AND message_count > 0
    -- Held so that a new message cannot reopen the conversation while its history goes.
    FOR UPDATE SKIP LOCKED
), deleted AS (
    -- By ctid (here and below): a TID scan, where a join on id may pick a full scan.
    DELETE FROM messages
    WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM messages WHERE conversation_id IN (SELECT id FROM expired) LIMIT batch
    ))
    RETURNING conversation_id
), counted AS (
    UPDATE conversations AS c SET message_count = c.message_count - d.n
    FROM (SELECT conversation_id, count(*)::integer AS n FROM deleted GROUP BY conversation_id) AS d
    WHERE c.id = d.conversation_id
)
SELECT count(*)::integer FROM deleted
$$
""",
)

PURGE_INTEGRATION_EVENTS = PGFunction(
    schema="public",
    signature=(
        "purge_integration_events(retention interval DEFAULT '30 days', batch integer DEFAULT 5000)"
    ),
    definition="""
RETURNS integer
LANGUAGE sql
AS $$
WITH deleted AS (
    DELETE FROM integration_events
    WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM integration_events
        WHERE received_at < now() - retention
        ORDER BY received_at
        LIMIT batch
    ))
    RETURNING 1
)
SELECT count(*)::integer FROM deleted
$$
""",
)

# Daily partitions (UTC days), named audit_logs_YYYYMMDD, so retention drops whole days. Creating
# or dropping a partition locks audit_logs, and with it every audited write, until the pass
# commits: a short lock_timeout gives up on a busy table instead of queueing writers behind the
# DDL, and a later pass tries again (partitions are made days ahead).
ENSURE_AUDIT_PARTITIONS = PGFunction(
    schema="public",
    signature="ensure_audit_partitions(ahead integer DEFAULT 7)",
    definition="""
RETURNS integer
LANGUAGE plpgsql
SET lock_timeout TO '200ms'
AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    covered date;
    created integer := 0;
BEGIN
    FOR covered IN SELECT generate_series(today, today + ahead, interval '1 day')::date LOOP
        CONTINUE WHEN to_regclass(format('public.audit_logs_%s', to_char(covered, 'YYYYMMDD')))
            IS NOT NULL;
        BEGIN
            EXECUTE format(
                'CREATE TABLE public.%I PARTITION OF public.audit_logs '
                'FOR VALUES FROM (%L) TO (%L)',
                'audit_logs_' || to_char(covered, 'YYYYMMDD'),
                covered::timestamp AT TIME ZONE 'UTC',
                (covered + 1)::timestamp AT TIME ZONE 'UTC'
            );
            created := created + 1;
        EXCEPTION
            -- The default partition holds rows of that day (written before any partition
            -- covered it): they stay there until purge_audit_logs deletes them.
            WHEN check_violation THEN NULL;
            WHEN lock_not_available OR duplicate_table THEN NULL;
        END;
    END LOOP;
    RETURN created;
END;
$$
""",
)

PURGE_AUDIT_LOGS = PGFunction(
    schema="public",
    signature="purge_audit_logs(retention interval DEFAULT '90 days', batch integer DEFAULT 5000)",
    definition="""
RETURNS jsonb
LANGUAGE plpgsql
SET lock_timeout TO '200ms'
AS $$
DECLARE
    cutoff timestamptz := now() - retention;
    expired regclass;
    dropped integer := 0;
    deleted integer;
BEGIN
    DELETE FROM audit_logs_default
    WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM audit_logs_default WHERE "timestamp" < cutoff LIMIT batch
    ));
    GET DIAGNOSTICS deleted = ROW_COUNT;
    FOR expired IN
        SELECT c.oid::regclass
        FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'public.audit_logs'::regclass
          AND substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([^'']+)''\\)')
              ::timestamptz <= cutoff
    LOOP
        BEGIN
            EXECUTE format('DROP TABLE %s', expired);
            dropped := dropped + 1;
        EXCEPTION WHEN lock_not_available THEN NULL;
        END;
    END LOOP;
    RETURN jsonb_build_object('rows_deleted', deleted, 'partitions_dropped', dropped);
END;
$$
""",
)

RUN_MAINTENANCE_TASKS = PGFunction(
    schema="public",
    signature=(
        "run_maintenance_tasks(abandoned_after interval DEFAULT '24 hours', "
        "message_retention interval DEFAULT '7 days', "
        "audit_retention interval DEFAULT '90 days', "
        "integration_event_retention interval DEFAULT '30 days', "
        "conversation_batch integer DEFAULT 1000, row_batch integer DEFAULT 5000)"
    ),
    definition=f"""
RETURNS jsonb
LANGUAGE plpgsql
AS $$
DECLARE
    started timestamptz := clock_timestamp();
    abandoned integer := 0;
    messages integer := 0;
    events integer := 0;
    audit jsonb := '{{"rows_deleted": 0, "partitions_dropped": 0}}';
    created integer := 0;
    hot_work_remaining boolean := false;
    stale regclass;
    analyzed text;
    more_to_analyze boolean := false;
    -- One pass at a time whoever calls; a caller that finds one running leaves the work to it.
    locked boolean := pg_try_advisory_xact_lock({MAINTENANCE_LOCK_ID});
BEGIN
    IF locked THEN
        abandoned := cleanup_abandoned_conversations(abandoned_after, conversation_batch);
        messages := cleanup_old_messages(message_retention, row_batch);
        events := purge_integration_events(integration_event_retention, row_batch);
        hot_work_remaining := abandoned >= conversation_batch OR messages >= row_batch
            OR events >= row_batch;
        -- Statistics once the backlog is gone (not after every batch of a long drain), and one
        -- table per pass, since ANALYZE of a large table takes a while: the hot table that
        -- changed most since its last ANALYZE, once past autovacuum's own threshold. Only tables
        -- this role may analyze, or one it may not would be picked again on every pass.
        IF NOT hot_work_remaining THEN
            FOR stale IN
                SELECT s.relid::regclass
                FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid
                WHERE s.relid = ANY (ARRAY['conversations', 'messages', 'jobs', 'agent_queue',
                                           'agent_assignments', 'integration_events']::regclass[])
                  AND pg_has_role(c.relowner, 'USAGE')
                  AND s.n_mod_since_analyze
                      > current_setting('autovacuum_analyze_threshold')::integer
                        + current_setting('autovacuum_analyze_scale_factor')::float8
                          * greatest(c.reltuples, 0)
                ORDER BY s.n_mod_since_analyze / greatest(c.reltuples, 1) DESC
            LOOP
                IF analyzed IS NOT NULL THEN
                    more_to_analyze := true;
                    EXIT;
                END IF;
                EXECUTE format('ANALYZE %s', stale);
                analyzed := stale::text;
            END LOOP;
        END IF;
        -- Last, because the partition DDL holds audit_logs until the pass commits.
        audit := purge_audit_logs(audit_retention, row_batch);
        created := ensure_audit_partitions();
    END IF;
    RETURN jsonb_build_object(
        'skipped', NOT locked,
        'abandoned_conversations', abandoned,
        'messages_deleted', messages,
        'integration_events_deleted', events,
        'audit_rows_deleted', audit -> 'rows_deleted',
        'audit_partitions_dropped', audit -> 'partitions_dropped',
        'audit_partitions_created', created,
        'analyzed', analyzed,
        'work_remaining', hot_work_remaining OR more_to_analyze
            OR (audit ->> 'rows_deleted')::integer >= row_batch,
        'duration_ms', round(extract(epoch FROM clock_timestamp() - started)::numeric * 1000, 1)
    );
END;
$$
""",  # noqa: S608 (the one value put in is the lock id, a constant)
)

MAINTENANCE_FUNCTIONS = [
    CLEANUP_ABANDONED_CONVERSATIONS,
    CLEANUP_OLD_MESSAGES,
    PURGE_INTEGRATION_EVENTS,
    ENSURE_AUDIT_PARTITIONS,
    PURGE_AUDIT_LOGS,
    RUN_MAINTENANCE_TASKS,
]

ENTITIES: list[ReplaceableEntity] = [
    LOG_AUDIT_EVENT,
    *FOUNDATION_TRIGGERS,
    UPDATE_CONVERSATION_METRICS,
    *INTEGRATION_TRIGGERS,
    KNOWLEDGE_BASE_LEXEMES,
    MAINTAIN_KNOWLEDGE_BASE_STATISTICS,
    *KNOWLEDGE_TRIGGERS,
    *QUEUE_TRIGGERS,
    RELEASE_AGENT_CAPACITY,
    *AGENT_TRIGGERS,
    *MAINTENANCE_FUNCTIONS,
]
