"""Human agents: the directory, status changes, the queue, assignment, replies, escalation,
transfers and performance. The moves themselves live in `desk`; this layer checks who may make
them and turns outcomes into answers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar.exceptions import ClientException, NotFoundException, PermissionDeniedException
from litestar.status_codes import HTTP_409_CONFLICT
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.events import publish_after_commit
from app.db.models import (
    AgentAssignment,
    AgentQueueEntry,
    AgentResponse,
    Conversation,
    Message,
    SupportAgent,
)
from app.db.models.agents import PRIORITIES
from app.db.repository import OrgScopedRepository
from app.domain.agents.desk import (
    Escalation,
    active_assignment,
    dispatch,
    escalate,
    lock_conversation,
    release,
    take,
)
from app.domain.agents.routing import Routing
from app.domain.agents.schemas import (
    AgentCreate,
    AgentMetrics,
    AgentOut,
    AgentUpdate,
    QueueEntryOut,
    Shift,
)
from app.domain.conversations.outbox import store_outbound
from app.domain.orgs.auth import Principal


class Conflict(ClientException):
    status_code = HTTP_409_CONFLICT


class AgentRepository(OrgScopedRepository[SupportAgent]):
    model = SupportAgent


def present_agent(agent: SupportAgent) -> AgentOut:
    return AgentOut(
        id=agent.id,
        name=agent.name,
        email=agent.email,
        skills=list(agent.skills),
        max_concurrent_conversations=agent.max_concurrent_conversations,
        shifts=[msgspec.convert(shift, Shift) for shift in agent.shifts],
        timezone=agent.timezone,
        status=agent.status,  # type: ignore[arg-type]
        status_changed_at=agent.status_changed_at,
        active_conversations=agent.active_count,
        last_assigned_at=agent.last_assigned_at,
        created_at=agent.created_at,
    )


_METRICS = text(
    """
SELECT
    count(*) FILTER (WHERE started_at >= :since AND started_at < :until) AS assigned,
    count(*) FILTER (WHERE ended_at IS NULL) AS active,
    count(*) FILTER (WHERE end_reason = 'resolved' AND ended_at >= :since AND ended_at < :until)
        AS resolved,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM first_response_at - started_at))
        FILTER (WHERE first_response_at >= :since AND first_response_at < :until) AS fr_median,
    percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM first_response_at - started_at))
        FILTER (WHERE first_response_at >= :since AND first_response_at < :until) AS fr_p90,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ended_at - started_at))
        FILTER (WHERE end_reason = 'resolved' AND ended_at >= :since AND ended_at < :until)
        AS res_median,
    percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM ended_at - started_at))
        FILTER (WHERE end_reason = 'resolved' AND ended_at >= :since AND ended_at < :until)
        AS res_p90
