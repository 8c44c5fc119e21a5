"""The services of one running node, wired together once by ``build_services``."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path

import redis.asyncio as aioredis

from chimebot.accounts import Accounts
from chimebot.audit import Audit, Entry
from chimebot.autocall import AutoCall
from chimebot.bots import Bots
from chimebot.bus import Bus
from chimebot.clock import Clock, SystemClock
from chimebot.cluster import RedisDoorbell, RedisTokenBuckets
from chimebot.config import Config, ConfigError, load_config
from chimebot.feed import Feed
from chimebot.imip import ImipInbox, ImipListener
from chimebot.incoming import IncomingWebhooks, Receiver, Templates
from chimebot.invitations import Invitations
from chimebot.mail import Mailer, build_mailer
from chimebot.meetings import Meetings
from chimebot.ratelimit import RateLimiter, TokenBuckets
from chimebot.rooms import Rooms
from chimebot.scheduler import Scheduler
from chimebot.signin import SignIn
from chimebot.store import STARTUP_LOCK, Store, database_url
from chimebot.streams import Streams
from chimebot.texts import MeetingTexts, load_texts
from chimebot.usage import Usage
from chimebot.users import Users
from chimebot.watch import Calendars

log = logging.getLogger(__name__)

RELOADED = {"source", "rooms", "bots", "templates"}  # what a reload applies; the rest is read once, at start


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a request handler or a command may call."""

    config: Config
    clock: Clock
    store: Store
    bus: Bus
    feed: Feed
    accounts: Accounts
    signin: SignIn
    invitations: Invitations
    users: Users
    meetings: Meetings
    texts: MeetingTexts
    usage: Usage
    audit: Audit
    mailer: Mailer
    rooms: Rooms
    incoming: IncomingWebhooks
    streams: Streams
    scheduler: Scheduler
    autocall: AutoCall
    calendars: Calendars
    imip: ImipListener
    bots: Bots
    redis: aioredis.Redis | None
    # Reloads run one at a time (SIGHUP twice in a row must not apply the file twice at once).
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self) -> None:
        """Migrate the database and start background work."""
        await self.store.migrate()
        await self.store.start()
        await self.bots.prepare()
        await self.feed.start()

    async def start_scheduling(self) -> None:
        """Start what only a server runs: the scheduler's alarms, calendar polling, the iMIP listener."""
        await self.scheduler.start()
        await self.calendars.start()
        await self.imip.start()
        await self.bots.start()
        self.incoming.receiver.start()

    async def bootstrap(self) -> str | None:
        """Create the first account on an empty database and return its sign-in link, else None."""
        async with self.store.exclusive(STARTUP_LOCK):
            admin = await self.accounts.bootstrap()
        if admin is None:
            return None
        bootstrap = Entry(
            actor="config",
            source="config",
            action="accounts.bootstrap",
            outcome="ok",
            account_id=admin.account_id,
            target=admin.email,
        )
        await self.audit.record(bootstrap)
        return await self.signin.signin_link(admin)

    async def apply_config(self, config: Config | None = None) -> None:
        """Apply the rooms, webhooks and bots the config declares (the server does, at start and on
        reload; not the CLI, which often runs without the config file and would take that as
        "declare nothing")."""
        config = config or self.config
        self.incoming.receiver.templates = templates_of(config)
        async with self.store.exclusive(STARTUP_LOCK):
            owner = await self.accounts.operator()
            hooks = await self.incoming.apply_declarations(owner, config.rooms)
            bots = await self.bots.apply(config.bots, owner)
        for action, changes in (("config.webhooks.apply", hooks), ("config.bots.apply", bots)):
            for change in changes:
                await self.audit.record(
                    Entry(
                        actor="config",
                        source="config",
                        action=action,
                        outcome="ok",
                        account_id=owner.account_id,
                        target=config.source,
                        detail=change,
                    )
                )

    async def reload(self) -> bool:
        """Read the config file again and apply its rooms, webhooks and bots (on SIGHUP).

        Other sections need a restart; a file with errors changes nothing. Returns whether it applied.
        """
        source = self.config.source
        owner = await self.accounts.operator()  # the operator's administrators see the server's entries
        entry = Entry(
            actor="config",
            source="config",
            action="config.reload",
            outcome="ok",
            account_id=owner.account_id,
            target=source,
        )
        async with self.reload_lock:
            try:
                fresh = load_config(source)
                load_texts(fresh)
            except ConfigError as exc:
                log.error("config reload: %s is not valid, nothing changed:\n%s", source, exc)
                await self.audit.record(replace(entry, outcome="refused", detail=str(exc)[:2000]))
                return False
            try:
                await self.apply_config(fresh)
            except Exception as exc:  # the database may be away: say so, and keep serving
                log.exception("config reload: applying %s failed", source)
                await self.audit.record(replace(entry, outcome="failed", detail=str(exc)[:2000]))
                return False
        kept = [
            f.name
            for f in fields(fresh)
            if f.name not in RELOADED and getattr(fresh, f.name) != getattr(self.config, f.name)
        ]
        if kept:
            log.warning("config reload: changes to %s take effect at the next restart", ", ".join(kept))
        await self.audit.record(entry)
        log.info("config reload: applied rooms, webhooks and bots from %s", source)
        return True

    async def health(self) -> None:
        """Raise if this node cannot serve (its database does not answer)."""
        await self.store.ping()

    async def close(self) -> None:
        """Finish queued writes (and announce them), then release connections."""
        await self.incoming.receiver.stop()
        await self.bots.stop()
        await self.imip.stop()
        await self.calendars.stop()
        await self.scheduler.stop()  # waits for calls already claimed
        await self.store.writer.stop()
        await self.feed.stop()
        await self.store.close()
        if self.redis is not None:
            await self.redis.aclose()


