"""The services of one running node, wired together once by ``build_services``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from chimebot.accounts import Accounts
from chimebot.bus import Bus
from chimebot.clock import Clock, SystemClock
from chimebot.cluster import RedisDoorbell, RedisTokenBuckets
from chimebot.config import Config
from chimebot.feed import Feed
from chimebot.incoming import IncomingWebhooks
from chimebot.ratelimit import RateLimiter, TokenBuckets
from chimebot.rooms import Rooms
from chimebot.store import STARTUP_LOCK, Store, database_url
from chimebot.streams import Streams


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a request handler or a command may call."""

    config: Config
    clock: Clock
    store: Store
    bus: Bus
    feed: Feed
    accounts: Accounts
    rooms: Rooms
    incoming: IncomingWebhooks
    streams: Streams
    redis: aioredis.Redis | None

    async def start(self) -> None:
        """Migrate the database and start background work."""
        await self.store.migrate()
        await self.store.start()
        await self.feed.start()

    async def bootstrap(self) -> str | None:
        """Create the first account on an empty database and return its sign-in link, else None."""
        async with self.store.exclusive(STARTUP_LOCK):
            return await self.accounts.bootstrap()

    async def apply_config(self) -> None:
        """Apply the rooms and webhooks the config declares (the server does, at start; not the CLI,
        which often runs without the config file and would take that as "declare nothing")."""
        async with self.store.exclusive(STARTUP_LOCK):
            await self.incoming.apply_declarations(await self.accounts.operator(), self.config.rooms)

    async def health(self) -> None:
        """Raise if this node cannot serve (its database does not answer)."""
        await self.store.ping()

    async def close(self) -> None:
        """Finish queued writes (and announce them), then release connections."""
        await self.store.writer.stop()
        await self.feed.stop()
        await self.store.close()
        if self.redis is not None:
            await self.redis.aclose()


def build_services(config: Config, data_dir: Path, clock: Clock | None = None) -> Services:
    """Create the services for a config; nothing touches the database or Redis until ``start``."""
    clock = clock or SystemClock()
    db, hooks = config.database, config.webhooks
    store = Store.open(database_url(db.url, data_dir), synchronous=db.synchronous, pool_size=db.pool_size)
    bus = Bus()
    redis = aioredis.from_url(config.redis.url) if config.redis.url else None
    limiter: RateLimiter
    if redis is None:
        limiter = TokenBuckets(hooks.rate_per_second, hooks.burst, clock)
        doorbell = None
    else:
        limiter = RedisTokenBuckets(redis, config.redis.prefix, hooks.rate_per_second, hooks.burst, clock)
        doorbell = RedisDoorbell(redis, config.redis.prefix)
    feed = Feed(store, bus, poll_seconds=config.stream.poll_seconds, doorbell=doorbell)
    store.writer.on_commit = feed.on_commit
    rooms = Rooms(store, clock)
    return Services(
        config=config,
        clock=clock,
        store=store,
        bus=bus,
        feed=feed,
        accounts=Accounts(store, clock, config.bootstrap, config.server.base_url),
        rooms=rooms,
        incoming=IncomingWebhooks(store, rooms, clock, hooks, limiter),
        streams=Streams(store, bus, config.stream),
        redis=redis,
    )
