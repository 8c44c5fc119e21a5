"""The store on both engines: migrations, the group-commit writer, timestamps, sign-in links, room rules."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.bus import MEMBER_JOINED, MEMBER_LEFT, MESSAGE_CREATED, Subscription
from chimebot.clock import FakeClock
from chimebot.errors import Conflict, NotFound
from chimebot.models import Room, Sender, User
from chimebot.services import Services, build_services
from chimebot.store import MIGRATIONS, Store, database_url, schema
from chimebot.store import accounts as qa
from chimebot.store import messages as qm
from chimebot.store import rooms as qr
from chimebot.store.batches import GuardFailed
from chimebot.store.log import CommittedEvent, EventDraft
from chimebot.store.writer import WriterClosed
from tests.conftest import make_config

# Every test runs once on SQLite and once on a fresh PostgreSQL database.
pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)

DDL_OR_DML = ("CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE")


# -- fixtures and helpers ----------------------------------------------------------------------------


@pytest.fixture
async def store(db_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A Store on an empty, not yet migrated database."""
    store = Store.open(database_url(db_url, tmp_path))
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def clock() -> FakeClock:
    """The clock the services run on."""
    return FakeClock()


@pytest.fixture
async def services(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Services]:
    """Started services on a migrated, bootstrapped database (one account and its administrator)."""
    services = build_services(make_config(db_url), tmp_path, clock)
    await services.start()
    try:
        await services.bootstrap()
        yield services
    finally:
        await services.close()


class Recorder:
    """Wraps the writer's on_commit to keep every published batch, then passes it on to the bus."""

    def __init__(self, services: Services) -> None:
        self.batches: list[list[CommittedEvent]] = []
        self._next = services.store.writer.on_commit
        services.store.writer.on_commit = self

    def __call__(self, events: Sequence[CommittedEvent]) -> None:
        """Record one committed batch."""
        self.batches.append(list(events))
        self._next(events)

    @property
    def events(self) -> list[CommittedEvent]:
        """Every published event, in publication order."""
        return [e for batch in self.batches for e in batch]


async def room_ids(services: Services, user_id: str) -> set[str]:
    """The rooms a user is a member of, read from the database."""
    async with services.store.read() as conn:
        return await qr.room_ids_of(conn, user_id)


def subscribe(services: Services, user_id: str, room_ids: list[str], limit: int) -> Subscription:
    """A bus subscription already settled on the given rooms."""
    sub = services.bus.subscribe(user_id, limit)
    services.bus.settle(sub, room_ids, as_of=0)
    return sub


class CommitCounter:
    """Counts COMMITs of message batches through SQLAlchemy's ``commit`` event, while installed."""

    def __init__(self, store: Store) -> None:
        self.count = 0
        # On SQLite message batches commit on the writer's own blocking engine.
        self._engine = store.blocking.inline if store.blocking else store.engine.sync_engine

    def _on_commit(self, conn: Connection) -> None:
        self.count += 1

    def __enter__(self) -> CommitCounter:
        sa_event.listen(self._engine, "commit", self._on_commit)
        return self

    def __exit__(self, *exc: object) -> None:
        sa_event.remove(self._engine, "commit", self._on_commit)


def alembic_heads() -> list[str]:
    """The head revisions of the migration scripts."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return list(ScriptDirectory.from_config(cfg).get_heads())


async def table_names(store: Store) -> set[str]:
    """The tables that exist in the database."""
    async with store.read() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def schema_diff(store: Store, metadata: sa.MetaData) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match ``metadata``."""

    def compare(conn: Connection) -> list[Any]:
        """Run Alembic's comparison on the sync connection."""
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(ctx, metadata))

    async with store.read() as conn:
        return await conn.run_sync(compare)


async def fetch(store: Store, stmt: sa.Executable) -> list[sa.RowMapping]:
    """Run a query on a read connection and return its rows as mappings."""
    async with store.read() as conn:
        return list((await conn.execute(stmt)).mappings())


