"""A local Evolution API (WhatsApp gateway) stand-in, plus inbound webhook builders.

Shapes follow Evolution API v2: the ``apikey`` header, 201 on sends, and the
NestJS-style ``{"status", "error", "response": {"message"}}`` error envelope.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal, NamedTuple

from tests.stubs.server import ControlledStub, Request, Response

_SEND_TEXT = re.compile(r"^/message/sendText/(?P<instance>[^/]+)/?$")
_CONNECTION_STATE = re.compile(r"^/instance/connectionState/(?P<instance>[^/]+)/?$")

# What a reverse proxy in front of a dead Evolution container answers with.
_PROXY_DOWN_PAGE = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n"
    "<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


class SentMessage(NamedTuple):
    instance: str
    number: str  # exactly as the client sent it
    text: str
    headers: dict[str, str]


def evolution_error(status: int, message: Any) -> Response:
    """Evolution's error envelope; ``message`` is a string or a list, as the server varies."""
    return Response.json(
        status,
        {"status": status, "error": HTTPStatus(status).phrase, "response": {"message": message}},
    )


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(
        type(value), "object"
    )


def _validate_send_text(body: Any) -> tuple[dict[str, Any], list[Any]]:
    """Pull number/text/options out of a v2 or v1 body, collecting schema errors."""
    if not isinstance(body, dict):
        return {}, ["instance is not of a type(s) object"]
    errors: list[Any] = []
    # v1 nests text and options; v2 flattened them. Accept both.
    legacy = isinstance(body.get("textMessage"), dict)
    text = body["textMessage"].get("text") if legacy else body.get("text")
    nested = body.get("options")
    options: dict[str, Any] = nested if legacy and isinstance(nested, dict) else body
    fields = {
        "number": body.get("number"),
        "text": text,
        "delay": options.get("delay"),
        "linkPreview": options.get("linkPreview"),
    }
    prefix = "instance.textMessage" if legacy else "instance"
    if fields["number"] is None:
        errors.append('instance requires property "number"')
    elif not isinstance(fields["number"], str):
        errors.append("instance.number is not of a type(s) string")
    if text is None:
        errors.append(f'{prefix} requires property "text"')
    elif not isinstance(text, str):
        errors.append(f"{prefix}.text is not of a type(s) string")
    elif not text.strip():
        errors.append(f"{prefix}.text does not meet minimum length of 1")
    for name, expected in (("delay", "integer"), ("linkPreview", "boolean")):
        value = fields[name]
        if value is not None and _type_name(value) != expected:
            errors.append(f"instance.{name} is not of a type(s) {expected}")
    return fields, errors


def to_jid(number: str) -> str:
    """``+55 (11) 91234-5678`` -> ``5511912345678@s.whatsapp.net``; JIDs pass through."""
    if "@" in number:
        return number
    return re.sub(r"[\s+()\-.]", "", number) + "@s.whatsapp.net"


