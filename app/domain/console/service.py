"""The console's moves, made through the same services as the API (`AgentService`,
`ConversationService`), so the console follows every rule an API client follows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.exceptions import PermissionDeniedException
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Conversation, SupportAgent
from app.db.models.agents import PRIORITIES
from app.domain.agents.service import AgentService
from app.domain.console.reads import ReadMarks
from app.domain.console.repository import ConsoleRepository
from app.domain.conversations.service import ConversationService
from app.domain.orgs.auth import Principal

STATUSES = ("online", "away", "busy", "offline")
REASONS = {
    "user_requested": "The customer asked for a person",
    "no_answer": "The bot found no answer",
    "bot_failed": "The bot failed to answer",
    "agent_unavailable": "The previous agent became unavailable",
    "agent_response_timeout": "The previous agent did not answer in time",
    "human_takeover": "Answered from the business phone",
    "assignment_requested": "Assignment requested",
    "queued": "Queued",
    "transfer": "Transferred",
}
ROLES = {"user": "Customer", "bot": "Bot", "agent": "Agent", "system": "Notice"}


def reason_label(reason: str | None) -> str | None:
    if reason is None:
        return None
    return REASONS.get(reason, reason)


def contact_label(name: str | None, external_id: str) -> str:
    if name:
        return name
    return external_id.split("@", 1)[0]


def waited(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


@dataclass(frozen=True, slots=True)
class ConversationItem:
    id: uuid.UUID
    contact: str
    priority: str
    reason: str | None
    last_message_at: datetime
    unread: int
    preview: str


@dataclass(frozen=True, slots=True)
class QueueItem:
    conversation_id: uuid.UUID
    contact: str
    priority: str
    reason: str | None
    enqueued_at: datetime
    waiting: str
    skills: list[str]


@dataclass(frozen=True, slots=True)
class MessageItem:
    id: uuid.UUID
    role: str
    author: str
    content: str
    created_at: datetime
    delivery_status: str | None
    sources: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Thread:
    conversation: Conversation
    contact: str
    reason: str | None
    held: bool
    messages: list[MessageItem]


class ConsoleService:
    def __init__(self, session: AsyncSession, principal: Principal, reads: ReadMarks) -> None:
        assert principal.agent_id is not None, "the console signs in agent keys only"
        self.session = session
        self.principal = principal
        self.agent_id: uuid.UUID = principal.agent_id
        self.reads = reads
        self.agents = AgentService(session, principal)
        self.conversations = ConversationService(session, principal)
        self.repository = ConsoleRepository(session, principal.org_id)

    async def me(self) -> SupportAgent:
        return await self.agents.agent(self.agent_id)

    async def mine(self) -> list[ConversationItem]:
        rows = await self.repository.held_by(self.agent_id, await self.reads.of(self.agent_id))
        return [
            ConversationItem(
                id=row["id"],
                contact=contact_label(row["contact_name"], row["contact_external_id"]),
                priority=row["priority"],
                reason=reason_label(row["escalation_reason"]),
                last_message_at=row["last_message_at"],
                unread=int(row["unread"]),
                preview=(row["last_text"] or "")[:140],
            )
            for row in rows
        ]

    async def queue(self) -> list[QueueItem]:
        return [
            QueueItem(
                conversation_id=row["conversation_id"],
                contact=contact_label(row["contact_name"], row["contact_external_id"]),
                priority=PRIORITIES[row["priority"]],
                reason=reason_label(row["reason"]),
                enqueued_at=row["enqueued_at"],
                waiting=waited(row["waiting"]),
                skills=list(row["required_skills"]),
            )
            for row in await self.repository.waiting()
        ]

    async def thread(self, conversation_id: uuid.UUID) -> Thread:
        conversation = await self.conversations.get(conversation_id)
        rows = await self.repository.thread(conversation_id)
        messages = [
            MessageItem(
                id=row["id"],
                role=row["role"],
                author=ROLES.get(row["role"], row["role"]),
                content=row["content"],
                created_at=row["created_at"],
                delivery_status=row["delivery_status"],
                sources=list(row["sources"] or []),
            )
            for row in rows
        ]
        held = conversation.status == "assigned" and conversation.assigned_agent_id == self.agent_id
        if held and messages:
            await self.reads.mark(self.agent_id, conversation_id, messages[-1].created_at)
        return Thread(
            conversation=conversation,
            contact=contact_label(conversation.contact_name, conversation.contact_external_id),
            reason=reason_label(conversation.escalation_reason),
            held=held,
            messages=messages,
        )

    async def colleagues(self) -> list[SupportAgent]:
        return [agent for agent in await self.agents.directory() if agent.id != self.agent_id]

    async def set_status(self, status: str) -> SupportAgent:
        return await self.agents.set_status(self.agent_id, status)

    async def reply(self, conversation_id: uuid.UUID, text: str) -> None:
        """The same move as `POST /api/v1/agents/response/{id}`."""
        await self.agents.respond(conversation_id, self.agent_id, text)
        await self.reads.mark(self.agent_id, conversation_id, datetime.now(UTC))

    async def transfer(
        self, conversation_id: uuid.UUID, to_agent_id: uuid.UUID | None, note: str | None
    ) -> None:
        await self.agents.transfer(
            conversation_id, to_agent_id, None if to_agent_id else [], note or None
        )

    async def resolve(self, conversation_id: uuid.UUID) -> None:
        conversation = await self.conversations.get(conversation_id)
        if conversation.assigned_agent_id != self.agent_id:
            raise PermissionDeniedException("This conversation is not assigned to you")
        await self.conversations.resolve(conversation_id, "resolved")
