"""The support desk's moves, shared by the API, the bot and the timeout worker: queue a
conversation, hand waiting conversations to agents, end an assignment, apply the timeouts.

Every move runs inside the caller's transaction and locks the conversation row, so two moves
on one conversation happen one after the other (`dispatch` leaves out a conversation another
transaction holds rather than wait for it); the database's constraints catch anything that would
still race (see `routing`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.events import publish_after_commit, queue_changed_after_commit
from app.db.models import AgentAssignment, AgentQueueEntry, Conversation, SupportAgent
from app.db.models.agents import PRIORITIES
from app.domain.agents.routing import (
    Routing,
    Taken,
    end_lapsed_assignments,
    raise_waiting_priorities,
    servable_orgs,
)
from app.domain.conversations.language import notice
from app.domain.conversations.outbox import store_outbound

DISPATCH_BATCH = 50


@dataclass(frozen=True, slots=True)
class Escalation:
    queue_entry_id: uuid.UUID
    position: int


async def lock_conversation(
    session: AsyncSession, org_id: uuid.UUID, conversation_id: uuid.UUID
) -> Conversation | None:
    statement = (
        select(Conversation)
        .where(Conversation.id == conversation_id, Conversation.org_id == org_id)
        .with_for_update()
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def active_assignment(
    session: AsyncSession, conversation_id: uuid.UUID
) -> AgentAssignment | None:
    statement = select(AgentAssignment).where(
        AgentAssignment.conversation_id == conversation_id, AgentAssignment.ended_at.is_(None)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def queue_position(session: AsyncSession, entry: AgentQueueEntry) -> int:
    ahead = await session.execute(
        select(func.count())
        .select_from(AgentQueueEntry)
        .where(
            AgentQueueEntry.org_id == entry.org_id,
            AgentQueueEntry.status == "waiting",
            (AgentQueueEntry.priority > entry.priority)
            | (
                (AgentQueueEntry.priority == entry.priority)
                & (AgentQueueEntry.enqueued_at < entry.enqueued_at)
            ),
        )
    )
    return int(ahead.scalar_one()) + 1


async def take(
    session: AsyncSession, conversation: Conversation, taken: Taken, now: datetime
) -> None:
    """Record that `taken.agent_id` now holds the conversation."""
    conversation.status = "assigned"
    conversation.assigned_agent_id = taken.agent_id
    await session.execute(
        update(AgentQueueEntry)
        .where(
            AgentQueueEntry.conversation_id == conversation.id,
            AgentQueueEntry.status == "waiting",
        )
        .values(status="assigned", dequeued_at=now)
    )
    await session.flush()
    publish_after_commit(
        session,
        conversation.org_id,
        {
            "type": "assignment.offered",
            "conversation_id": conversation.id,
            "assignment_id": taken.assignment_id,
            "agent_id": taken.agent_id,
        },
        agent_id=taken.agent_id,
    )
    queue_changed_after_commit(session, conversation.org_id)


async def release(
    session: AsyncSession, conversation_id: uuid.UUID, reason: str, now: datetime
) -> AgentAssignment | None:
    """End the conversation's active assignment (its agent's slot is freed by a trigger)."""
    assignment = await active_assignment(session, conversation_id)
    if assignment is not None:
        assignment.ended_at = now
        assignment.end_reason = reason
        await session.flush()
        assignment_removed(session, assignment.org_id, conversation_id, assignment.agent_id, reason)
    return assignment


def assignment_removed(
    session: AsyncSession,
    org_id: uuid.UUID,
    conversation_id: uuid.UUID,
    agent_id: uuid.UUID,
    reason: str,
) -> None:
    publish_after_commit(
        session,
        org_id,
        {
            "type": "assignment.removed",
            "conversation_id": conversation_id,
            "agent_id": agent_id,
            "reason": reason,
        },
        agent_id=agent_id,
    )


async def dispatch(
    session: AsyncSession, org_id: uuid.UUID, now: datetime, limit: int = DISPATCH_BATCH
) -> int:
    """Hand up to `limit` waiting conversations, best first, to eligible agents; returns how
    many. Each batch is one statement (`Routing.dispatch_batch`); agents and queue entries
    another transaction holds right now are left out of the next batch, so their share goes to
    the others, and no assigner ever waits for another."""
    await session.flush()
    routing = Routing(session, org_id, now)
    assigned: list[tuple[uuid.UUID, Taken]] = []
    cancelled: list[uuid.UUID] = []
    busy: list[uuid.UUID] = []
    held: list[uuid.UUID] = []
    while len(assigned) < limit:
        batch = await routing.dispatch_batch(limit - len(assigned), busy, held)
        assigned += batch.assigned
        cancelled += batch.cancelled
        busy += batch.busy
        held += batch.held
        if not (batch.assigned or batch.cancelled or batch.busy or batch.held):
            break
    for conversation_id, taken in assigned:
        publish_after_commit(
            session,
            org_id,
            {
                "type": "assignment.offered",
                "conversation_id": conversation_id,
                "assignment_id": taken.assignment_id,
                "agent_id": taken.agent_id,
            },
            agent_id=taken.agent_id,
        )
    if assigned or cancelled:
        queue_changed_after_commit(session, org_id)
        changed = {
            *cancelled,
            *(conversation_id for conversation_id, _ in assigned),
            *(taken.agent_id for _, taken in assigned),
        }
        await _reload(session, changed)
    return len(assigned)


async def _reload(session: AsyncSession, changed: set[uuid.UUID]) -> None:
    """`dispatch` writes with SQL: objects this session already holds of rows it changed (the
    conversation an API call just escalated, its queue entry, an agent) are read again. `changed`
    holds the ids of the conversations, agents and cancelled entries."""
    for instance in list(session.identity_map.values()):
        if isinstance(instance, (Conversation, SupportAgent)):
            stale = instance.id in changed
        elif isinstance(instance, AgentQueueEntry):
            stale = instance.id in changed or instance.conversation_id in changed
        else:
            stale = False
        if stale:
            await session.refresh(instance)


async def escalate(
    session: AsyncSession,
    conversation: Conversation,
    reason: str,
    now: datetime,
    *,
    priority: str = "normal",
    required_skills: list[str] | None = None,
    tried: list[uuid.UUID] | None = None,
    notice_kind: str | None = None,
    language: str = "en",
) -> Escalation:
    """Queue the conversation for an agent (once, whoever escalates and however often), tell
    the user their place when `notice_kind` is set, and let an available agent take it."""
    routing = Routing(session, conversation.org_id, now)
    entry_id = await routing.requeue(
        conversation.id,
        reason,
        priority=PRIORITIES.index(priority),
        skills=required_skills,
        tried=tried,
    )
    conversation.status = "queued"
    conversation.assigned_agent_id = None
    conversation.escalation_reason = reason
    if PRIORITIES.index(priority) > PRIORITIES.index(conversation.priority):
        conversation.priority = priority
    await session.flush()
    entry = await session.get_one(AgentQueueEntry, entry_id)
    position = await queue_position(session, entry)
    queue_changed_after_commit(session, conversation.org_id)
    if notice_kind is not None:
        await store_outbound(
            session, conversation, "system", notice(notice_kind, language, position=position)
        )
    await dispatch(session, conversation.org_id, now)
    return Escalation(queue_entry_id=entry_id, position=position)


@dataclass(frozen=True, slots=True)
class TimeoutReport:
    raised: int
    reassigned: int
    dispatched: int


async def apply_timeouts(
    session: AsyncSession, now: datetime, queue_timeout: float, response_timeout: float
) -> TimeoutReport:
    """A waiting entry rises one priority step per `queue_timeout`; an assignment without an
    agent reply after `response_timeout` goes to another agent, never back to this one; and
    every organization where someone waits while an agent is available dispatches again."""
    raised = await raise_waiting_priorities(session, now, queue_timeout)
    orgs = set(raised)
    for org_id in raised:
        queue_changed_after_commit(session, org_id)
    lapsed = await end_lapsed_assignments(session, now, response_timeout)
    for item in lapsed:
        assignment_removed(
            session, item.org_id, item.conversation_id, item.agent_id, "response_timeout"
        )
        conversation = await lock_conversation(session, item.org_id, item.conversation_id)
        if conversation is None or conversation.status != "assigned":
            continue
        await escalate(session, conversation, "agent_response_timeout", now, tried=[item.agent_id])
        orgs.add(item.org_id)
    # Also every organization where someone waits while an agent is free: a dispatch that found
    # its agents held by another transaction left them waiting for this sweep.
    orgs |= await servable_orgs(session, now)
    dispatched = 0
    for org_id in orgs:
        dispatched += await dispatch(session, org_id, now)
    return TimeoutReport(raised=len(raised), reassigned=len(lapsed), dispatched=dispatched)
