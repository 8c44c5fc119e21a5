"""Random tokens and the hashes they are stored as."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_token() -> str:
    """Return a fresh 256-bit URL-safe token."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """Hash a high-entropy token for storage (SHA-256 suffices: tokens are not guessable passwords)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Compare a presented token with a stored hash in constant time."""
    return hmac.compare_digest(token_hash(token), stored_hash)
