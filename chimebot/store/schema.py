"""The database schema, one for SQLite and PostgreSQL; every change here needs a migration."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Stable constraint names so migrations can refer to them on both engines.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for long-lived sequences.
SerialId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes and normalise to UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach UTC to what SQLite returns naive."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


accounts = Table(
    "accounts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("type", String(20), nullable=False, server_default="team"),  # team | enterprise
    Column("remote_control", Boolean(), nullable=False, server_default="1"),
    Column("dial_out", Boolean(), nullable=False, server_default="1"),
    # IANA zone that days and months of the usage report are counted in.
    Column("time_zone", String(64), nullable=False, server_default="UTC"),
    Column("created_at", UTCDateTime(), nullable=False),
)

# A claimed domain belongs to one account: the primary key makes a second claim fail.
account_domains = Table(
    "account_domains",
    metadata,
    Column("domain", String(253), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=False, index=True),
    # Stored lower-cased: addresses are compared case-insensitively everywhere.
    Column("email", String(320), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False),
    Column("full_name", String(200), nullable=False),
    Column("is_admin", Boolean(), nullable=False, server_default="0"),
    Column("license", String(10), nullable=False, server_default="pro"),  # basic | pro
    Column("registration_status", String(12), nullable=False, server_default="registered"),
    Column("registered_on", UTCDateTime(), nullable=True),
    Column("personal_meeting_id", String(10), nullable=False, unique=True),
    Column("personal_pin", String(10), nullable=False),
    # scrypt, as "scrypt$n$r$p$salt$hash"; absent until the person sets a password.
    Column("password_hash", String(200), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # Do not disturb: the user's clients get calls (meeting.ring) muted.
    Column("do_not_disturb", Boolean(), nullable=False, server_default="0"),
)

# One invitation per account and user: inviting again renews it (new link, pending again).
invitations = Table(
    "invitations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("status", String(10), nullable=False),  # pending | accepted | failed
    Column("failure_reason", Text(), nullable=True),
    Column("invited_by", String(36), nullable=True),  # None: the person signed up (claimed domain)
    Column("invited_on", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("accepted_on", UTCDateTime(), nullable=True),
    UniqueConstraint("account_id", "user_id", name="uq_invitations_account_user"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    # SHA-256 of the token: tokens are 256-bit random, so a fast hash is enough and lookups are indexed.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

signin_links = Table(
    "signin_links",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
)

rooms = Table(
    "rooms",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("account_id", "name", name="uq_rooms_account_name"),
)

room_members = Table(
    "room_members",
    metadata,
    Column("room_id", String(36), ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("is_admin", Boolean(), nullable=False, server_default="0"),
    Column("joined_at", UTCDateTime(), nullable=False),
    Index("ix_room_members_user", "user_id"),
)

messages = Table(
    "messages",
    metadata,
    # seq orders history and backs the pagination cursor; id is the public identifier.
    Column("seq", SerialId, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("room_id", String(36), ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False),
    Column("sender_kind", String(10), nullable=False),  # user | webhook | bot
    Column("sender_id", String(36), nullable=False),
    Column("sender_name", String(200), nullable=False),
    Column("content", Text(), nullable=False),
    Column("format", String(10), nullable=False),  # text | markdown | code
    Column("mentions", Text(), nullable=True),  # JSON, absent when the message mentions nobody
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_messages_room_seq", "room_id", "seq"),
    sqlite_autoincrement=True,
)

# The stream's log: ids only grow (AUTOINCREMENT never reuses one), so `since=<id>` resumes exactly.
events = Table(
    "events",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("room_id", String(36), nullable=False),
    Column("type", String(40), nullable=False),
    # The user a membership event is about, so a user who left still sees their own `member.left`.
    Column("user_id", String(36), nullable=True),
    # message.created events point at their message instead of copying its content.
    Column("message_id", String(36), nullable=True),
    Column("payload", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_events_room_id", "room_id", "id"),
    sqlite_autoincrement=True,
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("room_id", String(36), ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False),
    # Declared in the config file: the next start re-applies the declaration.
    Column("from_config", Boolean(), nullable=False, server_default="0"),
    Column("created_at", UTCDateTime(), nullable=False),
    # How bodies on /hooks/{token} are read: "auto" (by shape), or one dialect only.
    Column("dialect", String(16), nullable=False, server_default="auto"),
    # A locked webhook posts only into its room; an unlocked one honours Slack's `channel`.
    Column("locked", Boolean(), nullable=False, server_default="1"),
    # A built-in template's name or a [[templates]] name from the config; bodies then go through it.
    Column("template", String(64), nullable=True),
    # "token" (URL or Bearer), "bearer" (Authorization header only) or "standard-webhooks" (signature).
    Column("auth", String(24), nullable=False, server_default="token"),
    Column("signing_secret", String(200), nullable=True),  # whsec_…, for auth = standard-webhooks
    # What the last body was read as, and the last failure; written only when they change.
    Column("last_dialect", String(16), nullable=True),
    Column("last_error", Text(), nullable=True),
    Column("last_error_at", UTCDateTime(), nullable=True),
    UniqueConstraint("room_id", "name", name="uq_webhooks_room_name"),
    Index("ix_webhooks_token_hash", "token_hash"),  # /hooks/{token} finds its webhook by the token
)

# What a webhook answered to an Idempotency-Key or webhook-id, so a resent request is not posted twice.
webhook_receipts = Table(
    "webhook_receipts",
    metadata,
    Column("webhook_id", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column(
        "message_id", String(36), nullable=True
    ),  # None: the body was dropped (its template wrote nothing)
    Column("created_at", UTCDateTime(), nullable=False, index=True),
)

# Meetings, as far as accounts and billing need them; the meetings issue extends this table.
meetings = Table(
    "meetings",
    metadata,
    Column("id", String(10), primary_key=True),  # 10 digits
    Column("account_id", String(36), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("host_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("type", String(12), nullable=False),  # instant | scheduled
    Column("topic", String(200), nullable=False),
    Column("start_at", UTCDateTime(), nullable=False),
    Column("ended_at", UTCDateTime(), nullable=True),
    Column("attendee_count", Integer(), nullable=False, server_default="0"),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_meetings_account_start", "account_id", "start_at"),
)

# What makes a day an active Pro day (SPEC 1), with the license the user held at that moment.
pro_activity = Table(
    "pro_activity",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("account_id", String(36), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # scheduled_meeting | large_meeting | recording | dial_in
    Column("kind", String(20), nullable=False),
    Column("meeting_id", String(10), nullable=True),
    Column("license", String(10), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Index("ix_pro_activity_account_at", "account_id", "at"),
    sqlite_autoincrement=True,
)

# Append-only: nothing updates or deletes rows here.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("account_id", String(36), nullable=True),
    Column("actor_id", String(36), nullable=True),
    Column("actor", String(320), nullable=False),  # an address, "config", or "anonymous"
    Column("source", String(10), nullable=False),  # api | cli | config
    Column("address", String(64), nullable=True),  # the client's IP address for the API
    Column("action", String(80), nullable=False),
    Column("target", String(200), nullable=True),
    Column("outcome", String(10), nullable=False),  # ok | refused | failed
    Column("status", Integer(), nullable=True),  # the HTTP status, for the API
    Column("detail", Text(), nullable=True),
    Index("ix_audit_log_account_id", "account_id", "id"),
    sqlite_autoincrement=True,
)

# Calendar occurrences that ask for a call: the scheduler's truth (its in-memory jobs are rebuilt from
# here). The key is UID|RECURRENCE-ID alone: RFC 5545 UIDs are globally unique, so the same invitation
# seen through iMIP and a watched calendar is one row and one call. `source` is the calendar that
# last reported it, whose complete syncs may cancel it when it disappears.
occurrences = Table(
    "occurrences",
    metadata,
    Column("key", String(1024), primary_key=True),
    Column("source", String(200), nullable=False),
    Column("uid", String(1000), nullable=False),
    Column("recurrence_id", UTCDateTime(), nullable=True),
    Column("meeting_id", String(10), nullable=True),  # 10 digits, from pin+<id>@ or given by meet@
    Column("start_at", UTCDateTime(), nullable=False),
    Column("end_at", UTCDateTime(), nullable=False),
    Column("summary", Text(), nullable=False),
    Column("organizer", String(320), nullable=True),
    Column("attendees", Text(), nullable=False),  # JSON list of lower-cased addresses
    Column("sequence", Integer(), nullable=False),
    Column("state", String(10), nullable=False),  # scheduled | cancelled | rejected | fired | missed
    Column("reason", Text(), nullable=True),
    Column("fired_at", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    # What the scheduler asks for: the scheduled occurrences by start time.
    Index("ix_occurrences_state_start", "state", "start_at"),
    Index("ix_occurrences_source_state", "source", "state"),
    # Deletions, iMIP updates and meeting ids go by UID.
    Index("ix_occurrences_uid", "uid"),
)


# Each watched calendar's sync state, so that a restart continues incrementally, and its health.
calendar_sources = Table(
    "calendar_sources",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("kind", String(10), nullable=False),  # caldav | ics | folder | imip
    Column("snapshot", Text(), nullable=True),  # JSON: the source's sync token, ETags...
    Column("last_sync", UTCDateTime(), nullable=True),
    Column("last_error", Text(), nullable=True),
    Column("objects", Integer(), nullable=False, server_default="0"),
    Column("requests", Integer(), nullable=False, server_default="0"),
    Column("problems", Text(), nullable=True),  # JSON list: malformed objects skipped by the last sync
    Column("updated_at", UTCDateTime(), nullable=False),
)

# The calendar objects that name the meeting domain, kept so that recurring meetings can be read
# further ahead as time passes without fetching the calendar again. Other objects are not kept.
calendar_objects = Table(
    "calendar_objects",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("href", String(1024), primary_key=True),
    Column("uids", Text(), nullable=False),  # JSON list of the UIDs in the object
    Column("data", Text(), nullable=False),  # the iCalendar text
    Column("updated_at", UTCDateTime(), nullable=False),
)

# The bots the config declares. They are never deleted: one removed from the config stays listed,
# disabled, so that its rooms and deliveries keep their meaning.
bots = Table(
    "bots",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("display_name", String(100), nullable=False),
    Column("kind", String(10), nullable=False),  # http | builtin
    Column("endpoint", Text(), nullable=True),  # the URL, or the entry-point name of a built-in bot
    Column("events", Text(), nullable=False),  # JSON list of the event types it receives
    Column("signing", String(20), nullable=False),  # chime | standard-webhooks
    Column("timeout_seconds", Float(), nullable=False),
    # SHA-256 over endpoint, signing and secret: a change means the endpoint must be verified again.
    Column("digest", String(64), nullable=False),
    Column("enabled", Boolean(), nullable=False),
    Column("disabled_reason", Text(), nullable=True),  # why it is disabled: the config, or a 410
    Column("verified_at", UTCDateTime(), nullable=True),
    Column("verify_error", Text(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Bots in rooms: room administrators add and remove them like members.
room_bots = Table(
    "room_bots",
    metadata,
    Column("room_id", String(36), ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True),
    Column("bot_name", String(40), ForeignKey("bots.name"), primary_key=True),
    Column("added_by", String(36), nullable=True),  # the user, or None for the config
    Column("joined_at", UTCDateTime(), nullable=False),
    Index("ix_room_bots_bot", "bot_name"),
)

# Events on their way to bots. The event log is written in the same transaction as the message
# that caused an event; the bot router turns log entries into rows here under `log_cursors`, in one
# transaction, so none is lost or doubled. A row is sent when it is the oldest unfinished one of its
# bot and room, which keeps each room's order for each bot.
bot_deliveries = Table(
    "bot_deliveries",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("bot_name", String(40), nullable=False),
    Column("room_id", String(36), nullable=False),
    Column("event_type", String(20), nullable=False),  # Invite | Mention | Remove | Message | MeetingStarted
    Column("event_id", BigInteger(), nullable=True),  # the log entry it came from
    Column("payload", Text(), nullable=False),  # the event's JSON, without its short-lived endpoint
    Column("status", String(10), nullable=False),  # pending | sending | delivered | failed
    Column("attempts", Integer(), nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("lease_until", UTCDateTime(), nullable=True),  # a sending row whose node died is retried after
    Column("first_attempt_at", UTCDateTime(), nullable=True),
    Column("last_attempt_at", UTCDateTime(), nullable=True),
    Column("last_status", Integer(), nullable=True),
    Column("last_error", Text(), nullable=True),
    Column("last_response", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime(), nullable=True),
    UniqueConstraint("bot_name", "event_id", "event_type", name="uq_bot_deliveries_event"),
    Index("ix_bot_deliveries_queue", "status", "bot_name", "room_id", "id"),
    Index("ix_bot_deliveries_bot", "bot_name", "id"),
    sqlite_autoincrement=True,
)

# How far a reader of the event log has got (the bot router), kept across restarts.
log_cursors = Table(
    "log_cursors",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("position", BigInteger(), nullable=False),
)

# Keys this server made for itself, shared by its nodes (e.g. the one signing bots' reply URLs).
server_keys = Table(
    "server_keys",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("value", String(128), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)
