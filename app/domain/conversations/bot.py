"""The bot's turn: answer each inbound message of a conversation the bot still owns.

A `bot_reply` job is queued in the same statement that stores the inbound message. The worker
reads the conversation and recent turns, decides (a person was asked for → escalate; otherwise
answer from the integration's knowledge base; `no_answer` → escalate) and writes the outcome with
its delivery job in one transaction that first locks the conversation, so a human who took the
conversation meanwhile is never talked over.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loguru import logger
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.models import Conversation, Integration, Message
from app.domain.agents.desk import escalate
from app.domain.conversations.language import asks_for_human, guess_language
from app.domain.conversations.outbox import store_outbound
from app.workers.queue import ClaimedJob, backoff_seconds, complete, fail, retry_later

HISTORY_TURNS = 8


@dataclass(frozen=True, slots=True)
class BotAnswer:
    text: str
    mode: str  # "generated" | "extractive" | "no_answer"
    sources: list[dict[str, Any]] = field(default_factory=list)


# (session, org_id, knowledge_base_id, question, recent turns as (role, content)) → answer
Answerer = Callable[
    [AsyncSession, uuid.UUID, uuid.UUID | None, str, list[tuple[str, str]]], Awaitable[BotAnswer]
]


class BotReplier:
    def __init__(
        self,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        answerer: Answerer,
        max_failures: int,
    ) -> None:
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.sessionmaker = sessionmaker
        self.answerer = answerer
        self.max_failures = max_failures

    async def __call__(self, job: ClaimedJob) -> None:
        log = logger.bind(conversation_id=str(job.conversation_id), component="bot")
        try:
            outcome = await self.reply(job)
        except Exception as exc:
            log.opt(exception=exc).warning("bot reply failed (attempt {})", job.attempts)
            if job.attempts < self.max_failures:
                async with self.engine.connect() as connection:
                    await retry_later(
                        connection, job.id, backoff_seconds(job.attempts, 1.0), repr(exc)
                    )
                return
            await self.hand_over(job, "bot_failed")
            outcome = "escalated after repeated failures"
        log.debug("bot turn: {}", outcome)

    async def reply(self, job: ClaimedJob) -> str:
        # Reading and answering run without a transaction (autocommit): the answer may wait
        # on Gemini for a while, and an open transaction would sit idle holding its snapshot.
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            conversation = await session.get_one(Conversation, job.conversation_id)
            if conversation.status != "bot":
                await self._complete(job)
                return "silent: a person owns the conversation"
            inbound = await session.get_one(Message, job.message_id)
            language = asks_for_human(inbound.content)
            if language is not None:
                return await self._escalate(job, "user_requested", "connecting", language)
            integration = await session.get_one(Integration, conversation.integration_id)
            history = await self._history(session, conversation.id, inbound)
            answer = await self.answerer(
                session,
                conversation.org_id,
                integration.knowledge_base_id,
                inbound.content,
                history,
            )
        if answer.mode == "no_answer":
            return await self._escalate(
                job, "no_answer", "no_answer", guess_language(inbound.content)
            )
        async with self.sessionmaker.begin() as session:
            conversation = await self._lock(session, job.conversation_id)
            if conversation.status != "bot":
                await self._complete_in(session, job)
                return "dropped: a person took the conversation while the bot was answering"
            await store_outbound(session, conversation, "bot", answer.text, sources=answer.sources)
            await self._complete_in(session, job)
        return f"answered ({answer.mode})"

    async def hand_over(self, job: ClaimedJob, reason: str) -> None:
        async with self.sessionmaker.begin() as session:
            conversation = await self._lock(session, job.conversation_id)
            if conversation.status == "bot":
                await escalate(session, conversation, reason, datetime.now(UTC))
            await fail(await session.connection(), job.id, reason)

    async def _escalate(self, job: ClaimedJob, reason: str, notice_kind: str, language: str) -> str:
        async with self.sessionmaker.begin() as session:
            conversation = await self._lock(session, job.conversation_id)
            if conversation.status == "bot":
                await escalate(
                    session,
                    conversation,
                    reason,
                    datetime.now(UTC),
                    notice_kind=notice_kind,
                    language=language,
                )
            await self._complete_in(session, job)
        return f"escalated: {reason}"

    @staticmethod
    async def _lock(session: AsyncSession, conversation_id: uuid.UUID) -> Conversation:
        statement = select(Conversation).where(Conversation.id == conversation_id).with_for_update()
        return (await session.execute(statement)).scalar_one()

    @staticmethod
    async def _history(
        session: AsyncSession, conversation_id: uuid.UUID, inbound: Message
    ) -> list[tuple[str, str]]:
        rows = await session.execute(
            select(Message.role, Message.content)
            .where(Message.conversation_id == conversation_id, Message.id != inbound.id)
            .where(Message.created_at <= inbound.created_at)
            .order_by(Message.created_at.desc())
            .limit(HISTORY_TURNS)
        )
        return [(role, content) for role, content in reversed(rows.all())]

    async def _complete(self, job: ClaimedJob) -> None:
        async with self.engine.connect() as connection:
            await complete(connection, job.id)

    @staticmethod
    async def _complete_in(session: AsyncSession, job: ClaimedJob) -> None:
        await complete(await session.connection(), job.id)
