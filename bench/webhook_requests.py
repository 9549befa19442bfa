"""Signed webhook deliveries for `bench.load --requests`, built in the load generator's process.

`accepted(url, arg)` and `bad_signature(url, arg)` are `bench.load` request sources: they return
`for_connection(index) -> next_request() -> bytes`. `arg` is JSON: `{"secret": "...",
"token": "..."}`; the token (a short string naming the run) gets a random suffix in every process
that loads this module, so deliveries of two load runs never collide.

`accepted`: each connection is one end user (`sender.id` = `bench-<token>-<index>`) writing
messages one after another, each with its own `message_id`, so every request is a distinct
delivery; the body is signed on the fly (scheme A: `X-Timestamp` = now, `X-Signature` =
HMAC-SHA256 of `<ts>.<body>`), which keeps timestamps fresh however long a run lasts and costs
the client about as much as writing the bytes (see `signing_cost_us`).

`bad_signature`: the same bodies with a well-formed but wrong signature and a fresh timestamp, so
the server has to compute the MAC before refusing (`invalid_signature`), as with a forger.

Imports stay minimal: this module is loaded by the load generator, which shares the machine
with the server under test.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections.abc import Callable
from urllib.parse import urlsplit

RequestSource = Callable[[int], Callable[[], bytes]]
BAD_SIGNATURE = b"sha256=" + b"0" * 64


def _config(url: str, arg: str | None) -> tuple[bytes, bytes, str]:
    settings = json.loads(arg or "{}")
    secret = str(settings["secret"]).encode()
    # A fresh suffix per load process: runs sharing one token still never repeat an id.
    token = f"{settings.get('token') or 'run'}-{secrets.token_hex(3)}"
    parts = urlsplit(url)
    port = parts.port or 80
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{port}\r\n"
        "Content-Type: application/json\r\n"
    ).encode("ascii")
    return secret, head, token


def _body(sender: bytes, number: int) -> bytes:
    return b'{"message":{"body":"Where is my order? (%d)"},"sender":{"id":"%s"},' % (
        number,
        sender,
    ) + b'"message_id":"%s-%d"}' % (sender, number)


def accepted(url: str, arg: str | None) -> RequestSource:
    secret, head, token = _config(url, arg)
    keyed = hmac.new(secret, digestmod=hashlib.sha256)

    def for_connection(index: int) -> Callable[[], bytes]:
        sender = f"bench-{token}-{index}".encode()
        numbers = itertools.count()

        def next_request() -> bytes:
            body = _body(sender, next(numbers))
            timestamp = b"%d" % time.time()
            mac = keyed.copy()
            mac.update(timestamp + b"." + body)
            return (
                head
                + b"Content-Length: %d\r\nX-Timestamp: %s\r\nX-Signature: sha256=%s\r\n\r\n"
                % (len(body), timestamp, mac.hexdigest().encode("ascii"))
                + body
            )

        return next_request

    return for_connection


def bad_signature(url: str, arg: str | None) -> RequestSource:
    _, head, token = _config(url, arg)

    def for_connection(index: int) -> Callable[[], bytes]:
        sender = f"bench-{token}-{index}".encode()
        numbers = itertools.count()

        def next_request() -> bytes:
            body = _body(sender, next(numbers))
            return (
                head
                + b"Content-Length: %d\r\nX-Timestamp: %d\r\nX-Signature: %s\r\n\r\n"
                % (len(body), time.time(), BAD_SIGNATURE)
                + body
            )

        return next_request

    return for_connection


def signing_cost_us(samples: int = 20_000) -> float:
    """Microseconds the load generator spends building one signed delivery."""
    next_request = accepted("http://127.0.0.1:1/x", json.dumps({"secret": "s" * 32}))(0)
    started = time.perf_counter()
    for _ in range(samples):
        next_request()
    return round((time.perf_counter() - started) / samples * 1e6, 2)
