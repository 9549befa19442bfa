"""What each agent has read: the newest message it saw in each conversation's thread.

Kept in Redis (one hash per agent, forgotten after two weeks without a read) when it is
configured, so every process counts the same unread messages; in memory otherwise. Losing it
costs nothing but unread badges, so a Redis error only logs.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from redis.asyncio import Redis

KEEP_SECONDS = 14 * 24 * 3600


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ReadMarks:
    def __init__(self, redis: Redis | None) -> None:
        self.redis = redis
        self._memory: dict[uuid.UUID, dict[uuid.UUID, datetime]] = {}

    @staticmethod
    def _key(agent_id: uuid.UUID) -> str:
        return f"botlyne:console:read:{agent_id}"

    async def of(self, agent_id: uuid.UUID) -> dict[uuid.UUID, datetime]:
        if self.redis is None:
            return dict(self._memory.get(agent_id, {}))
        try:
            raw = await self.redis.hgetall(self._key(agent_id))
        except Exception as exc:
            logger.bind(component="console").warning(
                "read marks unavailable: {}", type(exc).__name__
            )
            return {}
        marks: dict[uuid.UUID, datetime] = {}
        for field, value in raw.items():
            try:
                marks[uuid.UUID(_text(field))] = datetime.fromisoformat(_text(value))
            except ValueError:
                continue
        return marks

    async def mark(self, agent_id: uuid.UUID, conversation_id: uuid.UUID, at: datetime) -> None:
        if self.redis is None:
            seen = self._memory.setdefault(agent_id, {})
            if conversation_id not in seen or seen[conversation_id] < at:
                seen[conversation_id] = at
            return
        try:
            key = self._key(agent_id)
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, str(conversation_id), at.isoformat())
                pipe.expire(key, KEEP_SECONDS)
                await pipe.execute()
        except Exception as exc:
            logger.bind(component="console").warning("read mark lost: {}", type(exc).__name__)