class EvolutionStub(ControlledStub):
    """Evolution API v2 stand-in.

    ``instances=None`` accepts any instance name; a list makes others 404.
    Modes 500/503/slow and ``fail_next`` affect sendText only; "down" makes every
    route answer a proxy's 503 page, as when the container is gone.
    """

    MODES = ("ok", "500", "503", "slow", "down")
    FAIL_STATUSES = frozenset({400, 401, 404, 500, 502, 503, 504})

    def __init__(
        self,
        api_key: str = "test-evolution-key",
        *,
        instances: Iterable[str] | None = None,
        version: str = "2.2.3",
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.instances: frozenset[str] | None = (
            frozenset(instances) if instances is not None else None
        )
        self.version = version
        self.connection_state: Literal["open", "connecting", "close"] = "open"
        # Digits-only numbers (or raw strings) the gateway reports as not on WhatsApp.
        self.not_on_whatsapp: set[str] = set()
        self._sent: list[SentMessage] = []

    def _reset_locked(self) -> None:
        self._sent.clear()
        self.connection_state = "open"
        self.not_on_whatsapp.clear()

    @property
    def sent(self) -> list[SentMessage]:
        """Snapshot of successfully accepted sends, in order."""
        with self._cond:
            return list(self._sent)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[SentMessage]:
        """Block the calling thread until ``count`` sends are recorded.

        Do not call this from the event loop that runs the code under test: it
        would block that code from ever sending. Use ``wait_for_async`` there.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._sent) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} sends within {timeout}s, got {len(self._sent)}"
                )
            return list(self._sent)

    # A timeout argument (not asyncio.timeout) mirrors wait_for and lets the
    # error say how many sends did arrive.
    async def wait_for_async(self, count: int, timeout: float = 5.0) -> list[SentMessage]:  # noqa: ASYNC109
        """Like ``wait_for`` but yields to the event loop while waiting."""
        deadline = time.monotonic() + timeout
        while True:
            sent = self.sent
            if len(sent) >= count:
                return sent
            if time.monotonic() >= deadline:
                raise TimeoutError(f"expected {count} sends within {timeout}s, got {len(sent)}")
            await asyncio.sleep(0.01)

    async def _handle(self, request: Request) -> Response:
        send = _SEND_TEXT.match(request.path)
        state = _CONNECTION_STATE.match(request.path)
        kind = None
        if request.method == "POST" and send:
            kind = "send_text"
        elif request.method == "GET" and state:
            kind = "connection_state"
        elif request.method == "GET" and request.path == "/":
            kind = "info"
        body = self._record(request, kind)

        if self.mode == "down":
            return Response.text(503, _PROXY_DOWN_PAGE, "text/html")
        if kind == "info":
            return Response.json(
                200,
                {
                    "status": 200,
                    "message": "Welcome to the Evolution API, it is working!",
                    "version": self.version,
                    "clientName": "evolution",
                    "manager": f"http://{request.headers.get('host', '')}/manager",
                    "documentation": "https://doc.evolution-api.com",
                },
            )
        if request.headers.get("apikey") != self.api_key:
            return evolution_error(401, "Unauthorized")
        if kind is None:
            return evolution_error(404, [f"Cannot {request.method} {request.path}"])
        match = send or state
        assert match is not None  # kind is only set when one of them matched
        instance = match["instance"]
        if self.instances is not None and instance not in self.instances:
            return evolution_error(404, [f'The "{instance}" instance does not exist'])
        if kind == "connection_state":
            return Response.json(
                200, {"instance": {"instanceName": instance, "state": self.connection_state}}
            )
        return await self._send_text(request, instance, body)

    async def _send_text(self, request: Request, instance: str, body: Any) -> Response:
        status = await self._injected_failure()
        if status is not None:
            return evolution_error(status, HTTPStatus(status).phrase)
        fields, errors = _validate_send_text(body)
        if errors:
            return evolution_error(400, errors)
        number: str = fields["number"]
        jid = to_jid(number)
        user = jid.split("@", 1)[0]
        if not jid.endswith("@g.us") and (
            not user.isdigit() or user in self.not_on_whatsapp or number in self.not_on_whatsapp
        ):
            return evolution_error(400, [{"jid": jid, "exists": False, "number": number}])

        text: str = fields["text"]
        with self._cond:
            self._sent.append(SentMessage(instance, number, text, dict(request.headers)))
            self._cond.notify_all()
        return Response.json(
            201,
            {
                "key": {
                    "remoteJid": jid,
                    "fromMe": True,
                    "id": "BAE5" + secrets.token_hex(6).upper(),
                },
                "message": {"conversation": text},
                "messageType": "conversation",
                "messageTimestamp": int(time.time()),
                "instanceId": str(uuid.uuid5(uuid.NAMESPACE_URL, instance)),
                "status": "PENDING",
            },
        )


def messages_upsert_payload(
    instance: str,
    remote_jid: str,
    text: str,
    message_id: str | None = None,
    from_me: bool = False,
    push_name: str = "Ana",
    *,
    message_type: Literal["conversation", "extendedTextMessage"] = "conversation",
    timestamp: int | None = None,
    destination: str = "http://127.0.0.1:8000/webhooks/evolution",
    sender: str = "5511900000000@s.whatsapp.net",
    server_url: str = "http://127.0.0.1:8080",
    apikey: str = "test-evolution-key",
) -> dict[str, Any]:
    """An Evolution v2 ``messages.upsert`` webhook body, as POSTed to the bot.

    ``remote_jid`` may be a bare number. ``sender`` is the instance's own JID
    (Evolution names the receiving phone there, not the person writing).
    """
    ts = int(time.time()) if timestamp is None else timestamp
    message: dict[str, Any] = (
        {"conversation": text}
        if message_type == "conversation"
        else {"extendedTextMessage": {"text": text}}
    )
    # Real payloads carry this sibling key; its presence keeps parsers from
    # assuming the message dict has a single entry.
    message["messageContextInfo"] = {"deviceListMetadataVersion": 2}
    return {
        "event": "messages.upsert",
        "instance": instance,
        "data": {
            "key": {
                "remoteJid": to_jid(remote_jid),
                "fromMe": from_me,
                "id": message_id or "3EB0" + secrets.token_hex(8).upper(),
            },
            "pushName": push_name,
            "status": "SERVER_ACK" if from_me else "DELIVERY_ACK",
            "message": message,
            "messageType": message_type,
            "messageTimestamp": ts,
            "instanceId": str(uuid.uuid5(uuid.NAMESPACE_URL, instance)),
            "source": "android",
        },
        "destination": destination,
        # JavaScript's toISOString() form, which is what Evolution emits.
        "date_time": datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "sender": sender,
        "server_url": server_url,
        "apikey": apikey,
    }


def extended_text_upsert_payload(
    instance: str,
    remote_jid: str,
    text: str,
    message_id: str | None = None,
    from_me: bool = False,
    push_name: str = "Ana",
    **kwargs: Any,
) -> dict[str, Any]:
    """The ``extendedTextMessage.text`` variant (replies, links, WhatsApp Web sends)."""
    return messages_upsert_payload(
        instance,
        remote_jid,
        text,
        message_id,
        from_me,
        push_name,
        message_type="extendedTextMessage",
        **kwargs,
    )
