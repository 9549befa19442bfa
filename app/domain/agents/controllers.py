"""HTTP for human agents, the queue, assignment, replies, escalation, transfer, performance."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, Response, get, patch, post, put
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import FromPath, FromQuery, JSONBody

from app.core.db import DbSession
from app.core.openapi import OptionalBodyOperation, error_responses
from app.db.models import AgentAssignment
from app.domain.agents.schemas import (
    AgentCreate,
    AgentList,
    AgentMetrics,
    AgentOut,
    AgentUpdate,
    AssignmentOut,
    AssignRequest,
    EscalateRequest,
    PerformanceReport,
    Queued,
    QueueEntryOut,
    QueueList,
    QueueRequest,
    ResponseOut,
    ResponseRequest,
    StatusChange,
    TransferRequest,
)
from app.domain.agents.service import AgentService, present_agent
from app.domain.orgs.auth import Caller

ConversationId = FromPath[uuid.UUID]
CONFLICT = error_responses(409)
ASSIGN_RESPONSES = {
    **CONFLICT,
    # No generated example: it would be random, a different document on every start.
    202: ResponseSpec(
        data_container=Queued,
        description="Nobody can take it now: queued",
        generate_examples=False,
        examples=[Example(summary="Queued", value={"queued": True, "position": 1})],
    ),
}


def assignment_out(assignment: AgentAssignment) -> AssignmentOut:
    return msgspec.convert(assignment, AssignmentOut, from_attributes=True)


def assigned_or_queued(outcome: AgentAssignment | int) -> Response[Any]:
    if isinstance(outcome, int):
        return Response(Queued(queued=True, position=outcome), status_code=202)
    return Response(assignment_out(outcome), status_code=200)


class AgentController(Controller):
    path = "/agents"
    tags = ["agents"]

    @post("/", summary="Create an agent (admin)", responses=CONFLICT)
    async def create_agent(
        self, db_session: DbSession, principal: Caller, data: JSONBody[AgentCreate]
    ) -> AgentOut:
        return present_agent(await AgentService(db_session, principal).create(data))

    @get("/", summary="List agents")
    async def list_agents(self, db_session: DbSession, principal: Caller) -> AgentList:
        agents = await AgentService(db_session, principal).directory()
        return AgentList(items=[present_agent(a) for a in agents], total=len(agents))

    @get("/{agent_id:uuid}", summary="One agent")
    async def get_agent(
        self, db_session: DbSession, principal: Caller, agent_id: FromPath[uuid.UUID]
    ) -> AgentOut:
        return present_agent(await AgentService(db_session, principal).agent(agent_id))

    @patch("/{agent_id:uuid}", summary="Change an agent (admin)", responses=CONFLICT)
    async def update_agent(
        self,
        db_session: DbSession,
        principal: Caller,
        agent_id: FromPath[uuid.UUID],
        data: JSONBody[AgentUpdate],
    ) -> AgentOut:
        return present_agent(await AgentService(db_session, principal).update(agent_id, data))

    @put("/{agent_id:uuid}/status", summary="Set an agent's status (the agent or an admin)")
    async def set_status(
        self,
        db_session: DbSession,
        principal: Caller,
        agent_id: FromPath[uuid.UUID],
        data: JSONBody[StatusChange],
    ) -> AgentOut:
        agent = await AgentService(db_session, principal).set_status(agent_id, data.status)
        return present_agent(agent)

    @post("/queue", summary="Put a conversation in the queue", responses=CONFLICT)
    async def enqueue(
        self, db_session: DbSession, principal: Caller, data: JSONBody[QueueRequest]
    ) -> QueueEntryOut:
        return await AgentService(db_session, principal).enqueue(
            data.conversation_id, data.priority, data.required_skills, data.reason
        )

    @get("/queue", summary="Waiting conversations, highest priority first, then oldest")
    async def list_queue(self, db_session: DbSession, principal: Caller) -> QueueList:
        items = await AgentService(db_session, principal).waiting()
        return QueueList(items=items, total=len(items))

    @post(
        "/assign/{conversation_id:uuid}",
        summary="Assign to an agent (manual) or to the best available one (admin)",
        responses=ASSIGN_RESPONSES,
        status_code=200,
        operation_class=OptionalBodyOperation,
    )
    async def assign(
        self,
        db_session: DbSession,
        principal: Caller,
        conversation_id: ConversationId,
        data: JSONBody[AssignRequest | None] = None,
    ) -> Response[AssignmentOut]:
        request = data or AssignRequest()
        outcome = await AgentService(db_session, principal).assign(
            conversation_id, request.agent_id, request.priority, request.assignment_type
        )
        return assigned_or_queued(outcome)

    @post(
        "/response/{conversation_id:uuid}",
        summary="An agent's reply, stored and delivered to the user's channel",
        responses=CONFLICT,
    )
    async def respond(
        self,
        db_session: DbSession,
        principal: Caller,
        conversation_id: ConversationId,
        data: JSONBody[ResponseRequest],
    ) -> ResponseOut:
        response, message = await AgentService(db_session, principal).respond(
            conversation_id, data.agent_id, data.message
        )
        return ResponseOut(
            id=response.id,
            message_id=message.id,
            conversation_id=conversation_id,
            agent_id=response.agent_id,
            created_at=message.created_at,
            delivery_status=message.delivery_status,
        )

    @post(
        "/escalate/{conversation_id:uuid}",
        summary="Escalate into the queue with a raised priority",
        responses=CONFLICT,
        status_code=200,
    )
    async def escalate(
        self,
        db_session: DbSession,
        principal: Caller,
        conversation_id: ConversationId,
        data: JSONBody[EscalateRequest],
    ) -> QueueEntryOut:
        return await AgentService(db_session, principal).escalate(
            conversation_id, data.reason, data.priority, data.required_skills
        )

    @post(
        "/transfer/{conversation_id:uuid}",
        summary="Transfer to an agent or to agents with some skills",
        responses=ASSIGN_RESPONSES,
        status_code=200,
    )
    async def transfer(
        self,
        db_session: DbSession,
        principal: Caller,
        conversation_id: ConversationId,
        data: JSONBody[TransferRequest],
    ) -> Response[AssignmentOut]:
        outcome = await AgentService(db_session, principal).transfer(
            conversation_id, data.to_agent_id, data.required_skills, data.note
        )
        return assigned_or_queued(outcome)

    @get("/{agent_id:uuid}/metrics", summary="One agent's performance over a window")
    async def agent_metrics(
        self,
        db_session: DbSession,
        principal: Caller,
        agent_id: FromPath[uuid.UUID],
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
    ) -> AgentMetrics:
        return await AgentService(db_session, principal).metrics(agent_id, since, until)

    @get("/performance", summary="Every agent's and the team's performance over a window")
    async def performance(
        self,
        db_session: DbSession,
        principal: Caller,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
    ) -> PerformanceReport:
        service = AgentService(db_session, principal)
        team = await service.metrics(None, since, until)
        items = [
            await service.metrics(agent.id, team.since, team.until)
            for agent in await service.directory()
        ]
        return PerformanceReport(since=team.since, until=team.until, team=team, items=items)
