"""The HTTP call every JSON gateway makes: one explicit timeout, errors sorted for the breaker.

A 2xx answer is returned; a transient failure (timeout, connection error, 408/425/429, 5xx)
raises `TransientError` (with the `Retry-After` seconds when the server sent them); any other
4xx raises `ClientFault`, which neither trips a breaker nor is retried.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import httpx

from app.core.resilience import ClientFault, TransientError, is_transient_status

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)


def create_http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=DEFAULT_TIMEOUT,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        follow_redirects=False,
        headers={"User-Agent": "botlyne"},
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
) -> httpx.Response:
    return await _send(
        client.post(url, content=content, headers={"Content-Type": "application/json", **headers}),
        url,
    )


async def get(
    client: httpx.AsyncClient, url: str, *, headers: dict[str, str], deadline: float
) -> httpx.Response:
    """A GET with its own (usually shorter) timeout in seconds, sorted like `post_json`."""
    return await _send(client.get(url, headers=headers, timeout=deadline), url)


async def _send(request: Awaitable[httpx.Response], url: str) -> httpx.Response:
    try:
        response = await request
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise TransientError(f"{type(exc).__name__} calling {httpx.URL(url).host}") from None
    if response.is_success:
        return response
    if is_transient_status(response.status_code):
        raise TransientError(
            f"HTTP {response.status_code} from {httpx.URL(url).host}",
            retry_after=_retry_after(response),
        )
    raise ClientFault(
        f"HTTP {response.status_code} from {httpx.URL(url).host}", status=response.status_code
    )


def json_or_empty(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}
