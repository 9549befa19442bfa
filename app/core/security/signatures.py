"""Signature verification for inbound webhook deliveries.

Two schemes are accepted so that both hand-rolled senders and off-the-shelf
Standard Webhooks clients work without adapters:

Scheme A ("hmac")
    ``X-Timestamp``: Unix time as ASCII digits only. Up to 10 digits are seconds,
    exactly 13 digits are milliseconds; every other shape (signs, spaces, decimals,
    non-ASCII digits, 11/12/14+ digits) is malformed, because each extra accepted
    spelling is one more way for sender and receiver to disagree on what was signed.
    ``X-Signature``: hex HMAC-SHA256, optional ``sha256=`` prefix (prefix and hex are
    case-insensitive). The MAC is keyed with the secret's UTF-8 bytes and covers
    ``<X-Timestamp exactly as sent> + b"." + <raw body>``.

Scheme B ("standard", https://www.standardwebhooks.com/)
    ``webhook-id``, ``webhook-timestamp`` (seconds) and ``webhook-signature`` (a
    space-separated list of ``<version>,<base64>``; only ``v1`` entries are checked,
    other versions are skipped). Content is ``f"{id}.{timestamp}.".encode() + body``.
    The key is derived the way the official libraries derive it: for ``whsec_``
    secrets the remainder is base64-decoded (as leniently as the libraries do, so a
    secret they accept works here too). For a secret without the prefix the libraries
    base64-decode the whole string; we accept that key when the string is valid base64
    and additionally the raw UTF-8 bytes, so a plain secret typed into both sides also
    works.

Scheme selection: if ``X-Signature`` is present scheme A is used, otherwise scheme B
if ``webhook-signature`` is present, otherwise ``missing_signature``. Preferring A
keeps the choice a function of a single header, so a sender cannot mix fragments of
both schemes, and a failing A signature is never "rescued" by B headers.

Rules shared by both schemes:

* The raw body bytes are what is signed; nothing is ever re-serialised.
* ``|now - timestamp| <= tolerance`` in both directions (a clock far ahead is as
  suspicious as a replay of an old delivery).
* MACs are compared with ``hmac.compare_digest`` over decoded digest bytes (not hex
  or base64 text, which have several spellings of one digest), against every
  candidate secret without stopping at the first match, so the time taken does not
  reveal which rotation slot matched.
* Header names are matched case-insensitively. A header that appears more than once
  (e.g. ``X-Signature`` and ``x-signature`` in the same mapping, or a multi-dict with
  two values) is treated as malformed rather than picking one arbitrarily.
* Oversized header values are rejected before any parsing.

Failures raise :class:`SignatureError` with a stable ``reason``; checks run in this
order, so the first applicable reason wins:

``no_secret``            no non-empty secret was supplied (configuration problem)
``missing_signature``    neither ``X-Signature`` nor ``webhook-signature`` present
``malformed_timestamp``  timestamp header absent, oversized or not in the formats above
``malformed_signature``  signature header (or ``webhook-id``) absent, oversized,
                         duplicated or not parseable
``stale_timestamp``      timestamp outside the tolerance window, either direction
``invalid_signature``    well-formed, fresh, but no secret produced a matching MAC
                         (including a scheme B header without any ``v1`` entry)

Known residual of scheme B (inherent to the spec, not to this code): the id is not
length-delimited in the signed content, so an id containing ``.`` could in theory be
re-split against a body starting with ``<digits>.``. JSON bodies never start that way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from secrets import token_bytes
from typing import Final, Literal, TypeAlias

__all__ = [
    "DEFAULT_TOLERANCE",
    "MAX_SIGNATURE_LEN",
    "MAX_TIMESTAMP_LEN",
    "MAX_WEBHOOK_ID_LEN",
    "SIGNATURE_HEADERS",
    "Reason",
    "SignatureError",
    "VerifiedSignature",
    "generate_secret",
    "sign_hmac",
    "verify_signature",
]

Reason = Literal[
    "missing_signature",
    "malformed_timestamp",
    "stale_timestamp",
    "malformed_signature",
    "invalid_signature",
    "no_secret",
]

DEFAULT_TOLERANCE: Final = 300
MAX_SIGNATURE_LEN: Final = 1024
MAX_TIMESTAMP_LEN: Final = 64
MAX_WEBHOOK_ID_LEN: Final = 256

_H_SIGNATURE: Final = "x-signature"
_H_TIMESTAMP: Final = "x-timestamp"
_H_WH_ID: Final = "webhook-id"
_H_WH_TIMESTAMP: Final = "webhook-timestamp"
_H_WH_SIGNATURE: Final = "webhook-signature"
# The headers either scheme reads (lower-case).
SIGNATURE_HEADERS: Final = frozenset(
    {_H_SIGNATURE, _H_TIMESTAMP, _H_WH_ID, _H_WH_TIMESTAMP, _H_WH_SIGNATURE}
)

_WHSEC_PREFIX: Final = "whsec_"
_DIGEST_SIZE: Final = hashlib.sha256().digest_size

# Explicit ASCII classes: ``\d`` and ``str.isdigit`` would also accept e.g. Arabic-Indic
# digits, which ``int()`` happily parses but the sender's HMAC input never contained.
_TS_A_RE: Final = re.compile(r"[0-9]{1,10}|[0-9]{13}")
_TS_B_RE: Final = re.compile(r"[0-9]{1,10}")
_HEX_DIGEST_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
# Visible ASCII only: the id is UTF-8 encoded into the signed content, and anything
# outside this range would not survive HTTP header transport byte-for-byte anyway.
_WH_ID_RE: Final = re.compile(r"[\x21-\x7e]+")
_B64_RE: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class SignatureError(Exception):
    """Verification failed; ``reason`` is one of the stable :data:`Reason` codes."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason: Reason = reason


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """Outcome of a successful verification.

    ``delivery_key`` is meant for replay/duplicate suppression: for scheme A it is the
    hex of the matching MAC (unique per timestamp+body+secret), for scheme B it is
    ``"wh:" + webhook-id`` because that spec defines the id as the idempotency key.
    """

    scheme: Literal["hmac", "standard"]
    timestamp: int
    delivery_key: str
    secret_index: int


