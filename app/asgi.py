"""The composition root. `create_app(settings)` builds the whole application and does no I/O until
the server starts it; importing this module has no side effects.

Run it with `botlyne serve`, or `uvicorn app.asgi:create_app --factory`.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncGenerator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
from litestar import Litestar, Router
from litestar.channels import ChannelsPlugin
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template import TemplateConfig
from loguru import logger

from app.config import Settings, load_settings
from app.core.db import create_engine, create_sessionmaker, provide_db_session
from app.core.errors import EXCEPTION_HANDLERS
from app.core.events import (
    PUBLISH_CONNECTIONS,
    EventBus,
    channels_backend,
    channels_publisher,
    create_events_redis,
    redis_publisher,
)
from app.core.logging import configure_logging
from app.core.middleware import RequestObserver
from app.core.migrations import database_url_for, upgrade
from app.core.openapi import StrictStructSchemaPlugin, document_api_errors
from app.core.redis import RedisLane, create_redis
from app.core.resilience import resilience_manager
from app.core.security.ratelimit import FallbackRateLimiter
from app.domain.agents.controllers import AgentController
from app.domain.agents.presence import Presence
from app.domain.console.controllers import TEMPLATES, console_router
from app.domain.console.reads import ReadMarks
from app.domain.conversations.answers import KnowledgeAnswerer
from app.domain.conversations.controllers import ConversationController
from app.domain.events.controllers import EventController, EventStreamController
from app.domain.health.controllers import HealthController, MetricsController
from app.domain.health.metrics import Metrics
from app.domain.health.monitor import monitoring
from app.domain.integrations.controllers import IntegrationController, WebhookController
from app.domain.integrations.webhook import WebhookDoor, WebhookGate
from app.domain.knowledge.controllers import KnowledgeBaseController, QueryController
from app.domain.maintenance.service import keep_maintaining
from app.domain.orgs.auth import provide_principal
from app.domain.orgs.controllers import ApiKeyController, OrganizationController
from app.domain.orgs.service import bootstrap
from app.gateways.gemini import GeminiGateway
from app.gateways.http import create_http_client
from app.workers.runtime import (
    build_runners,
    keep_applying_timeouts,
    keep_checking_presence,
    running,
)

API_PREFIX = "/api/v1"
# Young objects the cyclic garbage collector lets accumulate before a pass (CPython: 700).
GC_YOUNG_THRESHOLD = 20_000


@contextmanager
def collector_tuned_for_serving() -> Iterator[None]:
    """While the application serves: what start-up built (modules, routes, pools) is frozen out
    of the cyclic collector's passes, and passes come after 20,000 new objects instead of 700,
    with older generations visited less often. A request allocates a few hundred objects and
    nearly all of them are freed by reference counting, so the default made the collector run
    every few requests, and every full pass walk the whole application (4 % of the server's
    CPU per webhook delivery in a native profile). Everything is put back at shutdown."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


def api_router() -> Router:
    """Everything under /api/v1 that is authenticated by API key."""
    return Router(
        path=API_PREFIX,
        route_handlers=[
            OrganizationController,
            ApiKeyController,
            IntegrationController,
            ConversationController,
            AgentController,
            KnowledgeBaseController,
            QueryController,
            EventController,
        ],
        dependencies={"principal": Provide(provide_principal)},
        security=[{"BearerAuth": []}, {"ApiKeyAuth": []}],
    )


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Botlyne",
        version="1.0.0",
        description="Knowledge-base support bot with human agent hand-off.",
        path="/schema",
        render_plugins=[ScalarRenderPlugin()],
        components=Components(
            security_schemes={
                "BearerAuth": SecurityScheme(
                    type="http", scheme="bearer", description="An API key as a bearer token"
                ),
                "ApiKeyAuth": SecurityScheme(
                    type="apiKey", name="X-API-Key", security_scheme_in="header"
                ),
                "ObservabilityToken": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="OBSERVABILITY_TOKEN, when it is set",
                ),
            }
        ),
    )


