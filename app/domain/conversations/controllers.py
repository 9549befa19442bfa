"""HTTP for conversations and their messages."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from app.core.db import DbSession
from app.core.openapi import OptionalBodyOperation
from app.domain.conversations.repository import encode_cursor
from app.domain.conversations.schemas import (
    ConversationList,
    ConversationOut,
    ConversationStatus,
    MessageList,
    MessageOut,
    ResolveRequest,
)
from app.domain.conversations.service import ConversationService, present
from app.domain.orgs.auth import Caller

Limit = Annotated[int, Parameter(ge=1, le=200)]


class ConversationController(Controller):
    path = "/conversations"
    tags = ["conversations"]

    @get("/", summary="Conversations, most recently active first")
    async def list_conversations(
        self,
        db_session: DbSession,
        principal: Caller,
        status: FromQuery[ConversationStatus | None] = None,
        limit: Limit = 50,
        cursor: FromQuery[str | None] = None,
    ) -> ConversationList:
        rows = await ConversationService(db_session, principal).page(status, limit, cursor)
        items = [present(row) for row in rows]
        next_cursor = (
            encode_cursor(rows[-1].last_message_at, rows[-1].id) if len(rows) == limit else None
        )
        return ConversationList(items=items, next_cursor=next_cursor)

    @get("/{conversation_id:uuid}", summary="One conversation")
    async def get_conversation(
        self, db_session: DbSession, principal: Caller, conversation_id: FromPath[uuid.UUID]
    ) -> ConversationOut:
        return present(await ConversationService(db_session, principal).get(conversation_id))

    @get("/{conversation_id:uuid}/messages", summary="A conversation's messages, oldest first")
    async def list_messages(
        self,
        db_session: DbSession,
        principal: Caller,
        conversation_id: FromPath[uuid.UUID],
        limit: Limit = 100,
        cursor: FromQuery[str | None] = None,
    ) -> MessageList:
        rows = await ConversationService(db_session, principal).messages_page(
            conversation_id, limit, cursor
        )
        items = [msgspec.convert(row, MessageOut, from_attributes=True) for row in rows]
        next_cursor = (
            encode_cursor(rows[-1].created_at, rows[-1].id) if len(rows) == limit else None
        )
        return MessageList(items=items, next_cursor=next_cursor)

    @post(
        "/{conversation_id:uuid}/resolve",
        summary="Resolve a conversation",
        status_code=200,
        operation_class=OptionalBodyOperation,
    )
    async def resolve_conversation(
        self,
        db_session: DbSession,
        principal: Caller,
        conversation_id: FromPath[uuid.UUID],
        data: JSONBody[ResolveRequest | None] = None,
    ) -> ConversationOut:
        reason = (data or ResolveRequest()).reason
        conversation = await ConversationService(db_session, principal).resolve(
            conversation_id, reason
        )
        return present(conversation)
