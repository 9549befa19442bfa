"""Per-key rate limiting with GCRA, in Redis or in process.

Algorithm
    GCRA (generic cell rate algorithm) keeps one number per key and limit: the
    theoretical arrival time (TAT). With emission interval ``T = window / quota`` and
    burst tolerance ``tau = quota * T``, a request at time ``now`` is allowed when
    ``max(TAT, now) + T - now <= tau`` and then moves TAT to ``max(TAT, now) + T``.
    From an empty state that admits exactly ``quota`` requests in a burst, after which
    capacity returns at one request per ``T``. Unlike fixed windows there is no
    double-burst at a window edge, and unlike sliding logs the state is O(1).

Exact integer arithmetic
    Time is kept in integer microseconds and ``T`` is floored to whole microseconds;
    ``tau`` is defined as ``quota * T`` (not ``window``) so the burst is exactly
    ``quota`` even when ``window / quota`` is not an integer (refill is then at most
    1 microsecond per request faster than nominal). Lua numbers are doubles, which
    represent these integers exactly (Unix microseconds are < 2**53), so the Redis
    script and the Python implementation make bit-identical decisions for the same
    inputs - no float drift can turn the 60th request of a burst into a rejection.

Several limits at once
    ``hit(key, [minute, hour])`` checks every limit and advances the TATs only when
    *all* of them allow: a request rejected by the minute limit must not also burn
    hourly quota. In Redis this is one Lua script (atomic, one round trip) that reads
    the server clock with ``TIME`` so that app servers with skewed clocks share one
    timeline. Each key gets a PX expiry equal to the time until its TAT passes, after
    which an absent key and an expired one mean the same thing. Keys are
    ``<prefix><limit name>:<key>``; they are not hash-tagged, so the script targets a
    single Redis node (not Redis Cluster).

Degradation
    :class:`FallbackRateLimiter` bounds every Redis interaction by ``timeout``
    (``asyncio.timeout``; redis-py's own retry/backoff could otherwise keep a request
    busy for seconds). :meth:`FallbackRateLimiter.warm`, called at start-up, opens the
    client's connections and loads the script, so a process's first burst does not pay
    for them inside that budget. An exhausted client connection pool
    (``MaxConnectionsError``) is local backpressure, so that one request is answered
    from memory without leaving Redis mode; give the client a ``BlockingConnectionPool``
    (or a pool at least as large as the expected concurrency) to avoid it. A timeout is
    tried once more (a slow answer is usually the process's own event loop stalling for
    a moment, not Redis), and a request whose second try also times out is answered from
    memory; the limiter leaves Redis mode only when timeouts go on with no answer in
    between for ``degrade_after`` seconds, or at once on any other failure (connection
    refused or reset, protocol or script error). Degraded, it uses an in-process
    :class:`MemoryRateLimiter` (one WARNING), and at most one request per
    ``probe_interval`` tries ``PING`` plus the real script within the same ``timeout``
    budget; success switches back (one INFO). Limits are then per process rather than
    global, and the memory state starts empty - a deliberate trade: a Redis outage
    loosens limits instead of failing webhook deliveries. A caller's cancellation always
    wins over the fallback, even when it arrives as the Redis call times out.

Deciding first, sharing afterwards
    :class:`LocalFirstLimiter` serves a limit that must not cost a Redis round trip per request
    (the webhook's failed-attempt limit: a flood of bad signatures should be cheap to refuse).
    It decides from an in-process GCRA and from what Redis last said about the key, and every
    ``interval`` sends the hits it admitted to Redis in one script call (``GCRA_ADD_LUA``, the
    same keys and TAT format as ``GCRA_LUA``), which answers how long each key now waits
    across all processes. One process alone is exact. Several: a key new to a process can get
    that process's own burst before the shared count reaches it (one interval); what they
    admit together beyond the limit then makes the key wait that much longer everywhere, so
    over time they admit the limit together.

Headers
    :func:`policy_header` and :func:`ratelimit_header` render the structured-field form
    of the IETF httpapi RateLimit headers draft, ``RateLimit-Policy: "minute";q=60;w=60``
    and ``RateLimit: "minute";r=17;t=23``, where ``t`` is the number of seconds until
    the reported limit is fully replenished.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import MaxConnectionsError, NoScriptError

from app.core.redis import TIMEOUTS, OutageJudge, RedisLane

__all__ = [
    "GCRA_ADD_LUA",
    "GCRA_LUA",
    "Decision",
    "FallbackRateLimiter",
    "Limit",
    "LimitStatus",
    "LocalFirstLimiter",
    "MemoryRateLimiter",
    "Mode",
    "RedisRateLimiter",
    "policy_header",
    "ratelimit_header",
]

Mode = Literal["redis", "memory", "memory-unconfigured"]

_US: Final = 1_000_000
# Limit names end up in Redis keys (":" separates name from key) and unescaped inside
# structured-field strings, so they are restricted to characters safe in both.
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``quota`` requests per ``window_seconds``, burst included."""

    name: str
    quota: int
    window_seconds: int
    # Derived once (every decision reads them): the emission interval T, the time for one unit
    # of quota to come back, and the burst tolerance tau = quota * T (exactly ``quota``
    # requests from empty).
    interval_us: int = field(init=False, repr=False, compare=False)
    tolerance_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"invalid limit name: {self.name!r}")
        if self.quota < 1 or self.window_seconds < 1:
            raise ValueError("quota and window_seconds must be >= 1")
        if self.quota > self.window_seconds * _US:
            raise ValueError("quota too large: emission interval would be below 1 microsecond")
        interval = self.window_seconds * _US // self.quota
        object.__setattr__(self, "interval_us", interval)
        object.__setattr__(self, "tolerance_us", interval * self.quota)


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """State of one limit after a decision."""

    limit: Limit
    blocked: bool  # this limit alone would have rejected the request
    remaining: int
    reset_seconds: int
    wait_us: int  # time until one more request would pass this limit


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of ``hit``. ``limit``/``remaining``/``reset_seconds`` describe the most
    constraining limit: the one forcing the longest wait when rejected, otherwise the
    one with the fewest remaining requests."""

    allowed: bool
    limits: tuple[LimitStatus, ...]
    remaining: int
    reset_seconds: int
    retry_after: int | None
    limit: Limit


def _ceil_seconds(us: int) -> int:
    return -(-us // _US)


def _validate(key: str, limits: Sequence[Limit]) -> tuple[Limit, ...]:
    if not isinstance(key, str) or not key:
        raise ValueError("rate-limit key must be a non-empty string")
    checked = tuple(limits)
    if not checked:
        raise ValueError("at least one limit is required")
    if len({limit.name for limit in checked}) != len(checked):
        # Same name means same storage key: two limits would overwrite one TAT.
        raise ValueError("limit names must be unique within one call")
    return checked


def _build_decision(limits: tuple[Limit, ...], allowed: bool, offsets: Sequence[int]) -> Decision:
    """``offsets[i]`` is ``TAT - now`` for limit i after the decision was applied."""
    statuses: list[LimitStatus] = []
    for limit, raw_offset in zip(limits, offsets, strict=True):
        # Clamp: a Redis clock step backwards can leave TAT further ahead than tau.
        offset = max(0, raw_offset)
        interval, tau = limit.interval_us, limit.tolerance_us
        wait = max(0, offset + interval - tau)
        statuses.append(
            LimitStatus(
                limit=limit,
                blocked=not allowed and wait > 0,
                remaining=max(0, (tau - offset) // interval),
                reset_seconds=_ceil_seconds(offset),
                wait_us=wait,
            )
        )
    if allowed:
        top = min(statuses, key=lambda s: (s.remaining, -s.reset_seconds))
        retry_after = None
    else:
        top = max(statuses, key=lambda s: s.wait_us)
        retry_after = max(1, _ceil_seconds(top.wait_us))
    return Decision(
        allowed=allowed,
        limits=tuple(statuses),
        remaining=top.remaining,
        reset_seconds=top.reset_seconds,
        retry_after=retry_after,
        limit=top.limit,
    )


def _effective(now: int, tat: int | None) -> int:
    """A key's TAT as the algorithm reads it: never in the past (absent: now)."""
    return now if tat is None or tat < now else tat


