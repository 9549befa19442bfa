"""Breaker state shared through Redis: one hash per breaker, each step one atomic Lua script.

Fields of `<prefix><name>`: `s` state (absent = closed), `f` consecutive failures, `o` when it
last opened, `t` until when the current half-open trial holds its lease. Times come from the
Redis server clock (`TIME`), so processes with skewed clocks share one timeline. A closed breaker
without failures has no key at all; every write renews a generous expiry so abandoned breakers
do not accumulate.

The threshold and timeout are arguments of each script call rather than stored values: a process
always applies its own configuration, and a changed setting takes effect at the next call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from redis.asyncio import Redis

State = Literal["closed", "open", "half_open"]
_STATES: Final = frozenset({"closed", "open", "half_open"})

# ARGV: how long an opening lasts (s), key lifetime (ms). Returns {allowed, trial, state before,
# state after, failures, opened_at, seconds until a trial is allowed}; floats travel as strings
# because Lua numbers are truncated to integers in replies.
_ADMIT_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local timeout = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 's', 'f', 'o', 't')
local before = h[1] or 'closed'
local after = before
local allowed, trial, wait = 1, 0, ''
if before == 'open' then
  local reopen = (tonumber(h[3]) or 0) + timeout
  if now < reopen then
    allowed = 0
    wait = string.format('%.6f', reopen - now)
  else
    after = 'half_open'
    trial = 1
  end
elseif before == 'half_open' then
  if now < (tonumber(h[4]) or 0) then
    allowed = 0
  else
    trial = 1
  end
end
if trial == 1 then
  redis.call('HSET', KEYS[1], 's', 'half_open', 't', string.format('%.6f', now + timeout))
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {allowed, trial, before, after, tonumber(h[2]) or 0, h[3] or '', wait}
"""

# ARGV: 1 if the call failed, 1 if it was the half-open trial, threshold, key lifetime (ms).
# Only a call made while closed, or the trial, decides anything: the outcome of a call admitted
# before the breaker opened is old news. Returns {state before, state after, failures, opened_at}.
_SETTLE_LUA: Final = """
local h = redis.call('HMGET', KEYS[1], 's', 'f', 'o')
local before = h[1] or 'closed'
local after, failures, opened = before, tonumber(h[2]) or 0, h[3] or ''
if before == 'closed' or (before == 'half_open' and ARGV[2] == '1') then
  if ARGV[1] == '1' then
    failures = redis.call('HINCRBY', KEYS[1], 'f', 1)
    if before == 'half_open' or failures >= tonumber(ARGV[3]) then
      local t = redis.call('TIME')
      opened = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
      after = 'open'
      redis.call('HSET', KEYS[1], 's', 'open', 'o', opened)
      redis.call('HDEL', KEYS[1], 't')
    end
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  elseif before == 'half_open' or failures > 0 then
    redis.call('DEL', KEYS[1])
    after, failures, opened = 'closed', 0, ''
  end
end
return {before, after, failures, opened}
"""


@dataclass(frozen=True, slots=True)
class Snapshot:
    state: State
    failures: int
    opened_at: float | None


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    trial: bool
    before: State
    after: Snapshot
    retry_after: float | None


@dataclass(frozen=True, slots=True)
class Settlement:
    before: State
    after: Snapshot


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def _state(value: Any) -> State:
    text = _text(value) or "closed"
    if text not in _STATES:
        raise ValueError(f"unknown breaker state in Redis: {text!r}")
    return cast(State, text)


def _seconds(value: Any) -> float | None:
    text = _text(value)
    return float(text) if text else None


def _key_lifetime_ms(open_for: float) -> int:
    # Long enough that no live breaker expires (a day, or ten open periods if those are longer).
    return int(max(86_400.0, 10 * open_for) * 1000)


class RedisBreakerStore:
    def __init__(self, redis: Redis, prefix: str = "cb:") -> None:
        self._redis = redis
        self._prefix = prefix
        # register_script uses EVALSHA and reloads the script after a Redis restart (NOSCRIPT).
        self._admit = redis.register_script(_ADMIT_LUA)
        self._settle = redis.register_script(_SETTLE_LUA)

    def key(self, name: str) -> str:
        return f"{self._prefix}{name}"

    async def ping(self) -> None:
        await self._redis.ping()

    async def admit(self, name: str, open_for: float) -> Admission:
        reply: Any = await self._admit(
            keys=[self.key(name)], args=[repr(float(open_for)), _key_lifetime_ms(open_for)]
        )
        allowed, trial, before, after, failures, opened_at, wait = reply
        return Admission(
            allowed=int(allowed) == 1,
            trial=int(trial) == 1,
            before=_state(before),
            after=Snapshot(_state(after), int(failures), _seconds(opened_at)),
            retry_after=_seconds(wait),
        )

    async def settle(
        self, name: str, *, failed: bool, trial: bool, threshold: int, open_for: float
    ) -> Settlement:
        reply: Any = await self._settle(
            keys=[self.key(name)],
            args=[int(failed), int(trial), threshold, _key_lifetime_ms(open_for)],
        )
        before, after, failures, opened_at = reply
        return Settlement(
            before=_state(before),
            after=Snapshot(_state(after), int(failures), _seconds(opened_at)),
        )

    async def fetch(self, names: Iterable[str]) -> dict[str, Snapshot]:
        ordered = list(names)
        if not ordered:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in ordered:
                pipe.hmget(self.key(name), "s", "f", "o")
            replies: list[Any] = await pipe.execute()
        return {
            name: Snapshot(_state(state), int(_text(failures) or 0), _seconds(opened_at))
            for name, (state, failures, opened_at) in zip(ordered, replies, strict=True)
        }

    async def delete(self, names: Iterable[str]) -> None:
        keys = [self.key(name) for name in names]
        if keys:
            await self._redis.delete(*keys)