# The request's headers: a mapping, or the (name, value) pairs as sent, repeats included.
Headers: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]]

# A header present several times: distinct from "absent" so it can be rejected.
_AMBIGUOUS: Final = object()


def _collect_headers(headers: Headers) -> dict[str, object]:
    found: dict[str, object] = {}
    for name, value in headers.items() if isinstance(headers, Mapping) else headers:
        # Non-ASCII names are skipped: str.lower() maps e.g. KELVIN SIGN to "k", which
        # would let an odd spelling of "webhook-id" count as the real header.
        if not isinstance(name, str) or not name.isascii():
            continue
        key = name.lower()
        if key not in SIGNATURE_HEADERS:
            continue
        if key in found or not isinstance(value, str):
            found[key] = _AMBIGUOUS
        else:
            found[key] = value
    return found


def _text(found: dict[str, object], key: str, limit: int, reason: Reason) -> str:
    value = found.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise SignatureError(reason)
    return value


def _check_fresh(timestamp: float, now: float, tolerance: int) -> None:
    # Written as "not <=" so a NaN ``now`` fails closed instead of passing.
    if not abs(now - timestamp) <= tolerance:
        raise SignatureError("stale_timestamp")


def _b64decode_strict(value: str) -> bytes | None:
    """Decode standard base64, padded or unpadded; None when it is not valid base64."""
    if not _B64_RE.fullmatch(value):
        return None
    body = value.rstrip("=")
    if len(body) % 4 == 1 or (body != value and len(value) % 4 != 0):
        return None
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        return None


def _standard_keys(secret: str) -> list[bytes]:
    """Candidate HMAC keys for scheme B, mirroring the official libraries."""
    if secret.startswith(_WHSEC_PREFIX):
        # Same lenient decode as the reference implementation (it appends "==" and does
        # not validate), so every secret their clients can sign with verifies here.
        try:
            key = base64.b64decode(secret[len(_WHSEC_PREFIX) :] + "==")
        except (binascii.Error, ValueError):
            return []
        return [key] if key else []
    keys: list[bytes] = []
    decoded = _b64decode_strict(secret)
    if decoded:
        keys.append(decoded)
    raw = secret.encode()
    if raw not in keys:
        keys.append(raw)
    return keys


def _mac(key: bytes, content: bytes) -> bytes:
    # The one-shot form runs in OpenSSL without building HMAC objects: several times faster.
    return hmac.digest(key, content, "sha256")


def _verify_hmac(
    found: dict[str, object],
    body: bytes,
    secrets: list[tuple[int, str]],
    now: float,
    tolerance: int,
) -> VerifiedSignature:
    ts_raw = _text(found, _H_TIMESTAMP, MAX_TIMESTAMP_LEN, "malformed_timestamp")
    if not _TS_A_RE.fullmatch(ts_raw):
        raise SignatureError("malformed_timestamp")
    sig_raw = _text(found, _H_SIGNATURE, MAX_SIGNATURE_LEN, "malformed_signature")
    if sig_raw[:7].isascii() and sig_raw[:7].lower() == "sha256=":
        sig_raw = sig_raw[7:]
    if not _HEX_DIGEST_RE.fullmatch(sig_raw):
        raise SignatureError("malformed_signature")
    provided = bytes.fromhex(sig_raw)

    ts_value = int(ts_raw)
    if len(ts_raw) == 13:
        _check_fresh(ts_value / 1000, now, tolerance)
        seconds = ts_value // 1000
    else:
        _check_fresh(ts_value, now, tolerance)
        seconds = ts_value

    content = ts_raw.encode("ascii") + b"." + body
    match: tuple[int, bytes] | None = None
    for index, secret in secrets:
        expected = _mac(secret.encode(), content)
        if hmac.compare_digest(expected, provided) and match is None:
            match = (index, expected)
    if match is None:
        raise SignatureError("invalid_signature")
    return VerifiedSignature(
        scheme="hmac", timestamp=seconds, delivery_key=match[1].hex(), secret_index=match[0]
    )


