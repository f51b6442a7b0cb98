"""API tokens: made once, stored as their SHA-256, checked on every request but ``/healthz``."""
from __future__ import annotations

import hashlib
import secrets

from industriverse.fleet import store

ROLES = ("viewer", "operator")
COOKIE = "iv_token"


def token_hash(token: str) -> str:
    """SHA-256 (hex) of a token: what the store keeps."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token(name: str, role: str, *, engine=None) -> str:
    """Make a token for ``name`` with ``role``, store its hash, return the token (shown once)."""
    token = "iv_" + secrets.token_urlsafe(32)
    store.create_api_token(name, role, token_hash(token), engine=engine)
    return token


def identify(token: str | None, *, engine=None) -> dict | None:
    """The token's row (name, role) or None for a missing or unknown token."""
    if not token:
        return None
    return store.find_api_token(token_hash(token.strip()), engine=engine)
