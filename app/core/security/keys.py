"""API keys: 256 random bits, stored as a SHA-256 hash, compared in constant time.

A key is found by its first `PREFIX_LENGTH` characters (stored in clear, useful to tell keys apart
in listings); the rest never leaves the response that created it. A fast hash is enough: the keys
are random, so there is nothing for a slow hash to protect against guessing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "bl_"
PREFIX_LENGTH = 12
MIN_KEY_LENGTH = 24


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_prefix(key: str) -> str:
    return key[:PREFIX_LENGTH]


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_api_key(key).encode(), stored_hash.encode())