def _parse_standard_signatures(header: str) -> list[bytes]:
    entries = [token for token in header.split(" ") if token]
    if not entries:
        raise SignatureError("malformed_signature")
    provided: list[bytes] = []
    for entry in entries:
        version, sep, encoded = entry.partition(",")
        if not sep or not version:
            raise SignatureError("malformed_signature")
        if version != "v1":
            continue
        # Strict here (unlike the secret): the libraries always emit padded standard
        # base64, so any other spelling is a broken or tampered header.
        try:
            digest = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("malformed_signature") from None
        if len(digest) != _DIGEST_SIZE:
            raise SignatureError("malformed_signature")
        provided.append(digest)
    return provided


def _verify_standard(
    found: dict[str, object],
    body: bytes,
    secrets: list[tuple[int, str]],
    now: float,
    tolerance: int,
) -> VerifiedSignature:
    ts_raw = _text(found, _H_WH_TIMESTAMP, MAX_TIMESTAMP_LEN, "malformed_timestamp")
    if not _TS_B_RE.fullmatch(ts_raw):
        raise SignatureError("malformed_timestamp")
    msg_id = _text(found, _H_WH_ID, MAX_WEBHOOK_ID_LEN, "malformed_signature")
    if not _WH_ID_RE.fullmatch(msg_id):
        raise SignatureError("malformed_signature")
    sig_raw = _text(found, _H_WH_SIGNATURE, MAX_SIGNATURE_LEN, "malformed_signature")
    provided = _parse_standard_signatures(sig_raw)

    timestamp = int(ts_raw)
    _check_fresh(timestamp, now, tolerance)

    content = f"{msg_id}.{ts_raw}.".encode("ascii") + body
    matched: int | None = None
    for index, secret in secrets:
        for key in _standard_keys(secret):
            expected = _mac(key, content)
            for candidate in provided:
                if hmac.compare_digest(expected, candidate) and matched is None:
                    matched = index
    if matched is None:
        raise SignatureError("invalid_signature")
    return VerifiedSignature(
        scheme="standard", timestamp=timestamp, delivery_key="wh:" + msg_id, secret_index=matched
    )


def verify_signature(
    headers: Headers,
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE,
) -> VerifiedSignature:
    """Verify a delivery against every active secret; raise :class:`SignatureError`.

    ``now`` is injected (Unix seconds) so callers and tests control the clock.
    ``secret_index`` in the result indexes into ``secrets`` as passed, empty entries
    included, so the caller can tell which rotation slot is still in use.
    """
    # A bare str is a Sequence[str] of characters: every single character would become
    # a valid key. Refuse loudly instead of silently weakening verification.
    if isinstance(secrets, str | bytes):
        raise TypeError("secrets must be a sequence of strings, not a single string")
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    usable: list[tuple[int, str]] = []
    for index, secret in enumerate(secrets):
        if not isinstance(secret, str):
            raise TypeError(f"secret #{index} is not a str")
        # An empty key is public knowledge; it must never authenticate anything.
        if secret:
            usable.append((index, secret))
    if not usable:
        raise SignatureError("no_secret")

    found = _collect_headers(headers)
    if _H_SIGNATURE in found:
        return _verify_hmac(found, bytes(body), usable, now, tolerance)
    if _H_WH_SIGNATURE in found:
        return _verify_standard(found, bytes(body), usable, now, tolerance)
    raise SignatureError("missing_signature")


def sign_hmac(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """Scheme A headers for an outgoing delivery (seconds-resolution timestamp)."""
    if not secret:
        raise ValueError("secret must not be empty")
    # bool is an int subclass; True would sign "True" and never verify.
    if isinstance(timestamp, bool) or not 0 <= timestamp <= 9_999_999_999:
        raise ValueError("timestamp must be Unix seconds (0..9999999999)")
    ts_raw = str(int(timestamp))
    digest = _mac(secret.encode(), ts_raw.encode("ascii") + b"." + bytes(body))
    return {"X-Timestamp": ts_raw, "X-Signature": "sha256=" + digest.hex()}


def generate_secret() -> str:
    """A fresh ``whsec_`` secret (32 random bytes), usable with both schemes."""
    return _WHSEC_PREFIX + base64.b64encode(token_bytes(32)).decode("ascii")
