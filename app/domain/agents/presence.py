"""Presence: is an agent still at the console?

An agent shows it is there by holding the event stream open (the stream touches its presence
several times per grace period) or by `POST /api/v1/events/heartbeat`. An agent that has shown
itself once and then gives no sign for `PRESENCE_GRACE_SECONDS` is set `away` through
`AgentService.set_status`, so the routing rules for `away` apply: its unanswered conversations
go back to the queue. Agents that never used the stream or the heartbeat are not tracked (an
integration that only sets a status through the API keeps it).

With Redis the last signs of life are one sorted set scored on the Redis clock, so every process
sees every stream, and a claim (read and remove, in one script) lets any number of checkers run
without two of them acting on one lapse. Without Redis they live in this process's memory, which
is right for one process (the embedded default). A Redis error never turns anyone away: the
checker acts only after Redis has answered it for a whole grace period.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

PRESENCE_KEY = "botlyne:presence"
CLAIM_BATCH = 100
# Statuses that presence takes away; `offline` and `away` are the agent's own choice.
PRESENT_STATUSES = ("online", "busy")

_TOUCH = """
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(now[1]) + tonumber(now[2]) / 1000000, ARGV[1])
return 1
"""

_CLAIM_LAPSED = """
local now = redis.call('TIME')
local cutoff = tonumber(now[1]) + tonumber(now[2]) / 1000000 - tonumber(ARGV[1])
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[2]))
if #members > 0 then
    redis.call('ZREM', KEYS[1], unpack(members))
end
return members
"""


def _member(org_id: uuid.UUID, agent_id: uuid.UUID) -> str:
    return f"{org_id}:{agent_id}"


def _parse(member: bytes | str) -> tuple[uuid.UUID, uuid.UUID] | None:
    text = member.decode() if isinstance(member, bytes) else member
    try:
        org, agent = text.split(":", 1)
        return uuid.UUID(org), uuid.UUID(agent)
    except ValueError:
        return None


class Presence:
    def __init__(self, redis: Redis | None, grace_seconds: float) -> None:
        self.redis = redis
        self.grace_seconds = grace_seconds
        self._memory: dict[tuple[uuid.UUID, uuid.UUID], float] = {}
        self._redis_ok_since: float | None = None
        self._touch = redis.register_script(_TOUCH) if redis is not None else None
        self._claim = redis.register_script(_CLAIM_LAPSED) if redis is not None else None

    @property
    def touch_interval(self) -> float:
        """How often an open stream renews its agent's presence: several times per grace."""
        return max(0.2, min(15.0, self.grace_seconds / 4))

    async def touch(self, org_id: uuid.UUID, agent_id: uuid.UUID) -> None:
        if self._touch is None:
            self._memory[(org_id, agent_id)] = time.monotonic()
            return
        try:
            await self._touch(keys=[PRESENCE_KEY], args=[_member(org_id, agent_id)])
        except Exception as exc:
            logger.bind(component="presence").warning(
                "presence not recorded: {}", type(exc).__name__
            )

    async def claim_lapsed(self) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """(org, agent) pairs silent for a whole grace period, each handed to one caller only."""
        if self._claim is None:
            cutoff = time.monotonic() - self.grace_seconds
            lapsed = [pair for pair, seen in self._memory.items() if seen <= cutoff]
            for pair in lapsed:
                del self._memory[pair]
            return lapsed
        now = time.monotonic()
        try:
            if self._redis_ok_since is None:
                assert self.redis is not None
                await self.redis.ping()
                self._redis_ok_since = now
            if now - self._redis_ok_since < self.grace_seconds:
                return []
            members = await self._claim(keys=[PRESENCE_KEY], args=[self.grace_seconds, CLAIM_BATCH])
        except Exception as exc:
            if self._redis_ok_since is not None:
                logger.bind(component="presence").warning(
                    "presence check paused, Redis failed: {}", type(exc).__name__
                )
            self._redis_ok_since = None
            return []
        return [pair for pair in map(_parse, members) if pair is not None]


async def mark_lapsed_away(
    presence: Presence, sessionmaker: async_sessionmaker[AsyncSession]
) -> int:
    """Set every agent whose presence lapsed `away` (if it was online or busy); returns how many."""
    from app.db.models import SupportAgent
    from app.domain.agents.service import AgentService
    from app.domain.orgs.auth import Principal

    changed = 0
    for org_id, agent_id in await presence.claim_lapsed():
        log = logger.bind(component="presence", agent_id=str(agent_id))
        try:
            async with sessionmaker.begin() as session:
                agent = await session.get(SupportAgent, agent_id)
                if agent is None or agent.org_id != org_id or agent.status not in PRESENT_STATUSES:
                    continue
                system = Principal(
                    key_id=uuid.UUID(int=0), org_id=org_id, role="admin", agent_id=None
                )
                await AgentService(session, system).set_status(agent_id, "away")
            changed += 1
            log.info("agent away: no sign of life for {} s", presence.grace_seconds)
        except Exception as exc:
            log.warning("could not set a silent agent away: {}", type(exc).__name__)
    return changed