def _admits(now: int, tat: int, limit: Limit) -> bool:
    """Whether one more hit fits `limit` at `now`, given its effective TAT."""
    return tat + limit.interval_us - now <= limit.tolerance_us


def _gcra(
    now: int, tats: Sequence[int | None], limits: tuple[Limit, ...]
) -> tuple[bool, list[int]]:
    """Python twin of the Lua script; returns (allowed, TATs after the decision)."""
    effective = [_effective(now, tat) for tat in tats]
    allowed = all(_admits(now, tat, limit) for tat, limit in zip(effective, limits, strict=True))
    if allowed:
        effective = [tat + limit.interval_us for tat, limit in zip(effective, limits, strict=True)]
    return allowed, effective


# KEYS[i]: one key per limit. ARGV[2i-1], ARGV[2i]: emission interval and burst
# tolerance of limit i, in microseconds. Returns {allowed, TAT_1 - now, ...}.
# Numbers are written with %.0f because tostring() would use %.14g and round
# microsecond timestamps.
GCRA_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local tats = {}
local allowed = 1
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local tau = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if not tat or tat < now then
    tat = now
  end
  if tat + interval - now > tau then
    allowed = 0
  end
  tats[i] = tat
end
local result = {allowed}
for i = 1, n do
  local tat = tats[i]
  if allowed == 1 then
    tat = tat + tonumber(ARGV[2 * i - 1])
    local ttl_ms = math.ceil((tat - now) / 1000)
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', string.format('%.0f', ttl_ms))
  end
  result[i + 1] = tat - now
