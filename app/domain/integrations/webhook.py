"""The public webhook: the hardest door in the system, and a fast one.

Checks run in the order of the contract's outcome table, cheapest and least revealing first:
integration known / not deleted / enabled → client IP → body size → content type → signature →
failed-attempt limit per IP → the integration's quota → JSON → payload shape → duplicate →
accepted. Every attempt becomes one `integration_events` row. Rejections are answered here with
a response (never raised) so logs and metrics count them with their real status.

An accepted delivery costs one checkout from the webhook's own asyncpg pool and one
autocommitted statement, which claims the delivery key and stores the message. The
integration's configuration comes from a per-process cache (`CONFIG_CACHE_SECONDS`; changes made
through this process's API apply at once, those made through another replica within that bound),
and the attempts that are not accepted are written in batches by an `EventWriter`, so a refused
request makes no database round trip of its own. No connection is held while the client's body
is read or while Redis answers.

The gate works on the raw ASGI request (scope headers and `receive`) and answers a `Reply`: its
status, JSON body and headers. `WebhookDoor` sends it straight from the ASGI stack, in front of
Litestar's routing, so the public door pays for none of the framework's per-request machinery
(routing, dependency injection, response rendering); the request observer around it still gives
every request its id, security headers and metrics. The Litestar route declares the operation
for the OpenAPI document and serves the spellings the door leaves to the router (a trailing
slash). Failed signatures are limited per client IP by a `LocalFirstLimiter`: decided in
process, shared with the other replicas through Redis within 50 ms, so refusing a flood of bad
signatures costs no Redis round trip per request.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

import asyncpg
import msgspec
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_202_ACCEPTED,
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_410_GONE,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_429_TOO_MANY_REQUESTS,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.core.errors import answer_exception
from app.core.events import EventBus
from app.core.security.ip import (
    Address,
    Network,
    ip_allowed,
    parse_networks,
    resolve_client_ip,
)
from app.core.security.ratelimit import (
    Decision,
    FallbackRateLimiter,
    Limit,
    LocalFirstLimiter,
    policy_header,
    ratelimit_header,
)
from app.core.security.signatures import SIGNATURE_HEADERS, SignatureError, verify_signature
from app.domain.integrations.repository import (
    EventRecord,
    EventWriter,
    InboundMessage,
    WebhookRepository,
    WebhookTarget,
    create_pool,
)
from app.domain.integrations.schemas import (
    EvolutionEvent,
    EvolutionUpsert,
    GenericPayload,
)
from app.domain.integrations.service import (
    WEBHOOK_PATH,
    SecretEntries,
    parse_secrets,
    usable_secrets,
)

if TYPE_CHECKING:
    from litestar.datastructures import State
    from litestar.types import (
        ASGIApp,
        HTTPReceiveMessage,
        HTTPResponseStartEvent,
        HTTPScope,
        Receive,
        Scope,
        Send,
    )

    from app.domain.health.metrics import Metrics

FAILED_ATTEMPTS_WINDOW_SECONDS = 60
# How long a process serves an integration's configuration (secrets, status, allowlist, quotas)
# from memory: the bound on a change made through another replica taking effect here.
CONFIG_CACHE_SECONDS = 2.0
CONFIG_CACHE_MAX_ENTRIES = 10_000
_JSON_TYPES = ("application/json",)
WEBHOOK_PREFIX = WEBHOOK_PATH.removesuffix("{id}")
# The Litestar route's template: metrics label the door's requests with it too.
WEBHOOK_ROUTE = WEBHOOK_PREFIX + "{integration_id:str}"
_JSON_HEADER = (b"content-type", b"application/json")
ResponseHeaders = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Reply:
    """A webhook answer: status, JSON body, and the headers beyond content type and length."""

    status: int
    body: bytes
    headers: ResponseHeaders = field(default_factory=list)

    async def send(self, send: Send) -> None:
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": self.status,
            "headers": [_JSON_HEADER, (b"content-length", b"%d" % len(self.body)), *self.headers],
        }
        await send(start)
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


@lru_cache(maxsize=64)
def rejection_body(status_code: int, reason: str) -> bytes:
    """The error body of a rejection with nothing to add: the same few bytes every time."""
    return msgspec.json.encode(
        {"status_code": status_code, "detail": reason, "extra": {"reason": reason}}
    )


# A client's address, and as text (what events record and failures are counted by).
ClientIp = tuple[Address | None, str | None]
_NO_IP: ClientIp = (None, None)
# The request headers the checks read: the signature schemes', the body's, the forwarding one.
_READ_HEADERS = frozenset(
    name.encode()
    for name in (*SIGNATURE_HEADERS, "content-length", "content-type", "x-forwarded-for")
)


def _client_ip(address: Address | None) -> ClientIp:
    return (address, str(address)) if address is not None else _NO_IP


@lru_cache(maxsize=4096)
def peer_address(host: str) -> ClientIp:
    """The socket peer's address, parsed once per distinct peer rather than per request."""
    return _client_ip(resolve_client_ip(host, None, ()))


