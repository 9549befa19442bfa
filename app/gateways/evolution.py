"""The only door to Evolution API (WhatsApp): sending text messages."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from app.config import Settings
from app.core.resilience import ClientFault, with_circuit_breaker
from app.gateways.http import get, json_or_empty, post_json

BREAKER = "evolution"


def number_for(remote_jid: str) -> str:
    """Evolution takes a phone number for person chats and the whole JID for groups."""
    user, _, server = remote_jid.partition("@")
    return remote_jid if server == "g.us" else user


class EvolutionGateway:
    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self.base_url = (settings.evolution_api_base_url or "").rstrip("/")
        self.global_key = settings.evolution_api_global_key
        self.client = client

    @property
    def configured(self) -> bool:
        return bool(self.base_url)

    async def probe(self, deadline: float) -> None:
        """GET / (Evolution's welcome document): proves the server answers and sends nothing.

        Outside the breaker on purpose: a health probe must neither trip it nor be refused by it.
        Raises `TransientError` or `ClientFault` as any call does.
        """
        await get(self.client, f"{self.base_url}/", headers={}, deadline=deadline)

    @with_circuit_breaker(BREAKER)
    async def send_text(
        self, instance: str, remote_jid: str, text: str, api_key: str | None = None
    ) -> str | None:
        """POST /message/sendText/{instance}; returns Evolution's message id when it gives one."""
        if not self.base_url:
            raise ClientFault("EVOLUTION_API_BASE_URL is not configured")
        key = api_key or self.global_key
        body = msgspec.json.encode({"number": number_for(remote_jid), "text": text})
        response = await post_json(
            self.client,
            f"{self.base_url}/message/sendText/{instance}",
            content=body,
            headers={"apikey": key} if key else {},
        )
        data: Any = json_or_empty(response)
        key_info = data.get("key") if isinstance(data, dict) else None
        message_id = key_info.get("id") if isinstance(key_info, dict) else None
        return message_id if isinstance(message_id, str) else None
