"""The console's reads: an agent's conversations with unread counts, the queue, a thread."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncSession

# Unread: customer messages newer than both the last agent reply and what this agent last saw.
_MINE = text(
    """
SELECT c.id, c.contact_name, c.contact_external_id, c.status, c.priority, c.escalation_reason,
       c.last_message_at,
       (SELECT count(*) FROM messages m
        WHERE m.conversation_id = c.id AND m.role = 'user'
          AND m.created_at > greatest(
              coalesce((SELECT max(r.created_at) FROM messages r
                        WHERE r.conversation_id = c.id AND r.role = 'agent'),
                       CAST('-infinity' AS timestamptz)),
              coalesce(seen.read_at, CAST('-infinity' AS timestamptz)))) AS unread,
       (SELECT m.content FROM messages m WHERE m.conversation_id = c.id
        ORDER BY m.created_at DESC, m.id DESC LIMIT 1) AS last_text
FROM conversations c
LEFT JOIN unnest(CAST(:read_ids AS uuid[]), CAST(:read_ats AS timestamptz[]))
     AS seen(conversation_id, read_at) ON seen.conversation_id = c.id
WHERE c.org_id = :org_id AND c.assigned_agent_id = :agent_id AND c.status = 'assigned'
ORDER BY c.last_message_at DESC, c.id
LIMIT 200
"""
)

_QUEUE = text(
    """
SELECT q.conversation_id, q.priority, q.reason, q.enqueued_at, q.required_skills,
       c.contact_name, c.contact_external_id, now() - q.enqueued_at AS waiting
FROM agent_queue q JOIN conversations c ON c.id = q.conversation_id
WHERE q.org_id = :org_id AND q.status = 'waiting'
ORDER BY q.priority DESC, q.enqueued_at, q.id
LIMIT 200
"""
)

_THREAD = text(
    """
SELECT id, role, content, created_at, delivery_status, sources FROM (
    SELECT id, role, content, created_at, delivery_status, sources FROM messages
    WHERE conversation_id = :conversation_id AND org_id = :org_id
    ORDER BY created_at DESC, id DESC
    LIMIT :limit
) AS latest
ORDER BY created_at, id
"""
)


class ConsoleRepository:
    def __init__(self, session: AsyncSession, org_id: uuid.UUID) -> None:
        self.session = session
        self.org_id = org_id

    async def held_by(
        self, agent_id: uuid.UUID, read: dict[uuid.UUID, datetime]
    ) -> Sequence[RowMapping]:
        params: dict[str, Any] = {
            "org_id": self.org_id,
            "agent_id": agent_id,
            "read_ids": list(read),
            "read_ats": list(read.values()),
        }
        return (await self.session.execute(_MINE, params)).mappings().all()

    async def waiting(self) -> Sequence[RowMapping]:
        return (await self.session.execute(_QUEUE, {"org_id": self.org_id})).mappings().all()

    async def thread(self, conversation_id: uuid.UUID, limit: int = 200) -> Sequence[RowMapping]:
        params = {"conversation_id": conversation_id, "org_id": self.org_id, "limit": limit}
        return (await self.session.execute(_THREAD, params)).mappings().all()
