"""The services of one running node, wired together once by ``build_services``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chimebot.accounts import Accounts
from chimebot.bus import Bus
from chimebot.clock import Clock, SystemClock
from chimebot.config import Config
from chimebot.incoming import IncomingWebhooks
from chimebot.ratelimit import TokenBuckets
from chimebot.rooms import Rooms
from chimebot.store import Store, database_url


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a request handler or a command may call."""

    config: Config
    clock: Clock
    store: Store
    bus: Bus
    accounts: Accounts
    rooms: Rooms
    incoming: IncomingWebhooks

    async def start(self) -> None:
        """Migrate the database and start background work."""
        await self.store.migrate()
        await self.store.start()

    async def close(self) -> None:
        """Finish queued writes and release connections."""
        await self.store.close()


def build_services(config: Config, data_dir: Path, clock: Clock | None = None) -> Services:
    """Create the services for a config; nothing touches the database until ``start``."""
    clock = clock or SystemClock()
    db = config.database
    store = Store.open(database_url(db.url, data_dir), synchronous=db.synchronous, pool_size=db.pool_size)
    bus = Bus()
    store.writer.on_commit = bus.publish
    rooms = Rooms(store, bus, clock)
    hooks = config.webhooks
    limiter = TokenBuckets(hooks.rate_per_second, hooks.burst, clock)
    return Services(
        config=config,
        clock=clock,
        store=store,
        bus=bus,
        accounts=Accounts(store, clock, config.bootstrap, config.server.base_url),
        rooms=rooms,
        incoming=IncomingWebhooks(store, rooms, clock, hooks, limiter),
    )