FROM agent_assignments
WHERE org_id = :org_id AND (CAST(:agent_id AS uuid) IS NULL OR agent_id = :agent_id)
"""
)


def _seconds(value: Any) -> float | None:
    return round(float(value), 3) if value is not None else None


class AgentService:
    def __init__(self, session: AsyncSession, principal: Principal) -> None:
        self.session = session
        self.principal = principal
        self.org_id = principal.org_id
        self.agents = AgentRepository(session, principal.org_id)

    # --- who may act ----------------------------------------------------------------------

    def act_as(self, agent_id: uuid.UUID) -> None:
        """Admins act for anyone; an agent key acts only as its own agent."""
        if not self.principal.is_admin and self.principal.agent_id != agent_id:
            raise PermissionDeniedException("An agent key acts only as its own agent")

    async def agent(self, agent_id: uuid.UUID) -> SupportAgent:
        agent = await self.agents.get(agent_id)
        if agent is None:
            raise NotFoundException("Agent not found")
        return agent

    async def conversation(self, conversation_id: uuid.UUID) -> Conversation:
        conversation = await lock_conversation(self.session, self.org_id, conversation_id)
        if conversation is None:
            raise NotFoundException("Conversation not found")
        return conversation

    async def _may_handle(self, conversation: Conversation) -> None:
        """Agents escalate, transfer and answer only what they hold; admins anything."""
        if self.principal.is_admin:
            return
        if conversation.assigned_agent_id != self.principal.agent_id:
            raise PermissionDeniedException("This conversation is not assigned to you")

    # --- directory --------------------------------------------------------------------------

    async def create(self, data: AgentCreate) -> SupportAgent:
        self.principal.require_admin()
        return await self.agents.add(
            SupportAgent(
                org_id=self.org_id,
                name=data.name,
                email=data.email.lower(),
                skills=sorted(set(data.skills)),
                max_concurrent_conversations=data.max_concurrent_conversations,
                shifts=msgspec.to_builtins(data.shifts),
                timezone=data.timezone,
            )
        )

    async def directory(self) -> Sequence[SupportAgent]:
        return await self.agents.all(
            self.agents.select().order_by(SupportAgent.name, SupportAgent.id)
        )

    async def update(self, agent_id: uuid.UUID, data: AgentUpdate) -> SupportAgent:
        self.principal.require_admin()
        agent = await self.agent(agent_id)
        values = {
            name: getattr(data, name)
            for name in ("name", "max_concurrent_conversations", "timezone")
            if getattr(data, name) is not None
        }
        if data.email is not None:
            values["email"] = data.email.lower()
        if data.skills is not None:
            values["skills"] = sorted(set(data.skills))
        if data.shifts is not None:
            values["shifts"] = msgspec.to_builtins(data.shifts)
        agent = await self.agents.update(agent, values)
        await dispatch(self.session, self.org_id, datetime.now(UTC))
        return agent

    async def set_status(self, agent_id: uuid.UUID, status: str) -> SupportAgent:
        self.act_as(agent_id)
        agent = await self.agent(agent_id)
        now = datetime.now(UTC)
        if agent.status != status:
            previous = agent.status
            agent = await self.agents.update(agent, {"status": status, "status_changed_at": now})
            publish_after_commit(
                self.session,
                self.org_id,
                {
                    "type": "agent.status",
                    "agent_id": agent.id,
                    "status": status,
                    "previous": previous,
                },
                agent_id=agent.id,
            )
        if status in ("away", "offline"):
            await self._give_back_unanswered(agent, now)
        await dispatch(self.session, self.org_id, now)
        await self.session.refresh(agent)
        return agent

    async def _give_back_unanswered(self, agent: SupportAgent, now: datetime) -> None:
        rows = await self.session.execute(
            select(AgentAssignment.conversation_id).where(
                AgentAssignment.agent_id == agent.id,
                AgentAssignment.ended_at.is_(None),
                AgentAssignment.first_response_at.is_(None),
            )
        )
        for conversation_id in rows.scalars().all():
            conversation = await lock_conversation(self.session, self.org_id, conversation_id)
            if conversation is None:
                continue
            await release(self.session, conversation_id, "agent_unavailable", now)
            await escalate(self.session, conversation, "agent_unavailable", now)

    # --- queue ------------------------------------------------------------------------------

    async def enqueue(
        self,
        conversation_id: uuid.UUID,
        priority: str,
        required_skills: list[str],
        reason: str | None,
    ) -> QueueEntryOut:
        conversation = await self.conversation(conversation_id)
        await self._may_handle(conversation)
        if conversation.status == "resolved":
            raise Conflict("The conversation is resolved")
        if conversation.status == "assigned":
            raise Conflict("The conversation is assigned; transfer or escalate it instead")
        escalation = await escalate(
            self.session,
            conversation,
            reason or "queued",
            datetime.now(UTC),
            priority=priority,
            required_skills=required_skills,
        )
        return await self._entry_out(escalation)

    async def _entry_out(self, escalation: Escalation) -> QueueEntryOut:
        entry = await self.session.get_one(AgentQueueEntry, escalation.queue_entry_id)
        return QueueEntryOut(
            id=entry.id,
            conversation_id=entry.conversation_id,
            priority=PRIORITIES[entry.priority],  # type: ignore[arg-type]
            required_skills=list(entry.required_skills),
            reason=entry.reason,
            enqueued_at=entry.enqueued_at,
            position=escalation.position if entry.status == "waiting" else 0,
        )

    async def waiting(self) -> list[QueueEntryOut]:
        rows = await self.session.execute(
            select(AgentQueueEntry)
            .where(AgentQueueEntry.org_id == self.org_id, AgentQueueEntry.status == "waiting")
            .order_by(
                AgentQueueEntry.priority.desc(), AgentQueueEntry.enqueued_at, AgentQueueEntry.id
            )
        )
        return [
            QueueEntryOut(
                id=entry.id,
                conversation_id=entry.conversation_id,
                priority=PRIORITIES[entry.priority],  # type: ignore[arg-type]
                required_skills=list(entry.required_skills),
                reason=entry.reason,
                enqueued_at=entry.enqueued_at,
                position=position,
            )
            for position, entry in enumerate(rows.scalars().all(), start=1)
        ]

    # --- assignment -------------------------------------------------------------------------

    async def assign(
        self,
        conversation_id: uuid.UUID,
        agent_id: uuid.UUID | None,
        priority: str | None,
        assignment_type: str | None,
    ) -> AgentAssignment | int:
        """The assignment, or the queue position when nobody can take the conversation now."""
        self.principal.require_admin()
        now = datetime.now(UTC)
        conversation = await self.conversation(conversation_id)
        if conversation.status == "resolved":
            raise Conflict("The conversation is resolved")
        current = await active_assignment(self.session, conversation_id)
        if current is not None:
            if current.agent_id == agent_id:
                return current
            raise Conflict("The conversation is already assigned; transfer it instead")
        routing = Routing(self.session, self.org_id, now)
        if agent_id is not None:
            await self.agent(agent_id)
            taken = await routing.assign_to(conversation_id, agent_id, assignment_type or "manual")
            if taken is None:
                raise Conflict("The agent is not online or has no free slot")
        else:
            skills = await self._waiting_skills(conversation_id)
            taken = await routing.assign_best(
                conversation_id, skills, [], assignment_type or "auto"
            )
            if taken is None:
                escalation = await escalate(
                    self.session,
                    conversation,
                    conversation.escalation_reason or "assignment_requested",
                    now,
                    priority=priority or conversation.priority,
                    required_skills=skills,
                )
                return escalation.position
        if priority is not None:
            conversation.priority = priority
        await take(self.session, conversation, taken, now)
        return await self.session.get_one(AgentAssignment, taken.assignment_id)

    async def _waiting_skills(self, conversation_id: uuid.UUID) -> list[str]:
        row = await self.session.execute(
            select(AgentQueueEntry.required_skills).where(
                AgentQueueEntry.conversation_id == conversation_id,
                AgentQueueEntry.status == "waiting",
            )
        )
        return list(row.scalar_one_or_none() or [])

    async def respond(
        self, conversation_id: uuid.UUID, agent_id: uuid.UUID, content: str
    ) -> tuple[AgentResponse, Message]:
        self.act_as(agent_id)
        conversation = await self.conversation(conversation_id)
        assignment = await active_assignment(self.session, conversation_id)
        if assignment is None or assignment.agent_id != agent_id:
            raise Conflict("This agent is not the conversation's assignee")
        message = await store_outbound(self.session, conversation, "agent", content)
        if assignment.first_response_at is None:
            assignment.first_response_at = message.created_at
        response = AgentResponse(
            org_id=self.org_id,
            assignment_id=assignment.id,
            agent_id=agent_id,
            conversation_id=conversation_id,
            message_id=message.id,
        )
        self.session.add(response)
        await self.session.flush()
        return response, message

    async def escalate(
        self,
        conversation_id: uuid.UUID,
        reason: str,
        priority: str | None,
        required_skills: list[str] | None,
    ) -> QueueEntryOut:
        conversation = await self.conversation(conversation_id)
        await self._may_handle(conversation)
        if conversation.status == "resolved":
            raise Conflict("The conversation is resolved")
        now = datetime.now(UTC)
        # A manual escalation raises the priority one step (at least to the one asked for).
        raised = PRIORITIES[min(PRIORITIES.index(conversation.priority) + 1, len(PRIORITIES) - 1)]
        wanted = (
            priority
            if priority and PRIORITIES.index(priority) > PRIORITIES.index(raised)
            else raised
        )
        previous = await release(self.session, conversation_id, "escalated", now)
        escalation = await escalate(
            self.session,
            conversation,
            reason,
            now,
            priority=wanted,
            required_skills=required_skills,
            tried=[previous.agent_id] if previous else None,
        )
        return await self._entry_out(escalation)

    async def transfer(
        self,
        conversation_id: uuid.UUID,
        to_agent_id: uuid.UUID | None,
        required_skills: list[str] | None,
        note: str | None,
    ) -> AgentAssignment | int:
        conversation = await self.conversation(conversation_id)
        await self._may_handle(conversation)
        if conversation.status == "resolved":
            raise Conflict("The conversation is resolved")
        now = datetime.now(UTC)
        if to_agent_id is not None:
            await self.agent(to_agent_id)
            await release(self.session, conversation_id, "transferred", now)
            taken = await Routing(self.session, self.org_id, now).assign_to(
                conversation_id, to_agent_id, "transfer"
            )
            if taken is None:
                raise Conflict("The agent is not online or has no free slot")
            await take(self.session, conversation, taken, now)
            return await self.session.get_one(AgentAssignment, taken.assignment_id)
        previous = await release(self.session, conversation_id, "transferred", now)
        escalation = await escalate(
            self.session,
            conversation,
            note or "transfer",
            now,
            priority=conversation.priority,
            required_skills=required_skills,
            tried=[previous.agent_id] if previous else None,
        )
        assignment = await active_assignment(self.session, conversation_id)
        return assignment if assignment is not None else escalation.position

    # --- performance ------------------------------------------------------------------------

    async def metrics(
        self, agent_id: uuid.UUID | None, since: datetime | None, until: datetime | None
    ) -> AgentMetrics:
        until = until or datetime.now(UTC)
        since = since or until - timedelta(days=7)
        if agent_id is not None:
            await self.agent(agent_id)
        row = (
            await self.session.execute(
                _METRICS,
                {"org_id": self.org_id, "agent_id": agent_id, "since": since, "until": until},
            )
        ).one()
        return AgentMetrics(
            agent_id=agent_id,
            since=since,
            until=until,
            assigned=row.assigned,
            active=row.active,
            resolved=row.resolved,
            first_response_seconds_median=_seconds(row.fr_median),
            first_response_seconds_p90=_seconds(row.fr_p90),
            resolution_seconds_median=_seconds(row.res_median),
            resolution_seconds_p90=_seconds(row.res_p90),
        )
