"""Request and response bodies of integrations, their events, and the webhook payloads."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from app.core.security.ip import parse_networks

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
IntegrationType = Literal["generic", "evolution"]
Quota = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Secret = Annotated[str, msgspec.Meta(min_length=16, max_length=256)]
AllowedIps = Annotated[list[str], msgspec.Meta(max_length=256)]
GraceSeconds = Annotated[int, msgspec.Meta(ge=0, le=30 * 86400)]
CallbackUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/]+\S*$", max_length=2048)]


def _check_allowed_ips(values: list[str] | None) -> None:
    if values is not None:
        parse_networks(values)  # ValueError names the bad entry; msgspec turns it into a 422


class ChannelSettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`callback_url` for generic integrations; `instance` and `api_key` for Evolution."""

    callback_url: CallbackUrl | None = None
    instance: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    api_key: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None


class IntegrationCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    type: IntegrationType
    allowed_ips: AllowedIps | None = None
    rate_limit_per_minute: Quota | None = None
    rate_limit_per_hour: Quota | None = None
    knowledge_base_id: uuid.UUID | None = None
    config: ChannelSettings | None = None
    secret: Secret | None = None

    def __post_init__(self) -> None:
        _check_allowed_ips(self.allowed_ips)


class IntegrationUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    status: Literal["active", "disabled"] | None = None
    allowed_ips: AllowedIps | None = None
    rate_limit_per_minute: Quota | None = None
    rate_limit_per_hour: Quota | None = None
    knowledge_base_id: uuid.UUID | None = None
    config: ChannelSettings | None = None

    def __post_init__(self) -> None:
        _check_allowed_ips(self.allowed_ips)


class RotateSecret(msgspec.Struct, forbid_unknown_fields=True):
    grace_seconds: GraceSeconds = 86400
    secret: Secret | None = None


class IntegrationOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    type: IntegrationType
    status: str
    allowed_ips: list[str]
    rate_limit_per_minute: int | None
    rate_limit_per_hour: int | None
    knowledge_base_id: uuid.UUID | None
    config: dict[str, Any]
    webhook_path: str
    active_secrets: int
    created_at: datetime
    updated_at: datetime


class IntegrationCreated(IntegrationOut):
    """Carries the signing secret: the only time it is shown."""

    secret: str


class IntegrationList(msgspec.Struct):
    items: list[IntegrationOut]
    total: int


class SecretOut(msgspec.Struct):
    secret: str
    previous_expires_at: datetime | None


class IntegrationEventOut(msgspec.Struct):
    id: int
    received_at: datetime
    outcome: str
    status_code: int
    reason: str
    client_ip: str | None
    latency_ms: float | None
    event_type: str | None
    message_id: uuid.UUID | None


class IntegrationEventList(msgspec.Struct):
    items: list[IntegrationEventOut]
    next_cursor: int | None


class WebhookAccepted(msgspec.Struct):
    status: Literal["accepted", "duplicate"]
    event_id: str | None = None


# Webhook payloads -------------------------------------------------------------------------

Text = Annotated[str, msgspec.Meta(max_length=65536)]
ExternalId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class GenericBody(msgspec.Struct):
    body: Text


class GenericSender(msgspec.Struct):
    id: ExternalId
    name: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class GenericPayload(msgspec.Struct):
    message: GenericBody
    sender: GenericSender | None = None
    conversation_id: ExternalId | None = None
    message_id: ExternalId | None = None
    timestamp: int | None = None


class EvolutionKey(msgspec.Struct, rename="camel"):
    remote_jid: ExternalId
    from_me: bool = False
    id: ExternalId | None = None


class EvolutionExtendedText(msgspec.Struct):
    text: Text


class EvolutionMessage(msgspec.Struct, rename="camel"):
    conversation: Text | None = None
    extended_text_message: EvolutionExtendedText | None = None


class EvolutionData(msgspec.Struct, rename="camel"):
    key: EvolutionKey
    push_name: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    message: EvolutionMessage | None = None


EventName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Instance = Annotated[str, msgspec.Meta(max_length=200)]


class EvolutionEvent(msgspec.Struct):
    event: EventName
    instance: Instance | None = None


class EvolutionUpsert(msgspec.Struct):
    event: EventName
    data: EvolutionData
    instance: Instance | None = None
