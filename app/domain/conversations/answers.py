"""The bot's answers come from the knowledge base, exactly as `POST /api/v1/query` gives them."""

from __future__ import annotations

import uuid

import msgspec
from litestar.exceptions import NotFoundException
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.conversations.bot import BotAnswer
from app.domain.knowledge.controllers import answer_body
from app.domain.knowledge.service import KnowledgeSearch
from app.gateways.gemini import GeminiGateway


class KnowledgeAnswerer:
    def __init__(self, gemini: GeminiGateway) -> None:
        self.gemini = gemini

    async def __call__(
        self,
        session: AsyncSession,
        org_id: uuid.UUID,
        knowledge_base_id: uuid.UUID | None,
        question: str,
        history: list[tuple[str, str]],
    ) -> BotAnswer:
        try:
            answer = await KnowledgeSearch(session, org_id, self.gemini).answer(
                question, knowledge_base_id, history=history
            )
        except NotFoundException:
            # The organization has no knowledge base yet: nothing to answer from.
            return BotAnswer(text="", mode="no_answer")
        body = answer_body(answer)
        return BotAnswer(
            text=body.answer, mode=body.mode, sources=msgspec.to_builtins(body.sources)
        )
