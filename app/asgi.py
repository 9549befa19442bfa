"""The composition root. `create_app(settings)` builds the whole application and does no I/O until
the server starts it; importing this module has no side effects.

Run it with `botlyne serve`, or `uvicorn app.asgi:create_app --factory`.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import anyio
from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from loguru import logger

from app.config import Settings, load_settings
from app.core.db import create_engine, create_sessionmaker, provide_db_session
from app.core.errors import EXCEPTION_HANDLERS
from app.core.logging import configure_logging
from app.core.middleware import request_context_middleware
from app.core.migrations import database_url_for, upgrade
from app.core.openapi import document_api_errors
from app.core.redis import create_redis
from app.core.resilience import resilience_manager
from app.core.security.ratelimit import FallbackRateLimiter
from app.domain.agents.controllers import AgentController
from app.domain.conversations.answers import KnowledgeAnswerer
from app.domain.conversations.controllers import ConversationController
from app.domain.health.controllers import HealthController
from app.domain.integrations.controllers import IntegrationController, WebhookController
from app.domain.integrations.webhook import WebhookGate
from app.domain.knowledge.controllers import KnowledgeBaseController, QueryController
from app.domain.orgs.auth import provide_principal
from app.domain.orgs.controllers import ApiKeyController, OrganizationController
from app.domain.orgs.service import bootstrap
from app.gateways.gemini import GeminiGateway
from app.gateways.http import create_http_client
from app.workers.runtime import build_runners, keep_applying_timeouts, running

API_PREFIX = "/api/v1"


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
            }
        ),
    )


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.enable_structured_logging)

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
        runners = build_runners(settings, engine, sessionmaker, http, KnowledgeAnswerer(gemini))
        app.state.webhook_gate = WebhookGate(
            settings, engine, FallbackRateLimiter(redis), on_inbound=runners["bot_reply"].wakeup.set
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
            if settings.run_workers:
                async with running(runners, keep_applying_timeouts(settings, sessionmaker)):
                    yield
            else:
                yield
        finally:
            await gemini.aclose()
            await http.aclose()
            if redis is not None:
                await redis.aclose()
            await engine.dispose()

    app = Litestar(
        route_handlers=[
            HealthController,
            api_router(),
            # Signed, not keyed: its own router so it carries no API-key security scheme.
            Router(path=API_PREFIX, route_handlers=[WebhookController]),
        ],
        dependencies={"db_session": Provide(provide_db_session)},
        middleware=[request_context_middleware],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        openapi_config=openapi_config(),
        logging_config=None,
        debug=False,
    )
    document_api_errors(app, API_PREFIX)
    return app
