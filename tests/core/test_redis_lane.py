"""`RedisLane`: the request path's own connections, against the real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.core.redis import RedisLane
from app.core.security.ratelimit import RedisRateLimiter
from tests.core.test_ratelimit import HOUR, MINUTE

pytestmark = pytest.mark.redis


@pytest.fixture
async def named_client(redis_url: str) -> AsyncIterator[tuple[Redis, str]]:
    """A client whose connections (the lane's too) carry a name of their own."""
    name = f"lane-{uuid.uuid4().hex[:8]}"
    client = Redis.from_url(redis_url, client_name=name, max_connections=4)
    yield client, name
    await client.aclose()


Lanes = Callable[..., RedisLane]


@pytest.fixture
async def lanes(named_client: tuple[Redis, str]) -> AsyncIterator[Lanes]:
    """Lanes of the named client (keyword arguments as `RedisLane`'s), closed afterwards."""
    made: list[RedisLane] = []

    def lane(**options: int) -> RedisLane:
        made.append(RedisLane(named_client[0], **options))
        return made[-1]

    yield lane
    for lane_made in made:
        await lane_made.aclose()


async def test_replies_and_error_replies(lanes: Lanes, key_prefix: str) -> None:
    lane = lanes()
    key = f"{key_prefix}value"
    assert await lane.call(lane.pack("SET", key, "17")) in (b"OK", "OK", True)
    assert await lane.call(lane.pack("INCRBY", key, 5)) == 22
    with pytest.raises(ResponseError):
        await lane.call(lane.pack("LPUSH", key, "x"))  # WRONGTYPE
    # An error reply leaves the connection usable.
    assert await lane.call(lane.pack("GET", key)) == b"22"


async def test_a_connection_cut_by_redis_gets_one_more_try(
    lanes: Lanes, named_client: tuple[Redis, str], real_redis: Redis, key_prefix: str
) -> None:
    lane = lanes()
    key = f"{key_prefix}cut"
    await lane.call(lane.pack("SET", key, "1"))
    # What a Redis restart does to an idle pooled connection.
    name = named_client[1]
    (connection,) = [c for c in await real_redis.client_list() if c.get("name") == name]
    assert await real_redis.client_kill_filter(_id=connection["id"]) == 1
    assert await lane.call(lane.pack("INCR", key)) == 2


async def test_an_interrupted_call_leaves_no_reply_behind(lanes: Lanes, key_prefix: str) -> None:
    lane = lanes(size=1)
    key = f"{key_prefix}late"
    await lane.call(lane.pack("SET", key, "mine"))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await lane.call(lane.pack("BLPOP", f"{key_prefix}empty", 1))
    # The one connection answers this call, not the BLPOP's late nil.
    assert await lane.call(lane.pack("GET", key)) == b"mine"


async def test_a_call_waits_while_every_connection_is_in_use(lanes: Lanes, key_prefix: str) -> None:
    lane = lanes(size=1)
    blocked = asyncio.create_task(lane.call(lane.pack("BLPOP", f"{key_prefix}q", 0.3)))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(lane.call(lane.pack("PING")))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert await blocked is None
    assert await waiting in (True, b"PONG")


async def test_pipelined_calls_answer_in_order_and_stay_in_step(
    lanes: Lanes, key_prefix: str
) -> None:
    lane = lanes(size=1)
    key, text = f"{key_prefix}n", f"{key_prefix}text"
    assert await lane.call_all(
        [lane.pack("INCR", key), lane.pack("INCR", key), lane.pack("INCRBY", key, 10)]
    ) == [1, 2, 12]
    await lane.call(lane.pack("SET", text, "x"))
    with pytest.raises(ResponseError):
        await lane.call_all([lane.pack("INCR", text), lane.pack("INCR", key)])
    # Every reply of the failed pipeline was read: the next call gets its own.
    assert await lane.call(lane.pack("GET", key)) == b"13"


async def test_limiter_reloads_a_script_redis_lost(
    named_client: tuple[Redis, str], real_redis: Redis, key_prefix: str
) -> None:
    client, _ = named_client
    limiter = RedisRateLimiter(client, prefix=key_prefix)
    try:
        first = await limiter.hit("k", [MINUTE, HOUR])
        await real_redis.script_flush()  # as after a Redis restart
        second = await limiter.hit("k", [MINUTE, HOUR])
        third = await limiter.hit("k", [MINUTE, HOUR])
    finally:
        await limiter.aclose()
    assert first.allowed and second.allowed and third.allowed
    assert [first.remaining, second.remaining, third.remaining] == [59, 58, 57]
