"""Data access for conversations and messages, with keyset pagination."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, or_, update

from app.db.models import AgentQueueEntry, Conversation, Message
from app.db.repository import OrgScopedRepository


class CursorError(ValueError):
    """A cursor that this API did not hand out."""


def encode_cursor(at: datetime, id_: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{id_}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, id_ = raw.partition("|")
        return datetime.fromisoformat(at), uuid.UUID(id_)
    except ValueError as exc:
        raise CursorError("invalid cursor") from exc


class ConversationRepository(OrgScopedRepository[Conversation]):
    model = Conversation

    async def page(
        self, status: str | None, limit: int, cursor: tuple[datetime, uuid.UUID] | None
    ) -> Sequence[Conversation]:
        statement = self.select()
        if status is not None:
            statement = statement.where(Conversation.status == status)
        if cursor is not None:
            at, id_ = cursor
            statement = statement.where(
                or_(
                    Conversation.last_message_at < at,
                    and_(Conversation.last_message_at == at, Conversation.id < id_),
                )
            )
        statement = statement.order_by(
            Conversation.last_message_at.desc(), Conversation.id.desc()
        ).limit(limit)
        return await self.all(statement)

    async def lock(self, conversation_id: uuid.UUID) -> Conversation | None:
        return await self.one_or_none(
            self.select().where(Conversation.id == conversation_id).with_for_update()
        )

    async def leave_queue(self, conversation_id: uuid.UUID) -> None:
        await self.session.execute(
            update(AgentQueueEntry)
            .where(
                AgentQueueEntry.conversation_id == conversation_id,
                AgentQueueEntry.status == "waiting",
            )
            .values(status="cancelled")
        )


class MessageRepository(OrgScopedRepository[Message]):
    model = Message

    async def page(
        self,
        conversation_id: uuid.UUID,
        limit: int,
        cursor: tuple[datetime, uuid.UUID] | None,
    ) -> Sequence[Message]:
        statement = self.select().where(Message.conversation_id == conversation_id)
        if cursor is not None:
            at, id_ = cursor
            statement = statement.where(
                or_(Message.created_at > at, and_(Message.created_at == at, Message.id > id_))
            )
        return await self.all(statement.order_by(Message.created_at, Message.id).limit(limit))
