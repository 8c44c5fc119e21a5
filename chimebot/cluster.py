"""What the nodes of a cluster share through Redis: a doorbell for new events and the rate limits.

Redis holds nothing that matters: the doorbell only makes other nodes read the event log sooner
(they poll it anyway), and a rate limiter that cannot reach Redis lets requests through rather than
refuse webhooks that the database could have stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chimebot.clock import Clock

log = logging.getLogger(__name__)

# KEYS[1] = bucket; ARGV = rate per second, burst, now (epoch seconds, from the caller's clock), and
# "take" or "give" (put back a token taken for something that turned out not to count).
# Returns "0" when a token was taken, else the seconds until one is free (as a string: Lua numbers
# would be truncated to integers on the way back).
_TAKE = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]) or burst, tonumber(state[2]) or now
if now > at then tokens = math.min(burst, tokens + (now - at) * rate) else now = at end
local wait = 0
if ARGV[4] == 'give' then tokens = math.min(burst, tokens + 1)
elseif tokens < 1 then wait = (1 - tokens) / rate else tokens = tokens - 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisDoorbell:
    """Publishes the newest committed event id on a channel and listens for other nodes' ids."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._channel = f"{prefix}:events"
        self._listener: asyncio.Task[None] | None = None
        self._ringing: asyncio.Task[None] | None = None
        self._latest = 0

    async def start(self, on_ring: Callable[[int], None]) -> None:
        """Subscribe, then call ``on_ring`` with every id announced."""
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        self._listener = asyncio.get_running_loop().create_task(self._listen(pubsub, on_ring))

    def ring(self, event_id: int) -> None:
        """Announce ``event_id``; rings made while one is on its way are folded into the next."""
        self._latest = max(self._latest, event_id)
        if self._ringing is None or self._ringing.done():
            self._ringing = asyncio.get_running_loop().create_task(self._publish())

    async def stop(self) -> None:
        """Stop listening (a ring on its way is given a moment to leave)."""
        if self._ringing is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ringing, 1.0)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def _publish(self) -> None:
        sent = 0
        while sent < self._latest:
            sent = self._latest
            try:
                await self._client.publish(self._channel, str(sent))
            except RedisError as exc:  # the others will find the events when they next poll
                log.warning("could not announce event %d on Redis: %s", sent, exc)
                return

    async def _listen(self, pubsub: aioredis.client.PubSub, on_ring: Callable[[int], None]) -> None:
        while True:
            try:
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes) and data.isdigit():
                        on_ring(int(data))
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except RedisError as exc:  # keep trying; polling covers the gap
                log.warning("Redis subscription lost (%s); retrying in 1 s", exc)
                await asyncio.sleep(1.0)
                with contextlib.suppress(RedisError):
                    await pubsub.subscribe(self._channel)


class RedisTokenBuckets:
    """Token buckets kept in Redis, so that every node counts against the same limit."""

    def __init__(self, client: aioredis.Redis, prefix: str, rate: float, burst: int, clock: Clock) -> None:
        self._client = client
        self._prefix = f"{prefix}:ratelimit:"
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._script = client.register_script(_TAKE)

    async def take(self, key: str) -> float:
        """Take a token for ``key``; return 0 when allowed, else the seconds until one is free."""
        return await self._run(key, "take")

    async def give_back(self, key: str) -> None:
        """Return a token taken for a request that should not count."""
        await self._run(key, "give")

    async def _run(self, key: str, action: str) -> float:
        now = self._clock.now().timestamp()
        try:
            args = [self._rate, self._burst, now, action]
            wait = await self._script(keys=[self._prefix + key], args=args)
        except RedisError as exc:
            log.warning("rate limit not checked, Redis is unavailable: %s", exc)
            return 0.0
        return float(wait)