end
return result
"""


# KEYS[i]: one key per client, all under one limit. ARGV[1], ARGV[2]: its emission interval and
# burst tolerance in microseconds; ARGV[i + 2]: the hits counted for KEYS[i] since the last call.
# They were admitted already, so they are added whatever the state: TAT then runs ahead of a full
# burst by what the processes admitted together beyond the limit, and that is how long the key
# waits. Returns, per key, microseconds until its next hit is allowed (0: allowed now).
GCRA_ADD_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local waits = {}
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if not tat or tat < now then
    tat = now
  end
  tat = tat + interval * tonumber(ARGV[i + 2])
  local ttl_ms = math.ceil((tat - now) / 1000)
  redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', string.format('%.0f', ttl_ms))
  waits[i] = math.max(0, tat + interval - now - tau)
end
return waits
"""


# Distinct (key, limits) whose packed script call a `RedisRateLimiter` keeps.
_PACKED_MAX = 4096


class RedisRateLimiter:
    """GCRA shared by all app instances; one atomic script call per ``hit``.

    A hit's call is the same bytes every time for the same key and limits (the script reads
    the server's clock), so it is packed once and sent on a `RedisLane`; when Redis lost the
    script (NOSCRIPT) the client's own path sends it again with the script."""

    def __init__(self, redis: Redis, prefix: str = "rl:") -> None:
        self._redis = redis
        self._prefix = prefix
        # register_script sends EVALSHA and transparently loads the script on NOSCRIPT
        # (e.g. after a Redis restart or SCRIPT FLUSH).
        self._script = redis.register_script(GCRA_LUA)
        self._add_script = redis.register_script(GCRA_ADD_LUA)
        self._lane = RedisLane(redis)
        self._packed: dict[tuple[str, tuple[Limit, ...]], list[bytes]] = {}

    async def ping(self) -> None:
        await self._redis.ping()

    async def warm(self, connections: int) -> None:
        """Open up to `connections` connections at once, the client's and the lane's, and load
        the script."""
        ping = self._lane.pack("PING")
        await asyncio.gather(
            *(self._redis.ping() for _ in range(connections)),
            *(self._lane.call(ping) for _ in range(connections)),
        )
        await self._redis.script_load(GCRA_LUA)
        await self._redis.script_load(GCRA_ADD_LUA)

    async def hit(self, key: str, limits: Sequence[Limit]) -> Decision:
        checked = _validate(key, limits)
        command = self._packed.get((key, checked))
        if command is None:
            if len(self._packed) >= _PACKED_MAX:
                self._packed.clear()
            keys, args = self._script_input(key, checked)
            command = self._packed[key, checked] = self._lane.pack(
                "EVALSHA", self._script.sha, len(keys), *keys, *args
            )
        reply: Any
        try:
            reply = await self._lane.call(command)
        except NoScriptError:
            keys, args = self._script_input(key, checked)
            reply = await self._script(keys=keys, args=args)
        if not isinstance(reply, list) or len(reply) != len(checked) + 1:
            raise RuntimeError(f"unexpected reply from rate-limit script: {reply!r}")
        return _build_decision(checked, int(reply[0]) == 1, [int(v) for v in reply[1:]])

    def _script_input(self, key: str, limits: tuple[Limit, ...]) -> tuple[list[str], list[int]]:
        keys = [f"{self._prefix}{limit.name}:{key}" for limit in limits]
        args: list[int] = []
        for limit in limits:
            args += [limit.interval_us, limit.tolerance_us]
        return keys, args

    async def aclose(self) -> None:
        await self._lane.aclose()

    async def add(self, limit: Limit, counts: dict[str, int]) -> dict[str, int]:
        """Add hits already admitted elsewhere; per key, microseconds until the next is allowed."""
        keys = list(counts)
        reply: Any = await self._add_script(
            keys=[f"{self._prefix}{limit.name}:{key}" for key in keys],
            args=[limit.interval_us, limit.tolerance_us, *counts.values()],
        )
        if not isinstance(reply, list) or len(reply) != len(keys):
            raise RuntimeError(f"unexpected reply from rate-limit script: {reply!r}")
        return {key: int(wait) for key, wait in zip(keys, reply, strict=True)}


