"""HTTP for integrations (API key) and their public webhook (signature)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, MediaType, Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from app.core.db import DbSession
from app.core.openapi import error_responses
from app.domain.integrations.schemas import (
    IntegrationCreate,
    IntegrationCreated,
    IntegrationEventList,
    IntegrationEventOut,
    IntegrationList,
    IntegrationOut,
    IntegrationUpdate,
    RotateSecret,
    SecretOut,
    WebhookAccepted,
)
from app.domain.integrations.service import IntegrationService
from app.domain.orgs.auth import Caller

IntegrationId = FromPath[uuid.UUID]


class IntegrationController(Controller):
    path = "/integrations"
    tags = ["integrations"]

    @post("/", summary="Create an integration (admin); its signing secret is shown only here")
    async def create_integration(
        self, db_session: DbSession, principal: Caller, data: JSONBody[IntegrationCreate]
    ) -> IntegrationCreated:
        out, secret = await IntegrationService(db_session, principal).create(data)
        return IntegrationCreated(**msgspec.structs.asdict(out), secret=secret)

    @get("/", summary="List integrations")
    async def list_integrations(self, db_session: DbSession, principal: Caller) -> IntegrationList:
        items = await IntegrationService(db_session, principal).list()
        return IntegrationList(items=items, total=len(items))

    @get("/{integration_id:uuid}", summary="One integration")
    async def get_integration(
        self, db_session: DbSession, principal: Caller, integration_id: IntegrationId
    ) -> IntegrationOut:
        return await IntegrationService(db_session, principal).get(integration_id)

    @patch("/{integration_id:uuid}", summary="Change an integration (admin)")
    async def update_integration(
        self,
        db_session: DbSession,
        principal: Caller,
        state: State,
        integration_id: IntegrationId,
        data: JSONBody[IntegrationUpdate],
    ) -> IntegrationOut:
        updated = await IntegrationService(db_session, principal).update(integration_id, data)
        state.webhook_gate.forget(integration_id)
        return updated

    @delete(
        "/{integration_id:uuid}", summary="Delete an integration (admin); its webhook answers 410"
    )
    async def delete_integration(
        self, db_session: DbSession, principal: Caller, state: State, integration_id: IntegrationId
    ) -> None:
        await IntegrationService(db_session, principal).delete(integration_id)
        state.webhook_gate.forget(integration_id)

    @post(
        "/{integration_id:uuid}/rotate-secret",
        summary="Issue a new signing secret; older ones keep working for grace_seconds",
        status_code=200,
    )
    async def rotate_secret(
        self,
        db_session: DbSession,
        principal: Caller,
        state: State,
        integration_id: IntegrationId,
        data: JSONBody[RotateSecret | None] = None,
    ) -> SecretOut:
        request = data or RotateSecret()
        secret, grace_end = await IntegrationService(db_session, principal).rotate_secret(
            integration_id, request.grace_seconds, request.secret
        )
        state.webhook_gate.forget(integration_id)
        return SecretOut(secret=secret, previous_expires_at=grace_end)

    @get("/{integration_id:uuid}/events", summary="Webhook attempts, newest first")
    async def list_events(
        self,
        db_session: DbSession,
        principal: Caller,
        state: State,
        integration_id: IntegrationId,
        outcome: FromQuery[Literal["accepted", "duplicate", "rejected"] | None] = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        cursor: Annotated[
            int | None, Parameter(ge=1, description="next_cursor of the previous page")
        ] = None,
    ) -> IntegrationEventList:
        # This process's attempts still waiting for the batch writer are listed too.
        await state.webhook_gate.event_writer.flush()
        rows = await IntegrationService(db_session, principal).events(
            integration_id, outcome, limit, cursor
        )
        items = [
            IntegrationEventOut(
                id=row.id,
                received_at=row.received_at,
                outcome=row.outcome,
                status_code=row.status_code,
                reason=row.reason,
                client_ip=str(row.client_ip) if row.client_ip is not None else None,
                latency_ms=row.latency_ms,
                event_type=row.event_type,
                message_id=row.message_id,
            )
            for row in rows
        ]
        next_cursor = items[-1].id if len(items) == limit else None
        return IntegrationEventList(items=items, next_cursor=next_cursor)


class WebhookController(Controller):
    path = "/integrations/webhook"
    tags = ["webhook"]

    @post(
        "/{integration_id:str}",
        summary="Receive a signed webhook delivery",
        description=(
            "No API key: authenticated by `X-Timestamp` + `X-Signature` (hex HMAC-SHA256 over "
            "`<timestamp>.<raw body>`) or Standard Webhooks headers. See the outcome table in "
            "the documentation."
        ),
        request_max_body_size=None,
        responses={
            200: ResponseSpec(
                data_container=WebhookAccepted, description="The same delivery again, not redone"
            ),
            **error_responses(400, 401, 403, 404, 410, 413, 415, 422, 429),
        },
        status_code=202,
    )
    async def receive_webhook(
        self, request: Request[Any, Any, Any], state: State, integration_id: FromPath[str]
    ) -> Response[WebhookAccepted]:
        # `WebhookDoor` answers the canonical path before routing; this serves the rest.
        reply = await state.webhook_gate.handle(request.scope, request.receive, integration_id)
        return Response(
            reply.body,
            status_code=reply.status,
            media_type=MediaType.JSON,
            headers={name.decode(): value.decode() for name, value in reply.headers},
        )