async def add_user(services: Services, email: str) -> User:
    """Create a user (not an account admin) in the bootstrap account."""
    operator = await services.accounts.operator()
    user = User(str(uuid.uuid4()), operator.account_id, email, email, False)
    async with services.store.transaction() as conn:
        await qa.insert_user(conn, user, services.clock.now())
    return user


def message(room_id: str, content: str, at: datetime) -> tuple[dict[str, Any], EventDraft]:
    """A message row and its message.created event, as Rooms.post hands them to the writer."""
    row = {
        "id": str(uuid.uuid4()),
        "room_id": room_id,
        "sender_kind": "bot",
        "sender_id": "tester",
        "sender_name": "Tester",
        "content": content,
        "format": "text",
        "mentions": None,
        "created_at": at,
    }
    return row, EventDraft(room_id, MESSAGE_CREATED, at, message=row)


async def drain(sub: Subscription, count: int) -> list[tuple[int, str]]:
    """Collect ``count`` frames from a subscription, waiting for them (they may come from the log)."""
    frames: list[tuple[int, str]] = []
    # A safety net so a lost event fails the test instead of hanging it; not a timing assertion.
    async with asyncio.timeout(30):
        while len(frames) < count:
            frames += await sub.take()
            assert not sub.overflowed
    return frames


def token_of(link: str) -> str:
    """The token part of a sign-in link URL."""
    return link.rsplit("/", 1)[1]


# -- migrations --------------------------------------------------------------------------------------