def cors_config(settings: Settings) -> CORSConfig | None:
    """Browsers on `CORS_ALLOWED_ORIGINS` may call the API with an API key header; no cookies
    (the API takes none), so credentials stay off. Empty: no CORS headers at all."""
    if not settings.cors_allowed_origins:
        return None
    return CORSConfig(
        allow_origins=list(settings.cors_allowed_origins),
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
        expose_headers=["X-Request-ID", "Retry-After", "RateLimit", "RateLimit-Policy"],
        allow_credentials=False,
        max_age=600,
    )


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.enable_structured_logging)
    # Built now (no I/O until start-up): Redis pub/sub when configured, else in memory.
    events_redis = create_events_redis(settings)
    backend = channels_backend(events_redis)
    channels = ChannelsPlugin(
        backend,
        arbitrary_channels_allowed=True,
        # A client that stops reading loses its oldest events, not the server its memory.
        subscriber_max_backlog=1000,
        subscriber_backlog_strategy="dropleft",
    )
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        url = await anyio.to_thread.run_sync(database_url_for, settings)
        if settings.auto_migrate:
            await anyio.to_thread.run_sync(upgrade, url)
        engine = create_engine(settings, url)
        app.state.engine = engine
        app.state.sessionmaker = sessionmaker = create_sessionmaker(engine)
        app.state.settings = settings
        app.state.redis = redis = create_redis(settings)
        resilience_manager.configure(settings, redis)
        app.state.http = http = create_http_client()
        app.state.gemini = gemini = GeminiGateway(settings)
        events_lane = (
            RedisLane(events_redis, PUBLISH_CONNECTIONS) if events_redis is not None else None
        )
        publisher = (
            redis_publisher(events_lane) if events_lane is not None else channels_publisher(backend)
        )
        app.state.events = events = EventBus(publisher, engine)
        events.bind(sessionmaker)
        app.state.presence = presence = Presence(redis, settings.presence_grace_seconds)
        app.state.read_marks = ReadMarks(redis)
        answerer = KnowledgeAnswerer(gemini)
        runners = build_runners(settings, engine, sessionmaker, http, answerer, events)
        limiter = FallbackRateLimiter(redis)
        metrics.bind(engine, limiter)
        app.state.webhook_gate = await WebhookGate.open(
            settings,
            engine,
            limiter,
            metrics,
            on_inbound=runners["bot_reply"].wakeup.set,
            events=events,
        )
        async with sessionmaker.begin() as session:
            key = await bootstrap(session, settings.bootstrap_admin_key)
        if key is not None:
            # The one time this key is shown; stderr, never the log stream.
            sys.stderr.write(
                f"Created organization 'default'. Its admin API key (shown once): {key}\n"
            )
        logger.info("botlyne started")
        try:
            with collector_tuned_for_serving():
                async with monitoring(settings, engine, redis, http, gemini) as monitor:
                    app.state.health_monitor = monitor
                    if settings.run_workers:
                        async with running(
                            runners,
                            keep_applying_timeouts(settings, sessionmaker),
                            keep_checking_presence(presence, sessionmaker),
                            monitor.keep_sampling(),
                            keep_maintaining(settings, engine, metrics.record_maintenance),
                        ):
                            yield
                    else:
                        yield
        finally:
            # Attempts still waiting for the batch writer are stored before the pool closes.
            await app.state.webhook_gate.aclose()
            await limiter.aclose()
            await events.aclose()
            await gemini.aclose()
            await http.aclose()
            if redis is not None:
                await redis.aclose()
            if events_lane is not None:
                await events_lane.aclose()
            if events_redis is not None:
                await events_redis.aclose()
            await engine.dispose()

    app = Litestar(
        route_handlers=[
            HealthController,
            MetricsController,
            api_router(),
            # Signed, not keyed: its own router so it carries no API-key security scheme.
            Router(path=API_PREFIX, route_handlers=[WebhookController]),
            # A stream token or an API key header: it authenticates itself.
            Router(
                path=API_PREFIX,
                route_handlers=[EventStreamController],
                security=[{"BearerAuth": []}, {"ApiKeyAuth": []}],
            ),
            console_router(),
        ],
        dependencies={"db_session": Provide(provide_db_session)},
        plugins=[channels, StrictStructSchemaPlugin()],
        template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine),
        cors_config=cors_config(settings),
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        openapi_config=openapi_config(),
        logging_config=None,
        debug=False,
    )
    document_api_errors(app, API_PREFIX)
    app.state.metrics = metrics
    # Around the whole application rather than in `middleware=`: Litestar runs those per route,
    # after routing, so a 404 or 405 would carry no request id and go uncounted.
    # The public webhook is answered in front of the router (see `WebhookDoor`), inside the
    # observer so its requests carry ids and security headers and are counted like the rest.
    app.asgi_handler = RequestObserver(WebhookDoor(app.asgi_handler, app.state), metrics)
    return app
