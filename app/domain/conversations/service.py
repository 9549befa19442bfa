"""Conversations: listing, reading, resolving."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from litestar.exceptions import NotFoundException, ValidationException
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.events import queue_changed_after_commit
from app.db.models import Conversation, Message
from app.domain.agents.desk import dispatch, release
from app.domain.conversations.repository import (
    ConversationRepository,
    CursorError,
    MessageRepository,
    decode_cursor,
)
from app.domain.conversations.schemas import Contact, ConversationOut
from app.domain.orgs.auth import Principal


def present(conversation: Conversation) -> ConversationOut:
    return ConversationOut(
        id=conversation.id,
        status=conversation.status,  # type: ignore[arg-type]
        integration_id=conversation.integration_id,
        contact=Contact(
            external_id=conversation.contact_external_id, name=conversation.contact_name
        ),
        assigned_agent_id=conversation.assigned_agent_id,
        priority=conversation.priority,
        created_at=conversation.created_at,
        last_message_at=conversation.last_message_at,
        message_count=conversation.message_count,
        escalation_reason=conversation.escalation_reason,
        resolved_at=conversation.resolved_at,
        resolution_reason=conversation.resolution_reason,
    )


def _cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    try:
        return decode_cursor(cursor) if cursor else None
    except CursorError:
        raise ValidationException(
            "Invalid cursor", extra=[{"key": "cursor", "message": "not a cursor from this API"}]
        ) from None


class ConversationService:
    def __init__(self, session: AsyncSession, principal: Principal) -> None:
        self.session = session
        self.principal = principal
        self.conversations = ConversationRepository(session, principal.org_id)
        self.messages = MessageRepository(session, principal.org_id)

    async def get(self, conversation_id: uuid.UUID) -> Conversation:
        conversation = await self.conversations.get(conversation_id)
        if conversation is None:
            raise NotFoundException("Conversation not found")
        return conversation

    async def page(
        self, status: str | None, limit: int, cursor: str | None
    ) -> Sequence[Conversation]:
        return await self.conversations.page(status, limit, _cursor(cursor))

    async def messages_page(
        self, conversation_id: uuid.UUID, limit: int, cursor: str | None
    ) -> Sequence[Message]:
        await self.get(conversation_id)
        return await self.messages.page(conversation_id, limit, _cursor(cursor))

    async def resolve(self, conversation_id: uuid.UUID, reason: str) -> Conversation:
        conversation = await self.conversations.lock(conversation_id)
        if conversation is None:
            raise NotFoundException("Conversation not found")
        if conversation.status != "resolved":
            now = datetime.now(UTC)
            await self.conversations.leave_queue(conversation_id)
            queue_changed_after_commit(self.session, self.principal.org_id)
            freed = await release(self.session, conversation_id, "resolved", now)
            await self.conversations.update(
                conversation,
                {
                    "status": "resolved",
                    "resolved_at": now,
                    "resolution_reason": reason,
                    "assigned_agent_id": None,
                },
            )
            if freed is not None:
                await dispatch(self.session, self.principal.org_id, now)
        return conversation