def templates_of(config: Config) -> Templates:
    """The templates webhooks may name, with the config's limits."""
    hooks = config.webhooks
    return Templates(config.templates, time_limit=hooks.template_seconds, max_chars=hooks.max_content_chars)


def build_services(config: Config, data_dir: Path, clock: Clock | None = None) -> Services:
    """Create the services for a config; nothing touches the database or Redis until ``start``."""
    clock = clock or SystemClock()
    texts = load_texts(config)  # first: a bad template file stops here, before anything is opened
    db, hooks = config.database, config.webhooks
    store = Store.open(database_url(db.url, data_dir), synchronous=db.synchronous, pool_size=db.pool_size)
    bus = Bus()
    redis = aioredis.from_url(config.redis.url) if config.redis.url else None
    limits = config.accounts
    window = limits.signin_window_minutes * 60

    def buckets(rate: float, burst: int) -> RateLimiter:
        """Token buckets in this process, or in Redis so that every node counts the same requests."""
        if redis is None:
            return TokenBuckets(rate, burst, clock)
        return RedisTokenBuckets(redis, config.redis.prefix, rate, burst, clock)

    limiter = buckets(hooks.rate_per_second, hooks.burst)
    doorbell = None if redis is None else RedisDoorbell(redis, config.redis.prefix)
    feed = Feed(store, bus, poll_seconds=config.stream.poll_seconds, doorbell=doorbell)
    store.writer.on_commit = feed.on_commit
    rooms = Rooms(store, clock, config.meeting_domain)
    bots = Bots(config, store, clock, rooms, limiter)
    feed.listeners.append(bots.router.wake)
    usage = Usage(store, clock, config.billing)
    accounts = Accounts(store, clock, config.bootstrap, config.accounts)
    audit = Audit(store, clock)
    mailer = build_mailer(config.smtp, data_dir, clock)
    base_url = config.server.base_url
    per_address = buckets(limits.signin_attempts_per_address / window, limits.signin_attempts_per_address)
    per_account = buckets(limits.signin_attempts_per_account / window, limits.signin_attempts_per_account)
    signin = SignIn(
        store,
        clock,
        base_url,
        config.bootstrap.signin_link_ttl_minutes,
        per_address=per_address,
        per_account=per_account,
    )
    autocall = AutoCall(
        store,
        clock,
        rooms,
        usage,
        texts,
        mailer,
        sender=config.smtp.from_address,
        calendar_rooms={decl.name: decl.rooms for decl in config.calendars},
        operator=accounts.operator,
    )
    scheduling = config.scheduler
    scheduler = Scheduler(
        store,
        clock,
        grace=timedelta(minutes=scheduling.grace_minutes),
        lead=timedelta(seconds=scheduling.lead_seconds),
        on_fire=autocall.fire,
    )
    calendars = Calendars(config, store, scheduler, clock, vet=autocall.vet)
    return Services(
        config=config,
        clock=clock,
        store=store,
        bus=bus,
        feed=feed,
        accounts=accounts,
        signin=signin,
        invitations=Invitations(
            store,
            clock,
            rooms,
            mailer,
            # Sign-up requests count against the sign-in limits, per address and per claimed domain
            # (their keys differ from sign-in's, so one does not use up the other).
            (per_address, per_account),
            audit,
            config.accounts,
            base_url=base_url,
            sender=config.smtp.from_address,
        ),
        users=Users(store, clock),
        meetings=Meetings(store, clock, usage, texts),
        texts=texts,
        usage=usage,
        audit=audit,
        mailer=mailer,
        rooms=rooms,
        incoming=IncomingWebhooks(
            store, rooms, clock, hooks, Receiver(store, rooms, clock, hooks, limiter, templates_of(config))
        ),
        streams=Streams(store, bus, config.stream),
        scheduler=scheduler,
        autocall=autocall,
        calendars=calendars,
        imip=ImipListener(config, ImipInbox(config, store, scheduler, clock, calendars), calendars),
        bots=bots,
        redis=redis,
    )