async def test_migrate_creates_every_table_at_head_and_is_idempotent(store: Store) -> None:
    assert await table_names(store) == set()
    heads = alembic_heads()
    assert len(heads) == 1, f"the migrations have several heads: {heads}"

    await store.migrate()
    assert await table_names(store) == set(schema.metadata.tables) | {"alembic_version"}
    version = sa.select(sa.column("version_num")).select_from(sa.table("alembic_version"))
    assert [r["version_num"] for r in await fetch(store, version)] == heads

    # Data written between two starts must survive the second start's migrate untouched.
    async with store.transaction() as conn:
        await qa.insert_account(conn, "acc-1", "kept", datetime(2026, 1, 5, tzinfo=UTC))
    statements: list[str] = []

    def capture(conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        """Keep every SQL statement sent on the write engine."""
        statements.append(statement)

    sa_event.listen(store.engine.sync_engine, "before_cursor_execute", capture)
    try:
        await store.migrate()
    finally:
        sa_event.remove(store.engine.sync_engine, "before_cursor_execute", capture)

    changes = [s for s in statements if s.lstrip().upper().startswith(DDL_OR_DML)]
    assert changes == [], "a second migrate on an up-to-date database must change nothing"
    assert statements, "the capture saw no statement at all, so it proves nothing"
    assert [r["version_num"] for r in await fetch(store, version)] == heads
    assert await table_names(store) == set(schema.metadata.tables) | {"alembic_version"}
    assert [r["name"] for r in await fetch(store, sa.select(schema.accounts.c.name))] == ["kept"]


async def test_users_from_before_accounts_get_names_meeting_ids_and_pins(store: Store) -> None:
    def upgrade_to_0001(conn: Connection) -> None:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        alembic_command.upgrade(cfg, "0001")

    async with store.engine.begin() as conn:
        await conn.run_sync(upgrade_to_0001)
    created = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    async with store.transaction() as conn:
        # Rows as revision 0001 knew them: no license, status, meeting id or PIN yet.
        await conn.execute(
            sa.table(
                "accounts", sa.column("id"), sa.column("name"), sa.column("created_at", schema.UTCDateTime())
            ).insert(),
            [{"id": "acc", "name": "old", "created_at": created}],
        )
        old_users = sa.table(
            "users",
            *(sa.column(c) for c in ("id", "account_id", "email", "display_name", "is_admin")),
            sa.column("created_at", schema.UTCDateTime()),
        )
        await conn.execute(
            old_users.insert(),
            [
                {
                    "id": f"u{i}",
                    "account_id": "acc",
                    "email": f"u{i}@example.com",
                    "display_name": f"U{i}",
                    "is_admin": i == 0,
                    "created_at": created,
                }
                for i in range(3)
            ],
        )
    await store.migrate()
    rows = await fetch(store, sa.select(schema.users).order_by(schema.users.c.id))
    assert [r["full_name"] for r in rows] == ["u0@example.com", "u1@example.com", "u2@example.com"]
    assert [r["display_name"] for r in rows] == ["U0", "U1", "U2"]  # kept
    assert {(r["license"], r["registration_status"], r["registered_on"]) for r in rows} == {
        ("pro", "registered", created)
    }
    assert len({r["personal_meeting_id"] for r in rows}) == 3
    assert all(re.fullmatch(r"[1-9]\d{9}", r["personal_meeting_id"]) for r in rows)
    assert all(re.fullmatch(r"[1-9]\d{5}", r["personal_pin"]) for r in rows)
    [account] = await fetch(store, sa.select(schema.accounts))
    assert (account["type"], account["remote_control"], account["dial_out"], account["time_zone"]) == (
        "team",
        True,
        True,
        "UTC",
    )
    assert await schema_diff(store, schema.metadata) == []


async def test_migrated_schema_matches_metadata(store: Store) -> None:
    await store.migrate()
    assert await schema_diff(store, schema.metadata) == []

    # The comparison must be able to fail: a column that no migration created is reported.
    drifted = sa.MetaData(naming_convention=schema.metadata.naming_convention)
    for table in schema.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["rooms"].append_column(sa.Column("topic", sa.Text(), nullable=True))
    diff = await schema_diff(store, drifted)
    assert [(d[0], d[2], d[3].name) for d in diff] == [("add_column", "rooms", "topic")]


# -- the group writer --------------------------------------------------------------------------------


async def test_concurrent_posts_are_grouped_stored_once_and_published_in_id_order(
    services: Services,
) -> None:
    n = 200
    admin = await services.accounts.operator()
    room = await services.rooms.create(admin, "load")
    recorder = Recorder(services)
    sub = subscribe(services, admin.id, [room.id], limit=10 * n)
    sender = Sender("user", admin.id, admin.display_name)

    with CommitCounter(services.store) as commits:
        rows = await asyncio.gather(
            *(services.rooms.post(room.id, sender, f"message {i}", "text") for i in range(n))
        )

    posted = [r["id"] for r in rows]
    assert len(set(posted)) == n
    # Every message is in the database exactly once, with the content it was posted with.
    stored = await fetch(
        services.store, sa.select(schema.messages).where(schema.messages.c.room_id == room.id)
    )
    assert Counter(r["id"] for r in stored) == Counter(posted)
    assert {r["id"]: r["content"] for r in stored} == {r["id"]: r["content"] for r in rows}
    # ... and has exactly one message.created event.
    logged = await fetch(
        services.store,
        sa.select(schema.events.c.id, schema.events.c.message_id)
        .where(schema.events.c.room_id == room.id, schema.events.c.type == MESSAGE_CREATED)
        .order_by(schema.events.c.id),
    )
    assert Counter(r["message_id"] for r in logged) == Counter(posted)

    # Published in commit order, which is id order, with the ids the log has.
    published = recorder.events
    ids = [e.id for e in published]
    assert all(a < b for a, b in itertools.pairwise(ids)), "event ids not increasing in commit order"
    assert [(e.id, e.draft.message["id"]) for e in published if e.draft.message] == [
        (r["id"], r["message_id"]) for r in logged
    ]
    # History order (seq) agrees with stream order (event id).
    by_seq = [r["id"] for r in sorted(stored, key=lambda r: r["seq"])]
    assert by_seq == [r["message_id"] for r in logged]
    # The bus delivered every event to the room's subscriber, in id order.
    frames = await drain(sub, n)
    assert [event_id for event_id, _ in frames] == ids
    assert [json.loads(frame)["data"]["id"] for _, frame in frames] == [r["message_id"] for r in logged]

    # Grouped: fewer commits than messages, and each commit published exactly once.
    assert 1 <= commits.count < n
    assert len(recorder.batches) == commits.count


async def test_failed_change_leaves_no_rows_and_later_writes_succeed(services: Services) -> None:
    writer = services.store.writer
    recorder = Recorder(services)
    now = services.clock.now()
    admin = await services.accounts.operator()
    sub = subscribe(services, admin.id, ["somewhere"], limit=100)

    async def refused(conn: AsyncConnection) -> tuple[None, list[EventDraft]]:
        await qa.insert_account(conn, "ghost-1", "ghost", now)
        raise Conflict("refused after writing")

    async def unloggable(conn: AsyncConnection) -> tuple[None, list[EventDraft]]:
        # The change itself succeeds, but its event breaks NOT NULL: the change must go too.
        await qa.insert_account(conn, "ghost-2", "ghost", now)
        return None, [EventDraft(None, "broken", now)]  # type: ignore[arg-type]

    with pytest.raises(Conflict, match="refused after writing"):
        await writer.run(refused)
    with pytest.raises(IntegrityError):
        await writer.run(unloggable)

    ghosts = sa.select(schema.accounts.c.id).where(schema.accounts.c.name == "ghost")
    assert await fetch(services.store, ghosts) == []
    assert await fetch(services.store, sa.select(schema.events.c.id)) == []
    assert recorder.batches == []

    # The writer goes on: a change with an event, then a message.
    async def works(conn: AsyncConnection) -> tuple[str, list[EventDraft]]:
        await qa.insert_account(conn, "real-1", "real", now)
        return "done", [EventDraft("somewhere", "account.created", now, payload={"id": "real-1"})]

    assert await writer.run(works) == "done"
    room = await services.rooms.create(admin, "after")
    row = await services.rooms.post(room.id, Sender("bot", "b", "B"), "still writing", "text")

    names = await fetch(
        services.store, sa.select(schema.accounts.c.id).where(schema.accounts.c.name == "real")
    )
    assert [r["id"] for r in names] == ["real-1"]
    types = [(e.draft.type, e.draft.room_id) for e in recorder.events]
    assert types == [("account.created", "somewhere"), (MEMBER_JOINED, room.id), (MESSAGE_CREATED, room.id)]
    logged = await fetch(services.store, sa.select(schema.events.c.payload).order_by(schema.events.c.id))
    assert json.loads(logged[0]["payload"]) == {"id": "real-1"}
    stored = await fetch(services.store, sa.select(schema.messages.c.id))
    assert [r["id"] for r in stored] == [row["id"]]
    # On PostgreSQL the failed event insert used up a sequence value, so the next id is not the one
    # the bus expects and delivery goes through the log; either way the subscriber gets all three.
    frames = await drain(sub, 3)
    assert [event_id for event_id, _ in frames] == [e.id for e in recorder.events]


async def test_a_bad_row_in_a_message_batch_fails_only_its_own_waiter(services: Services) -> None:
    writer = services.store.writer
    admin = await services.accounts.operator()
    room = await services.rooms.create(admin, "batch")
    recorder = Recorder(services)
    now = services.clock.now()

    # post_message queues its row before its first await, so the three are queued before the idle
    # writer runs again and go into one batch; the missing room fails its foreign key.
    mixed = [
        message(room.id, "good 1", now),
        message("no-such-room", "bad", now),
        message(room.id, "good 2", now),
    ]
    results = await asyncio.gather(
        *(writer.post_message(row, ev) for row, ev in mixed), return_exceptions=True
    )
    assert isinstance(results[0], int) and isinstance(results[2], int), results
    assert isinstance(results[1], GuardFailed), results
    assert results[0] < results[2]
    assert [e.id for e in recorder.events] == [results[0], results[2]]
    stored = await fetch(services.store, sa.select(schema.messages.c.content).order_by(schema.messages.c.seq))
    assert [r["content"] for r in stored] == ["good 1", "good 2"]
    types = sa.select(schema.events.c.type).where(schema.events.c.room_id == "no-such-room")
    assert await fetch(services.store, types) == []

    # The next batch commits normally.
    later = [message(room.id, "later 1", now), message(room.id, "later 2", now)]
    event_ids = await asyncio.gather(*(writer.post_message(row, ev) for row, ev in later))
    assert event_ids[0] < event_ids[1]
    assert [e.id for e in recorder.events][-2:] == event_ids


async def test_queued_posts_are_committed_before_the_writer_stops(services: Services) -> None:
    writer = services.store.writer
    admin = await services.accounts.operator()
    room = await services.rooms.create(admin, "shutdown")
    sender = Sender("bot", "b", "B")

    # gather starts its tasks in order: the ten posts queue their rows before stop() closes the queue.
    *rows, _ = await asyncio.gather(
        *(services.rooms.post(room.id, sender, f"m{i}", "text") for i in range(10)), writer.stop()
    )
    with pytest.raises(WriterClosed):
        await services.rooms.post(room.id, sender, "too late", "text")

    stored = await fetch(services.store, sa.select(schema.messages.c.id).order_by(schema.messages.c.seq))
    assert [r["id"] for r in stored] == [r["id"] for r in rows]


async def test_failing_subscriber_does_not_undo_or_hide_a_commit(services: Services) -> None:
    admin = await services.accounts.operator()
    room = await services.rooms.create(admin, "noisy")
    calls: list[int] = []

    def broken(events: Sequence[CommittedEvent]) -> None:
        calls.append(len(events))
        raise RuntimeError("subscriber failed")

    services.store.writer.on_commit = broken
    first = await services.rooms.post(room.id, Sender("bot", "b", "B"), "one", "text")
    second = await services.rooms.post(room.id, Sender("bot", "b", "B"), "two", "text")

    assert calls == [1, 1]
    stored = await fetch(services.store, sa.select(schema.messages.c.id).order_by(schema.messages.c.seq))
    assert [r["id"] for r in stored] == [first["id"], second["id"]]


# -- UTCDateTime -------------------------------------------------------------------------------------


async def test_utc_datetime_round_trips_aware_and_refuses_naive(store: Store) -> None:
    await store.migrate()
    # The same morning written in three zones, out of chronological order.
    moments = {
        "tokyo": datetime(2026, 3, 1, 18, 0, 0, 123456, tzinfo=timezone(timedelta(hours=9))),  # 09:00Z
        "utc": datetime(2026, 3, 1, 8, 30, 0, 654321, tzinfo=UTC),  # 08:30Z
        "la": datetime(2026, 3, 1, 2, 15, 0, 1, tzinfo=timezone(timedelta(hours=-8))),  # 10:15Z
    }
    async with store.transaction() as conn:
        for name, at in moments.items():
            await qa.insert_account(conn, name, name, at)

    rows = await fetch(store, sa.select(schema.accounts.c.id, schema.accounts.c.created_at))
    back = {r["id"]: r["created_at"] for r in rows}
    for name, at in moments.items():
        assert back[name] == at, name
        assert back[name].tzinfo == UTC, (name, back[name].tzinfo)
        assert back[name].utcoffset() == timedelta(0)

    # Ordering and comparison are by instant on both engines (SQLite compares the stored text).
    by_time = await fetch(store, sa.select(schema.accounts.c.id).order_by(schema.accounts.c.created_at))
    assert [r["id"] for r in by_time] == ["utc", "tokyo", "la"]
    # Tokyo's instant to the microsecond, written in yet another zone: <= includes it, < does not.
    cutoff = datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    created_at = schema.accounts.c.created_at
    at_or_before = sa.select(schema.accounts.c.id).where(created_at <= cutoff)
    assert {r["id"] for r in await fetch(store, at_or_before)} == {"utc", "tokyo"}
    strictly_before = sa.select(schema.accounts.c.id).where(created_at < cutoff)
    assert {r["id"] for r in await fetch(store, strictly_before)} == {"utc"}

    naive = datetime(2026, 3, 1, 9, 0)
    with pytest.raises(StatementError) as raised:
        async with store.transaction() as conn:
            await qa.insert_account(conn, "naive", "naive", naive)
    assert isinstance(raised.value.orig, ValueError)
    with pytest.raises(StatementError) as raised:
        await fetch(store, sa.select(schema.accounts.c.id).where(schema.accounts.c.created_at < naive))
    assert isinstance(raised.value.orig, ValueError)
    assert {r["id"] for r in await fetch(store, sa.select(schema.accounts.c.id))} == set(moments)


# -- sign-in links -----------------------------------------------------------------------------------


async def test_signin_link_is_consumed_once_under_racing_redemptions(services: Services) -> None:
    accounts = services.signin
    admin = await services.accounts.operator()
    for _ in range(5):
        token = token_of(await accounts.signin_link(admin))
        results = await asyncio.gather(
            *(accounts.redeem_signin_link(token) for _ in range(3)), return_exceptions=True
        )
        wins = [r for r in results if not isinstance(r, BaseException)]
        losses = [r for r in results if isinstance(r, BaseException)]
        assert len(wins) == 1, results
        assert [type(e) for e in losses] == [NotFound, NotFound], losses
        user, api_token = wins[0]
        assert user.id == admin.id
        assert (await accounts.authenticate(api_token)).id == admin.id
        assert not await accounts.signin_link_usable(token)

    # One API token per link that was used, none for the losing redemptions.
    assert sum(t["name"] == "sign-in link" for t in await accounts.tokens(admin)) == 5
    used = await fetch(services.store, sa.select(schema.signin_links.c.used_at))
    # The bootstrap link was never redeemed; the five raced ones were used at the clock's time.
    assert sorted((r["used_at"] is None for r in used), key=int) == [False] * 5 + [True]
    assert {r["used_at"] for r in used if r["used_at"] is not None} == {services.clock.now()}


async def test_expired_signin_link_cannot_be_used(services: Services, clock: FakeClock) -> None:
    accounts = services.signin
    admin = await services.accounts.operator()
    ttl = services.config.bootstrap.signin_link_ttl_minutes * 60
    expiring = token_of(await accounts.signin_link(admin))
    clock.advance(ttl - 1)
    assert await accounts.signin_link_usable(expiring)
    fresh = token_of(await accounts.signin_link(admin))

    clock.advance(1)  # exactly at expiry: no longer valid
    assert not await accounts.signin_link_usable(expiring)
    with pytest.raises(NotFound):
        await accounts.redeem_signin_link(expiring)
    links = schema.signin_links
    assert await fetch(services.store, sa.select(links.c.used_at).where(links.c.used_at.is_not(None))) == []

    # A link created later is still good at the same moment, so the refusal above was the expiry.
    user, _ = await accounts.redeem_signin_link(fresh)
    assert user.id == admin.id


# -- room rules --------------------------------------------------------------------------------------


async def room_admins(services: Services, room: Room) -> dict[str, bool]:
    """The room's members and whether each is a room administrator, read from the table."""
    rm = schema.room_members
    rows = await fetch(services.store, sa.select(rm.c.user_id, rm.c.is_admin).where(rm.c.room_id == room.id))
    return {r["user_id"]: bool(r["is_admin"]) for r in rows}


async def test_last_room_admin_cannot_leave_or_step_down(services: Services) -> None:
    rooms = services.rooms
    admin = await services.accounts.operator()
    bob = await add_user(services, "bob@example.com")
    room = await rooms.create(admin, "ops")
    await rooms.add_member(admin, room.id, bob.email)

    with pytest.raises(Conflict):
        await rooms.remove_member(admin, room.id, admin.id)
    with pytest.raises(Conflict):
        await rooms.set_admin(admin, room.id, admin.id, False)
    assert await room_admins(services, room) == {admin.id: True, bob.id: False}

    # A second administrator lets the first one leave; then the second is the last.
    await rooms.set_admin(admin, room.id, bob.id, True)
    await rooms.remove_member(admin, room.id, admin.id)
    assert await room_admins(services, room) == {bob.id: True}
    with pytest.raises(Conflict):
        await rooms.remove_member(bob, room.id, bob.id)
    with pytest.raises(Conflict):
        await rooms.set_admin(bob, room.id, bob.id, False)
    assert await room_admins(services, room) == {bob.id: True}


async def test_two_admins_leaving_at_once_leave_one_behind(services: Services) -> None:
    rooms = services.rooms
    admin = await services.accounts.operator()
    bob = await add_user(services, "bob@example.com")
    room = await rooms.create(admin, "ops")
    await rooms.add_member(admin, room.id, bob.email, is_admin=True)

    results = await asyncio.gather(
        rooms.remove_member(admin, room.id, admin.id),
        rooms.remove_member(bob, room.id, bob.id),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "NoneType"], results
    remaining = await room_admins(services, room)
    assert len(remaining) == 1 and list(remaining.values()) == [True]


async def test_duplicate_room_names_conflict(services: Services) -> None:
    rooms = services.rooms
    admin = await services.accounts.operator()
    await rooms.create(admin, "ops")
    with pytest.raises(Conflict):
        await rooms.create(admin, "ops")
    with pytest.raises(Conflict):
        await rooms.create(admin, "  ops ")  # names are stripped before the check

    raced = await asyncio.gather(
        rooms.create(admin, "dup"), rooms.create(admin, "dup"), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in raced) == ["Conflict", "Room"], raced

    stored = await fetch(services.store, sa.select(schema.rooms.c.name).order_by(schema.rooms.c.name))
    assert [r["name"] for r in stored] == ["dup", "ops"]
    # A refused creation leaves no membership behind either.
    members = await fetch(services.store, sa.select(schema.room_members.c.room_id))
    assert len(members) == 2


async def test_history_pages_return_every_message_once_newest_first(
    services: Services, clock: FakeClock
) -> None:
    rooms = services.rooms
    admin = await services.accounts.operator()
    room = await rooms.create(admin, "history")
    posted: list[str] = []
    for i in range(23):
        clock.advance(1)
        posted.append((await rooms.post_as_user(admin, room.id, f"m{i}", "text"))["id"])
    newest_first = posted[::-1]

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page, cursor = await rooms.history(admin, room.id, limit=5, cursor=cursor)
        pages.append([m["id"] for m in page])
        if len(pages) == 1:
            # Messages posted while paging are newer than the cursor: later pages must not see them.
            for i in range(3):
                await rooms.post_as_user(admin, room.id, f"late {i}", "text")
        if cursor is None:
            break
        assert len(pages) < 10, "pagination does not end"
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [m for p in pages for m in p] == newest_first

    # Page sizes at the edges: one page exactly, and one message over.
    whole, end = await rooms.history(admin, room.id, limit=26)
    assert (len(whole), end) == (26, None)
    first, end = await rooms.history(admin, room.id, limit=25)
    assert len(first) == 25 and end is not None
    last, end = await rooms.history(admin, room.id, limit=25, cursor=end)
    assert [m["id"] for m in last] == [posted[0]] and end is None


# -- the stream log ----------------------------------------------------------------------------------


async def test_events_since_returns_room_events_with_messages_and_own_member_left(
    services: Services, clock: FakeClock
) -> None:
    rooms = services.rooms
    admin = await services.accounts.operator()
    bob = await add_user(services, "bob@example.com")
    async with services.store.read() as conn:
        start = await qm.last_event_id(conn)

    alpha = await rooms.create(admin, "alpha")  # joined(admin)
    clock.advance(1)
    beta = await rooms.create(admin, "beta")  # joined(admin), another room
    clock.advance(1)
    await rooms.add_member(admin, alpha.id, bob.email)  # joined(bob)
    clock.advance(1)
    m1 = await rooms.post_as_user(admin, alpha.id, "hello bob", "text")
    await rooms.post_as_user(admin, beta.id, "elsewhere", "text")
    clock.advance(1)
    m2 = await rooms.post_as_user(bob, alpha.id, "hi", "markdown")
    clock.advance(1)
    await rooms.remove_member(bob, alpha.id, bob.id)  # left(bob)
    clock.advance(1)
    m3 = await rooms.post_as_user(admin, alpha.id, "bob is gone", "text")

    async def since(
        after: int, room_ids: set[str], user_id: str, limit: int = 100, left: dict[str, int] | None = None
    ) -> list[sa.RowMapping]:
        """events_since on a fresh read connection."""
        async with services.store.read() as conn:
            return await qm.events_since(
                conn, after, limit=limit, user_id=user_id, room_ids=room_ids, left=left
            )

    def summary(rows: list[sa.RowMapping]) -> list[tuple[Any, ...]]:
        """Type, room, user, message id and content of each row, for one readable comparison."""
        return [(r["type"], r["event_room_id"], r["event_user_id"], r["id"], r["content"]) for r in rows]

    # Someone unrelated following alpha sees alpha's events only, with the messages joined in.
    alpha_rows = await since(start, {alpha.id}, "nobody")
    assert summary(alpha_rows) == [
        (MEMBER_JOINED, alpha.id, admin.id, None, None),
        (MEMBER_JOINED, alpha.id, bob.id, None, None),
        (MESSAGE_CREATED, alpha.id, None, m1["id"], "hello bob"),
        (MESSAGE_CREATED, alpha.id, None, m2["id"], "hi"),
        (MEMBER_LEFT, alpha.id, bob.id, None, None),
        (MESSAGE_CREATED, alpha.id, None, m3["id"], "bob is gone"),
    ]
    ids = [r["event_id"] for r in alpha_rows]
    assert all(a < b for a, b in itertools.pairwise(ids))
    in_log = (
        sa.select(schema.events.c.id).where(schema.events.c.room_id == alpha.id).order_by(schema.events.c.id)
    )
    assert ids == [r["id"] for r in await fetch(services.store, in_log)]
    hi = alpha_rows[3]
    assert (hi["sender_id"], hi["room_id"], hi["format"]) == (bob.id, alpha.id, "markdown")
    assert hi["created_at"] == hi["event_created_at"] == m2["created_at"]
    assert hi["event_created_at"].tzinfo == UTC

    # Resuming after an id gives exactly what followed; the limit keeps the oldest.
    assert [r["event_id"] for r in await since(ids[2], {alpha.id}, "nobody")] == ids[3:]
    assert [r["event_id"] for r in await since(start, {alpha.id}, "nobody", limit=2)] == ids[:2]

    # Bob left: he is in no room, yet still sees his own member.left, and nothing after it.
    assert await room_ids(services, bob.id) == set()
    bob_rows = await since(ids[3], set(), bob.id)
    assert [(r["type"], r["event_id"]) for r in bob_rows] == [(MEMBER_LEFT, ids[4])]
    assert json.loads(bob_rows[0]["payload"]) == {
        "room_id": alpha.id,
        "user_id": bob.id,
        "removed_by": bob.id,
    }
    assert [r["type"] for r in await since(start, set(), bob.id)] == [MEMBER_JOINED, MEMBER_LEFT]
    # Resuming from before he left, the room he left still owes him its events up to his departure.
    async with services.store.read() as conn:
        left = await qm.rooms_left_since(conn, bob.id, ids[1])
    assert left == {alpha.id: ids[4]}
    owed = await since(ids[1], set(), bob.id, left=left)
    assert [r["event_id"] for r in owed] == ids[2:5]
    async with services.store.read() as conn:
        assert await qm.rooms_left_since(conn, bob.id, ids[4]) == {}

    # The admin, in both rooms, sees both rooms interleaved in id order.
    both = await since(start, await room_ids(services, admin.id), admin.id)
    assert [r["event_room_id"] for r in both].count(beta.id) == 2
    both_ids = [r["event_id"] for r in both]
    assert both_ids == sorted(both_ids) and len(both_ids) == 8
