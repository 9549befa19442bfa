"""Each clean-up rule with controlled timestamps, through the path production takes: the service
running `run_maintenance_tasks()` passes."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.maintenance.service import RetentionPolicy, run
from tests.conftest import make_settings
from tests.maintenance.conftest import Rows

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


async def test_idle_conversations_are_resolved_and_free_queue_and_agents(
    rows: Rows, clean_db: AsyncEngine, policy: RetentionPolicy
) -> None:
    queued = await rows.conversation(idle=25 * HOUR, status="queued")
    entry = await rows.enqueue(queued)
    assigned = await rows.conversation(idle=25 * HOUR, status="assigned")
    agent = await rows.agent()
    assignment = await rows.assign(assigned, agent)
    live = await rows.conversation(idle=23 * HOUR, status="queued")
    live_entry = await rows.enqueue(live)
    closed = await rows.conversation(idle=30 * DAY, status="resolved", resolved_ago=2 * DAY)

    summary = await run(clean_db, policy)

    assert summary["abandoned_conversations"] == 2
    assert summary["work_remaining"] is False
    conversations = dict(
        (row[0], row[1:])
        for row in await rows.sql(
            "SELECT id, status, resolution_reason, resolved_at > now() - interval '1 minute', "
            "assigned_agent_id FROM conversations"
        )
    )
    assert conversations[queued] == ("resolved", "abandoned", True, None)
    assert conversations[assigned] == ("resolved", "abandoned", True, None)
    assert conversations[live] == ("queued", None, None, None)
    assert conversations[closed][:2] == ("resolved", "user")
    assert conversations[closed][2] is False  # resolved before, left as it was
    queue = dict(await rows.sql("SELECT id, status FROM agent_queue"))
    assert queue == {entry: "cancelled", live_entry: "waiting"}
    ended = await rows.sql(
        "SELECT ended_at IS NOT NULL, end_reason FROM agent_assignments WHERE id = :id",
        id=assignment,
    )
    assert ended == [(True, "abandoned")]
    assert await rows.scalar("SELECT active_count FROM support_agents") == 0
    # Written by the database with no acting key: the row's own organization.
    audited = await rows.sql(
        "SELECT record_id, user_id, org_id FROM audit_logs WHERE table_name = 'conversations' "
        "AND operation = 'UPDATE' AND new_values ->> 'resolution_reason' = 'abandoned'"
    )
    assert sorted(audited) == sorted(
        [(str(queued), None, rows.org_id), (str(assigned), None, rows.org_id)]
    )


async def test_messages_of_conversations_resolved_long_ago_are_deleted(
    rows: Rows, clean_db: AsyncEngine, policy: RetentionPolicy
) -> None:
    expired = await rows.conversation(status="resolved", resolved_ago=8 * DAY, messages=3)
    recent = await rows.conversation(status="resolved", resolved_ago=6 * DAY, messages=2)
    live = await rows.conversation(idle=HOUR)
    await rows.messages(live, 2, age=30 * DAY)  # old messages of a live conversation stay
    agent = await rows.agent()
    assignment = await rows.assign(expired, agent)
    (message,) = await rows.sql(
        "SELECT id FROM messages WHERE conversation_id = :c LIMIT 1", c=expired
    )
    await rows.sql(
        "INSERT INTO agent_responses (org_id, assignment_id, agent_id, conversation_id, "
        "message_id) VALUES (:org, :assignment, :agent, :conversation, :message)",
        org=rows.org_id,
        assignment=assignment,
        agent=agent,
        conversation=expired,
        message=message[0],
    )

    summary = await run(clean_db, policy)

    assert summary["messages_deleted"] == 3
    remaining = dict(
        await rows.sql("SELECT conversation_id, count(*) FROM messages GROUP BY conversation_id")
    )
    assert remaining == {recent: 2, live: 2}
    # Their jobs and agent replies went with them (ON DELETE CASCADE).
    jobs = dict(await rows.sql("SELECT conversation_id, count(*) FROM jobs GROUP BY 1"))
    assert jobs == {recent: 2, live: 2}
    assert await rows.scalar("SELECT count(*) FROM agent_responses") == 0
    # The conversation stays, counting the messages it still has.
    counts = dict(await rows.sql("SELECT id, message_count FROM conversations"))
    assert counts == {expired: 0, recent: 2, live: 2}

    again = await run(clean_db, policy)
    assert again["messages_deleted"] == 0


async def test_messages_go_in_bounded_batches(rows: Rows) -> None:
    expired = await rows.conversation(status="resolved", resolved_ago=8 * DAY, messages=3)
    other = await rows.conversation(status="resolved", resolved_ago=9 * DAY, messages=2)

    batches = [
        await rows.scalar("SELECT cleanup_old_messages(interval '7 days', 2)") for _ in range(4)
    ]

    assert batches == [2, 2, 1, 0]
    counts = dict(await rows.sql("SELECT id, message_count FROM conversations"))
    assert counts == {expired: 0, other: 0}


async def test_a_reopened_conversation_keeps_its_new_messages(
    rows: Rows, clean_db: AsyncEngine, policy: RetentionPolicy
) -> None:
    conversation = await rows.conversation(status="resolved", resolved_ago=8 * DAY, messages=2)
    await run(clean_db, policy)
    # A new inbound message reopens it, as the webhook does.
    await rows.sql(
        "UPDATE conversations SET status = 'bot', resolved_at = NULL WHERE id = :id",
        id=conversation,
    )
    await rows.messages(conversation, 1)

    summary = await run(clean_db, policy)

    assert summary["messages_deleted"] == 0
    assert await rows.scalar("SELECT message_count FROM conversations") == 1


async def test_integration_events_older_than_retention_are_purged(
    rows: Rows, clean_db: AsyncEngine, policy: RetentionPolicy
) -> None:
    for age in (31 * DAY, 45 * DAY, 29 * DAY, HOUR):
        await rows.event(age)

    summary = await run(clean_db, policy)

    assert summary["integration_events_deleted"] == 2
    ages = await rows.sql("SELECT received_at > now() - interval '30 days' FROM integration_events")
    assert ages == [(True,), (True,)]


async def test_the_intervals_come_from_the_settings(
    rows: Rows, clean_db: AsyncEngine, database_url: str
) -> None:
    conversation = await rows.conversation(status="resolved", resolved_ago=3 * DAY, messages=1)
    idle = await rows.conversation(idle=3 * HOUR)
    settings = make_settings(database_url, abandoned_conversation_hours=2, message_retention_days=2)

    summary = await run(clean_db, RetentionPolicy.from_settings(settings))

    assert (summary["abandoned_conversations"], summary["messages_deleted"]) == (1, 1)
    statuses = dict(await rows.sql("SELECT id, status FROM conversations"))
    assert statuses == {conversation: "resolved", idle: "resolved"}