class MemoryRateLimiter:
    """The same GCRA in process, holding at most ``max_keys`` keys (LRU eviction).

    Evicting a key forgets its history, i.e. hands it a fresh burst; the bound exists
    so that a flood of distinct keys (e.g. spoofed sources) cannot exhaust memory.
    """

    def __init__(
        self, max_keys: int = 100_000, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self._max_keys = max_keys
        self._clock = clock
        self._entries: OrderedDict[str, dict[str, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def hit_now(self, key: str, limits: Sequence[Limit]) -> Decision:
        """Synchronous ``hit``: no await inside, so it is atomic within an event loop."""
        checked = _validate(key, limits)
        now = round(self._clock() * _US)
        entry = self._entries.get(key)
        if entry is None:
            entry = {}
            self._entries[key] = entry
        else:
            self._entries.move_to_end(key)
        allowed, tats = _gcra(now, [entry.get(limit.name) for limit in checked], checked)
        if allowed:
            for limit, tat in zip(checked, tats, strict=True):
                entry[limit.name] = tat
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)
        return _build_decision(checked, allowed, [tat - now for tat in tats])

    async def hit(self, key: str, limits: Sequence[Limit]) -> Decision:
        return self.hit_now(key, limits)


class FallbackRateLimiter:
    """Redis when it is healthy, the in-memory limiter when it is not (or absent).

    ``fallback_decisions`` counts decisions served from memory although Redis is
    configured (outage, timeout, exhausted pool); the memory-unconfigured mode does not
    count. Export it as a metric: a rising value means limits are per process.
    """

    def __init__(
        self,
        redis: Redis | None,
        *,
        timeout: float = 0.1,
        probe_interval: float = 5.0,
        degrade_after: float = 1.0,
        prefix: str = "rl:",
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._remote = RedisRateLimiter(redis, prefix) if redis is not None else None
        self._memory = MemoryRateLimiter(max_keys, clock=clock)
        self._timeout = timeout
        self._probe_interval = probe_interval
        self._judge = OutageJudge(degrade_after, clock)
        self._clock = clock
        self._mode: Mode = "redis" if redis is not None else "memory-unconfigured"
        self._next_probe = 0.0
        self._fallback_decisions = 0

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def fallback_decisions(self) -> int:
        return self._fallback_decisions

    async def warm(self, connections: int = 8, budget: float = 2.0) -> None:
        """Open Redis connections and load the script before the first request, within
        `budget` seconds; a Redis unreachable now starts the limiter degraded (and probing)."""
        if self._remote is None or self._mode != "redis":
            return
        try:
            async with asyncio.timeout(budget):
                await self._remote.warm(connections)
        except Exception as exc:
            _raise_if_cancelling(exc)
            self._degrade(exc)

    async def aclose(self) -> None:
        """Close the connections kept for the per-request calls (the client is the caller's)."""
        if self._remote is not None:
            await self._remote.aclose()

    async def hit(self, key: str, limits: Sequence[Limit]) -> Decision:
        # Validate first so caller bugs raise instead of masquerading as a Redis outage.
        checked = _validate(key, limits)
        if self._remote is None:
            return self._memory.hit_now(key, checked)
        if self._mode == "memory":
            decision = await self._try_recover(self._remote, key, checked)
            if decision is not None:
                return decision
            return self._from_memory(key, checked)
        timeout: Exception | None = None
        for _ in range(2):  # a timeout gets one more try
            try:
                async with asyncio.timeout(self._timeout):
                    decision = await self._remote.hit(key, checked)
            except MaxConnectionsError:
                # Our own connection pool is exhausted (a local concurrency spike), not a
                # Redis outage: answer this one from memory but keep using Redis.
                return self._from_memory(key, checked)
            # Deliberately broad: whatever goes wrong with Redis (connection, timeout,
            # protocol, script error) must cost the request a memory decision, not a 500.
            except Exception as exc:
                _raise_if_cancelling(exc)
                if not isinstance(exc, TIMEOUTS):
                    self._degrade(exc)
                    return self._from_memory(key, checked)
                timeout = exc
                continue
            self._judge.answered()
            return decision
        assert timeout is not None
        if self._judge.is_outage(timeout):
            self._degrade(timeout)
        return self._from_memory(key, checked)

    def _from_memory(self, key: str, limits: tuple[Limit, ...]) -> Decision:
        self._fallback_decisions += 1
        return self._memory.hit_now(key, limits)

    def _degrade(self, exc: BaseException) -> None:
        self._next_probe = self._clock() + self._probe_interval
        self._judge.answered()
        if self._mode == "redis":
            self._mode = "memory"
            logger.warning(
                "rate limiter: Redis unavailable ({}: {}); using in-process limits, "
                "probing every {}s",
                type(exc).__name__,
                exc,
                self._probe_interval,
            )

    async def _try_recover(
        self, remote: RedisRateLimiter, key: str, limits: tuple[Limit, ...]
    ) -> Decision | None:
        if not self._probe_due():
            return None
        try:
            # PING and the real call share one budget: a probing request must not wait
            # longer than any other request would.
            async with asyncio.timeout(self._timeout):
                await remote.ping()
                decision = await remote.hit(key, limits)
        except Exception as exc:
            _raise_if_cancelling(exc)
            return None
        self._recovered()
        return decision

    def _probe_due(self) -> bool:
        """Degraded, at most one call per `probe_interval` tries Redis again. The next probe is
        pushed forward before anything is awaited, so concurrent calls do not all probe."""
        if self._clock() < self._next_probe:
            return False
        self._next_probe = self._clock() + self._probe_interval
        return True

    def _recovered(self) -> None:
        self._mode = "redis"
        logger.info(
            "rate limiter: Redis reachable again; back to shared limits "
            "({} decisions were served from memory so far)",
            self._fallback_decisions,
        )

    async def share(self, limit: Limit, counts: dict[str, int]) -> dict[str, int] | None:
        """Add hits admitted in process to the shared state (see `LocalFirstLimiter`); per key,
        microseconds until its next hit is allowed. None when Redis is absent or unavailable: the
        counts are dropped and the limit holds per process. Degraded, a call at most once per
        `probe_interval` is the probe."""
        remote = self._remote
        if remote is None or not counts:
            return None
        probing = self._mode == "memory"
        if probing and not self._probe_due():
            return None
        try:
            async with asyncio.timeout(self._timeout):
                waits = await remote.add(limit, counts)
        except Exception as exc:
            _raise_if_cancelling(exc)
            if not probing and (not isinstance(exc, TIMEOUTS) or self._judge.is_outage(exc)):
                self._degrade(exc)
            return None
        self._judge.answered()
        if probing:
            self._recovered()
        return waits


class LocalFirstLimiter:
    """One limit decided in process at once and shared through Redis afterwards (see the module
    docstring): a hit costs no I/O. Keys are bounded like `MemoryRateLimiter`'s; `aclose()`
    stops the background sharing."""

    def __init__(
        self,
        limiter: FallbackRateLimiter,
        limit: Limit,
        *,
        interval: float = 0.05,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limiter = limiter
        self._limits = (limit,)
        self._interval = interval
        self._max_keys = max_keys
        self._clock = clock
        # Per key, its TAT in this process (µs; insertion order is recency: a hit re-inserts its
        # key, the oldest goes first past `max_keys`), the hits admitted here since the last
        # report, and until when Redis said the key waits (µs).
        self._tats: dict[str, int] = {}
        self._counts: dict[str, int] = {}
        self._blocked: dict[str, int] = {}
        self._waiting = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def limit(self) -> Limit:
        return self._limits[0]

    def refuse(self, key: str) -> Decision | None:
        """Count a hit on `key`: None when it is allowed, else the refusal (for its headers)."""
        now = round(self._clock() * _US)
        limit = self._limits[0]
        until = self._blocked.get(key)
        if until is not None:
            if until > now:
                # Waiting in the shared state: refused as the Redis script would have.
                offset = until - now - limit.interval_us + limit.tolerance_us
                return _build_decision(self._limits, False, [offset])
            del self._blocked[key]
        tat = _effective(now, self._tats.pop(key, None))
        if not _admits(now, tat, limit):
            self._tats[key] = tat
            return _build_decision(self._limits, False, [tat - now])
        self._tats[key] = tat + limit.interval_us
        if len(self._tats) > self._max_keys:
            del self._tats[next(iter(self._tats))]
        self._counts[key] = self._counts.get(key, 0) + 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._waiting.set()
        return None

    async def _run(self) -> None:
        while True:
            await self._waiting.wait()
            await asyncio.sleep(self._interval)
            self._waiting.clear()
            counts, self._counts = self._counts, {}
            waits = await self._limiter.share(self.limit, counts)
            if not waits:
                continue
            now = round(self._clock() * _US)
            for key, wait in waits.items():
                if wait > 0:
                    self._blocked.pop(key, None)
                    self._blocked[key] = now + wait
            while len(self._blocked) > self._max_keys:
                del self._blocked[next(iter(self._blocked))]

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _raise_if_cancelling(exc: Exception) -> None:
    """A caller cancelled while the Redis step failed (a timeout firing at the same moment, or
    a client turning the cancellation into its own error): the cancellation must win, or the
    request would go on as if nothing happened."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


def policy_header(limits: Sequence[Limit]) -> str:
    """``RateLimit-Policy`` value, e.g. ``"minute";q=60;w=60, "hour";q=1000;w=3600``."""
    return ", ".join(f'"{limit.name}";q={limit.quota};w={limit.window_seconds}' for limit in limits)


def ratelimit_header(decision: Decision) -> str:
    """``RateLimit`` value for the most constraining limit, e.g. ``"minute";r=17;t=23``."""
    return f'"{decision.limit.name}";r={decision.remaining};t={decision.reset_seconds}'
