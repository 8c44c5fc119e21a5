"""Password hashing with scrypt, a memory-hard KDF from the standard library (no extra dependency)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
from concurrent.futures import ThreadPoolExecutor

# 2**15 x 8 x 128 bytes = 32 MiB and about 0.15 s per hash on this machine's cores: costly to guess
# in bulk, yet affordable per sign-in. The parameters are stored with each hash, so raising them later
# only affects new hashes.
N, R, P = 2**15, 8, 1
_MAXMEM = 64 * 1024 * 1024
_SALT_BYTES = 16
_KEY_BYTES = 32
# Hashes run on two threads of their own: a burst of sign-ins queues here instead of taking every
# core and 32 MiB per attempt, and the default executor stays free for the rest of the server.
_HASHING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="scrypt")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=_KEY_BYTES
    )


def hash_password_now(password: str) -> str:
    """Hash a password as ``scrypt$n$r$p$salt$key`` (blocking; use ``hash_password`` in the server)."""
    salt = os.urandom(_SALT_BYTES)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(_scrypt(password, salt, N, R, P))}"


def verify_password_now(password: str, stored: str | None) -> bool:
    """Check a password against a stored hash in constant time (blocking)."""
    if not stored:
        # Same work as a real check, so a missing password cannot be told apart by timing.
        _scrypt(password, b"\0" * _SALT_BYTES, N, R, P)
        return False
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


async def hash_password(password: str) -> str:
    """Hash a password on a hashing thread, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_HASHING, hash_password_now, password)


async def verify_password(password: str, stored: str | None) -> bool:
    """Check a password on a hashing thread, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_HASHING, verify_password_now, password, stored)