class ClientGone(Exception):
    """The client disconnected before its body was read."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """An integration's configuration in the form the checks use, built once per cache fill."""

    target: WebhookTarget
    # The non-empty allowlists (none: every address may deliver).
    allowlists: tuple[tuple[Network, ...], ...]
    secrets: SecretEntries
    # Some secret is in a rotation's grace period: which are usable depends on the clock.
    expiring: bool
    fallback_secret: str | None
    limits: tuple[Limit, ...]
    policy_bytes: bytes

    def usable_secrets(self) -> list[str]:
        """The secrets a signature may use now (`WEBHOOK_SIGNATURE_SECRET` when it has none)."""
        if self.expiring:
            usable = usable_secrets(self.secrets, datetime.now(UTC))
        else:
            usable = [secret for secret, _ in self.secrets]
        if not usable and self.fallback_secret:
            return [self.fallback_secret]
        return usable


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a payload means: a message to store (or None for an event only acknowledged)."""

    event_type: str
    message: InboundMessage | None
    provider_id: str | None


def holds_nul(data: Any) -> bool:
    """Whether any string in decoded JSON (keys included) contains U+0000."""
    if isinstance(data, str):
        return "\x00" in data
    if isinstance(data, dict):
        return any(holds_nul(key) or holds_nul(value) for key, value in data.items())
    if isinstance(data, list):
        return any(holds_nul(item) for item in data)
    return False


def parse_generic(data: Any) -> Parsed:
    payload = msgspec.convert(data, GenericPayload)
    if payload.sender is None and payload.conversation_id is None:
        raise msgspec.ValidationError("Object needs `sender.id` or `conversation_id`")
    contact_id = payload.sender.id if payload.sender else payload.conversation_id
    assert contact_id is not None
    message = InboundMessage(
        thread_key=payload.conversation_id or contact_id,
        contact_id=contact_id,
        contact_name=payload.sender.name if payload.sender else None,
        text=payload.message.body,
        external_id=payload.message_id,
        channel={},
    )
    return Parsed("message", message, payload.message_id)


def parse_evolution(data: Any, settings: dict[str, Any]) -> Parsed:
    event = msgspec.convert(data, EvolutionEvent)
    if event.event.lower().replace("_", ".") != "messages.upsert":
        return Parsed(event.event, None, None)
    upsert = msgspec.convert(data, EvolutionUpsert)
    key = upsert.data.key
    text = None
    if upsert.data.message is not None:
        text = upsert.data.message.conversation or (
            upsert.data.message.extended_text_message.text
            if upsert.data.message.extended_text_message
            else None
        )
    if not text:
        # Media without text is recorded and acknowledged only.
        return Parsed("messages.upsert.non_text", None, key.id)
    instance = upsert.instance or settings.get("instance")
    message = InboundMessage(
        thread_key=key.remote_jid,
        contact_id=key.remote_jid,
        # On our own messages pushName is the business's name, not the contact's.
        contact_name=None if key.from_me else upsert.data.push_name,
        text=text,
        external_id=key.id,
        channel={"instance": instance, "remote_jid": key.remote_jid},
        from_business=key.from_me,
    )
    kind = "messages.upsert.from_me" if key.from_me else "messages.upsert"
    return Parsed(kind, message, key.id)


class WebhookGate:
    """Everything the webhook needs, built once per application."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        limiter: FallbackRateLimiter,
        metrics: Metrics,
        on_inbound: Callable[[], None] = lambda: None,
        events: EventBus | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        # `message.received` goes out after the message's statement committed (autocommit).
        self.events = events or EventBus()
        # Wakes this process's bot worker at once; other processes find the job by polling.
        self.on_inbound = on_inbound
        # asyncpg runs each statement as its own transaction: one round trip each.
        self.pool = pool
        self.limiter = limiter
        self.global_allowlist = parse_networks(settings.allowed_webhook_ips)
        self.trusted_proxies = parse_networks(settings.trusted_proxies)
        self.failures = LocalFirstLimiter(
            limiter,
            Limit(
                "failures",
                settings.webhook_failed_attempts_per_minute,
                FAILED_ATTEMPTS_WINDOW_SECONDS,
            ),
        )
        self.event_writer = EventWriter(pool)
        # canonical integration id -> (monotonic expiry, configuration or None for an unknown id)
        self._configs: dict[str, tuple[float, Prepared | None]] = {}

    @classmethod
    async def open(
        cls,
        settings: Settings,
        engine: AsyncEngine,
        limiter: FallbackRateLimiter,
        metrics: Metrics,
        on_inbound: Callable[[], None] = lambda: None,
        events: EventBus | None = None,
    ) -> WebhookGate:
        """The gate with its own connection pool to `engine`'s database (half
        `DATABASE_POOL_SIZE`), and the limiter's Redis connections warm."""
        _, connect = engine.dialect.create_connect_args(engine.url)
        pool = await create_pool(connect, max(2, settings.database_pool_size // 2))
        # Connections and the script ready before the first request (see the limiter's docs).
        await limiter.warm()
        return cls(settings, pool, limiter, metrics, on_inbound, events)

    def prepare(self, target: WebhookTarget) -> Prepared:
        limits = (
            Limit(
                "minute",
                target.rate_limit_per_minute or self.settings.rate_limit_requests_per_minute,
                60,
            ),
            Limit(
                "hour",
                target.rate_limit_per_hour or self.settings.rate_limit_requests_per_hour,
                3600,
            ),
        )
        allowlists = (self.global_allowlist, parse_networks(target.allowed_ips))
        secrets = parse_secrets(target.secrets)
        return Prepared(
            target=target,
            allowlists=tuple(allowlist for allowlist in allowlists if allowlist),
            secrets=secrets,
            expiring=any(expires is not None for _, expires in secrets),
            fallback_secret=self.settings.webhook_signature_secret or None,
            limits=limits,
            policy_bytes=policy_header(limits).encode(),
        )

    async def config(self, integration_id: str) -> Prepared | None:
        """The configuration of the integration `integration_id` names (None: no such
        integration), from the cache when it is fresh enough. The cache is keyed by the id's
        canonical spelling, which is also how a path that spells it so is looked up first."""
        now = time.monotonic()
        cached = self._configs.get(integration_id)
        if cached is None or cached[0] <= now:
            try:
                key = str(uuid.UUID(integration_id))
            except ValueError:
                return None
            cached = self._configs.get(key)
            if cached is None or cached[0] <= now:
                cached = (now + CONFIG_CACHE_SECONDS, await self._read(key))
                self._configs.pop(key, None)
                if len(self._configs) >= CONFIG_CACHE_MAX_ENTRIES:
                    # Unknown ids are cached too, so a flood of them is bounded: drop the oldest.
                    del self._configs[next(iter(self._configs))]
                self._configs[key] = cached
        return cached[1]

    async def _read(self, integration_id: str) -> Prepared | None:
        async with self.pool.acquire() as connection:
            target = await WebhookRepository(connection).target(uuid.UUID(integration_id))
        return self.prepare(target) if target is not None else None

    def forget(self, integration_id: uuid.UUID) -> None:
        """The integration changed through this process: read it again on its next delivery."""
        self._configs.pop(str(integration_id), None)

    async def aclose(self) -> None:
        await self.failures.aclose()
        await self.event_writer.aclose()
        await self.pool.close()

    async def handle(self, scope: Scope, receive: Receive, integration_id: str) -> Reply:
        """Answer one delivery to `integration_id` (the path segment as sent); raises only
        what the application's error mapper answers (the database away, the client gone)."""
        attempt = _Attempt(self, scope, receive)
        return await attempt.run(await self.config(integration_id))

    def client_ip(self, scope: Scope, headers: list[tuple[str, str]]) -> ClientIp:
        peer = scope.get("client")
        host = peer[0] if peer else None
        if host is None:
            return _NO_IP
        if not self.trusted_proxies:
            return peer_address(host)
        forwarded = ",".join(value for name, value in headers if name == "x-forwarded-for")
        return _client_ip(resolve_client_ip(host, forwarded or None, self.trusted_proxies))


class _Attempt:
    """One webhook request on its way through the checks."""

    def __init__(self, gate: WebhookGate, scope: Scope, receive: Receive) -> None:
        self.gate = gate
        self.receive = receive
        self.started = time.perf_counter()
        # The headers the checks read, repeats included, decoded like Litestar's (names are
        # lower-case in ASGI).
        self.raw_headers: list[tuple[str, str]] = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name in _READ_HEADERS
        ]
        self.client_ip, self.client_ip_text = gate.client_ip(scope, self.raw_headers)
        self.headers: ResponseHeaders = []

    def header(self, name: str) -> str | None:
        for key, value in self.raw_headers:
            if key == name:
                return value
        return None

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)

    async def run(self, config: Prepared | None) -> Reply:
        gate = self.gate
        if config is None:
            return self.reject(None, HTTP_404_NOT_FOUND, "unknown_integration")
        target = config.target
        if target.deleted:
            return self.reject(target, HTTP_410_GONE, "integration_deleted")
        if target.status != "active":
            return self.reject(target, HTTP_403_FORBIDDEN, "integration_disabled")
        if config.allowlists and not ip_allowed(self.client_ip, config.allowlists):
            return self.reject(target, HTTP_403_FORBIDDEN, "ip_not_allowed")

        limit = gate.settings.webhook_max_body_bytes
        declared = self.header("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return self.reject(target, HTTP_413_REQUEST_ENTITY_TOO_LARGE, "body_too_large")
        media_type = (self.header("content-type") or "").split(";", 1)[0].strip().lower()
        if media_type not in _JSON_TYPES and not media_type.endswith("+json"):
            return self.reject(target, HTTP_415_UNSUPPORTED_MEDIA_TYPE, "not_json")
        body = await self.read_body(limit)
        if body is None:
            return self.reject(target, HTTP_413_REQUEST_ENTITY_TOO_LARGE, "body_too_large")

        secrets = config.usable_secrets()
        try:
            verified = verify_signature(
                self.raw_headers,
                body,
                secrets,
                now=time.time(),
                tolerance=gate.settings.webhook_timestamp_tolerance_seconds,
            )
        except SignatureError as exc:
            refusal = gate.failures.refuse(f"fail:{self.client_ip_text}")
            gate.metrics.count_rate_limit("failed_attempts", refusal is None)
            if refusal is not None:
                self.retry_after(refusal)
                return self.reject(target, HTTP_429_TOO_MANY_REQUESTS, "too_many_failures")
            return self.reject(target, HTTP_401_UNAUTHORIZED, exc.reason)

        decision = await gate.limiter.hit(f"int:{target.id}", config.limits)
        gate.metrics.count_rate_limit("integration", decision.allowed)
        self.headers.append((b"ratelimit-policy", config.policy_bytes))
        self.headers.append((b"ratelimit", ratelimit_header(decision).encode()))
        if not decision.allowed:
            self.retry_after(decision)
            return self.reject(target, HTTP_429_TOO_MANY_REQUESTS, "rate_limited")

        try:
            data = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return self.reject(target, HTTP_400_BAD_REQUEST, "invalid_json")
        # PostgreSQL text cannot hold U+0000; the cheap byte test spares every other body the walk.
        if b"\\u0000" in body and holds_nul(data):
            return self.reject(
                target, HTTP_422_UNPROCESSABLE_ENTITY, "invalid_payload", "Text contains U+0000"
            )
        try:
            parsed = (
                parse_evolution(data, target.settings)
                if target.type == "evolution"
                else parse_generic(data)
            )
        except msgspec.ValidationError as exc:
            return self.reject(target, HTTP_422_UNPROCESSABLE_ENTITY, "invalid_payload", str(exc))

        delivery_key = f"msg:{parsed.provider_id}" if parsed.provider_id else verified.delivery_key
        event = EventRecord(
            outcome="accepted",
            status_code=HTTP_202_ACCEPTED,
            reason="accepted",
            client_ip=self.client_ip_text,
            latency_ms=self.elapsed_ms(),
            delivery_key=delivery_key,
            event_type=parsed.event_type,
        )
        async with gate.pool.acquire() as connection:
            accepted = await WebhookRepository(connection).accept(target, event, parsed.message)
        if accepted.event_id is None:
            self.record(target, HTTP_200_OK, "duplicate", "duplicate", delivery_key)
            return Reply(HTTP_200_OK, _DUPLICATE, self.headers)
        gate.metrics.count_webhook("accepted", "accepted")
        if parsed.message is not None and not parsed.message.from_business:
            gate.on_inbound()
            if accepted.message_id is not None:
                gate.events.publish_soon(
                    [
                        (
                            target.org_id,
                            {
                                "type": "message.received",
                                "conversation_id": accepted.conversation_id,
                                "message_id": accepted.message_id,
                                "agent_id": accepted.agent_id,
                            },
                            accepted.agent_id,
                        )
                    ]
                )
        elif accepted.taken_over:
            gate.events.publish_soon(queue_orgs=[target.org_id])
        return Reply(
            HTTP_202_ACCEPTED,
            b'{"status":"accepted","event_id":"%s"}' % str(accepted.event_id).encode(),
            self.headers,
        )

    async def read_body(self, limit: int) -> bytes | None:
        """The raw body, or None once it grows past `limit` (a lying Content-Length included)."""
        chunks = bytearray()
        while True:
            message: HTTPReceiveMessage = await self.receive()  # type: ignore[assignment]
            if message["type"] == "http.disconnect":
                raise ClientGone
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if not more and not chunks:
                # The whole body in one message (the usual case): no copy.
                return body if len(body) <= limit else None
            chunks += body
            if len(chunks) > limit:
                return None
            if not more:
                return bytes(chunks)

    def retry_after(self, decision: Decision) -> None:
        self.headers.append((b"retry-after", b"%d" % (decision.retry_after or 1)))

    def record(
        self,
        target: WebhookTarget | None,
        status_code: int,
        outcome: str,
        reason: str,
        delivery_key: str | None = None,
    ) -> None:
        """Hand an attempt that was not accepted to the batch writer."""
        self.gate.event_writer.add(
            EventRecord(
                outcome=outcome,
                status_code=status_code,
                reason=reason,
                client_ip=self.client_ip_text,
                latency_ms=self.elapsed_ms(),
                delivery_key=delivery_key,
                org_id=target.org_id if target else None,
                integration_id=target.id if target else None,
            )
        )
        self.gate.metrics.count_webhook(outcome, reason)

    def reject(
        self,
        target: WebhookTarget | None,
        status_code: int,
        reason: str,
        detail: str | None = None,
    ) -> Reply:
        # The attempt is in integration_events and in the metrics, and no line is logged: a
        # line per rejection would let a flood of bad requests flood the log as well.
        self.record(target, status_code, "rejected", reason)
        body = (
            msgspec.json.encode(
                {"status_code": status_code, "detail": detail, "extra": {"reason": reason}}
            )
            if detail
            else rejection_body(status_code, reason)
        )
        return Reply(status_code, body, self.headers)


_DUPLICATE = b'{"status":"duplicate"}'


class WebhookDoor:
    """ASGI: answers `POST /api/v1/integrations/webhook/{id}` with the gate (in `state`, set at
    start-up) before the application routes; every other request goes on to `app`."""

    __slots__ = ("app", "state")

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and cast("HTTPScope", scope)["method"] == "POST":
            path: str = scope["path"]
            if path.startswith(WEBHOOK_PREFIX):
                integration_id = path[len(WEBHOOK_PREFIX) :]
                gate: WebhookGate | None = self.state.get("webhook_gate")
                if integration_id and "/" not in integration_id and gate is not None:
                    scope["path_template"] = WEBHOOK_ROUTE
                    try:
                        reply = await gate.handle(scope, receive, integration_id)
                    except Exception as exc:
                        await answer_exception(scope, receive, send, exc)
                        return
                    await reply.send(send)
                    return
        await self.app(scope, receive, send)
