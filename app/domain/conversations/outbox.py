"""Outbound messages and their delivery jobs, written together: the transactional outbox.

A message the user should receive is stored with `delivery_status = 'pending'` and a `deliver` job
in the same transaction; the delivery worker sends it later, retrying until it succeeds or is
given up. A generic integration without a `callback_url` has nowhere to send to: its messages are
stored without a delivery status and read through the API.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Conversation, Integration, IntegrationConfig, Job, Message


def deliverable(integration: Integration, config: IntegrationConfig) -> bool:
    return integration.type == "evolution" or bool(config.settings.get("callback_url"))


async def store_outbound(
    session: AsyncSession,
    conversation: Conversation,
    role: str,
    content: str,
    *,
    sources: list[dict[str, Any]] | None = None,
) -> Message:
    integration = await session.get_one(Integration, conversation.integration_id)
    config = (
        await session.execute(
            select(IntegrationConfig).where(IntegrationConfig.integration_id == integration.id)
        )
    ).scalar_one()
    send = deliverable(integration, config)
    message = Message(
        org_id=conversation.org_id,
        conversation_id=conversation.id,
        role=role,
        content=content,
        sources=sources,
        delivery_status="pending" if send else None,
    )
    session.add(message)
    await session.flush()
    if send:
        session.add(
            Job(
                kind="deliver",
                org_id=conversation.org_id,
                conversation_id=conversation.id,
                message_id=message.id,
            )
        )
        await session.flush()
    return message
