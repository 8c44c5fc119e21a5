"""The application's nouns as plain immutable values, and their public JSON shapes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

MessageFormat = Literal["text", "markdown", "code"]
SenderKind = Literal["user", "webhook", "bot"]
License = Literal["basic", "pro"]
RegistrationStatus = Literal["unregistered", "registered", "suspended"]
InvitationStatus = Literal["pending", "accepted", "failed"]
AccountType = Literal["team", "enterprise"]


def iso(moment: datetime) -> str:
    """Format a UTC datetime as ISO 8601 with milliseconds and a Z, as Chime did."""
    # isoformat is implemented in C; strftime costs several times more on the hot path.
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


@dataclass(frozen=True, slots=True)
class User:
    """A person with an address in an account."""

    id: str
    account_id: str
    email: str
    display_name: str
    is_admin: bool
    license: License = "pro"
    registration_status: RegistrationStatus = "registered"
    do_not_disturb: bool = False  # calls to the user ring muted

    def to_json(self) -> dict[str, Any]:
        """The user as other users see it."""
        return {
            "id": self.id,
            "account_id": self.account_id,
            "email": self.email,
            "display_name": self.display_name,
            "is_admin": self.is_admin,
        }


@dataclass(frozen=True, slots=True)
class Profile:
    """Everything an administrator (or the user) sees about a user, with SPEC section 1's fields."""

    user: User
    full_name: str
    invitation_status: InvitationStatus
    failure_reason: str | None
    invited_on: datetime | None
    registered_on: datetime | None
    personal_meeting_id: str | None
    personal_pin: str | None
    # False for someone invited from another account who has not accepted: no account, no license yet.
    member: bool = True

    def to_json(self) -> dict[str, Any]:
        """The profile as the API shows it."""
        user = self.user
        return {
            "id": user.id,
            "account_id": user.account_id if self.member else None,
            "primary_email": user.email,
            "full_name": self.full_name,
            "display_name": user.display_name,
            "is_admin": user.is_admin,
            "license": user.license if self.member else None,
            "invitation_status": self.invitation_status,
            "failure_reason": self.failure_reason,
            "registration_status": user.registration_status,
            "invited_on": iso(self.invited_on) if self.invited_on else None,
            "registered_on": iso(self.registered_on) if self.registered_on else None,
            "personal_meeting_id": self.personal_meeting_id,
            "personal_pin": self.personal_pin,
            "do_not_disturb": user.do_not_disturb,
        }


@dataclass(frozen=True, slots=True)
class Account:
    """An organisation: its users, rooms and settings."""

    id: str
    name: str
    type: AccountType
    remote_control: bool
    dial_out: bool
    time_zone: str
    domains: tuple[str, ...]
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The account as the API shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "settings": {"remote_control": self.remote_control, "dial_out": self.dial_out},
            "time_zone": self.time_zone,
            "domains": list(self.domains),
            "created_at": iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class Room:
    """A named chat room in an account."""

    id: str
    account_id: str
    name: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The room as the API shows it."""
        return {"id": self.id, "name": self.name, "created_at": iso(self.created_at)}


@dataclass(frozen=True, slots=True)
class Member:
    """A user's membership of a room."""

    room_id: str
    user_id: str
    email: str
    display_name: str
    is_admin: bool
    joined_at: datetime
    kind: Literal["user", "bot"] = "user"  # a bot's user_id is "bot:<name>" and its email its address

    def to_json(self) -> dict[str, Any]:
        """The membership as the API shows it."""
        return {
            "room_id": self.room_id,
            "user_id": self.user_id,
            "email": self.email,
            "display_name": self.display_name,
            "is_admin": self.is_admin,
            "joined_at": iso(self.joined_at),
            "kind": self.kind,
        }


@dataclass(frozen=True, slots=True)
class Sender:
    """Who a message is from: a user, a webhook (``<name> (Webhook)``) or a bot."""

    kind: SenderKind
    id: str
    name: str


WebhookDialect = Literal["auto", "chime", "slack", "teams", "discord"]
WebhookAuth = Literal["token", "bearer", "standard-webhooks"]
WEBHOOK_DIALECTS: tuple[WebhookDialect, ...] = ("auto", "chime", "slack", "teams", "discord")
WEBHOOK_AUTHS: tuple[WebhookAuth, ...] = ("token", "bearer", "standard-webhooks")


@dataclass(frozen=True, slots=True)
class Webhook:
    """An incoming webhook of a room; its token is only ever known as a hash."""

    id: str
    room_id: str
    name: str
    token_hash: str
    from_config: bool
    created_at: datetime
    dialect: WebhookDialect = "auto"  # how /hooks/{token} reads bodies: by their shape, or one dialect
    locked: bool = True  # False: a Slack `channel` may name another room of the account
    template: str | None = None  # a built-in or [[templates]] name: bodies go through it
    auth: WebhookAuth = "token"
    signing_secret: str | None = field(default=None, repr=False)  # whsec_…, for standard-webhooks
    last_dialect: str | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None

    def to_json(self, base_url: str) -> dict[str, Any]:
        """The webhook as the API shows it, without its token or signing secret."""
        return {
            "id": self.id,
            "room_id": self.room_id,
            "name": self.name,
            "url": f"{base_url}/incomingwebhooks/{self.id}",
            # Where the token is not taken from the URL, the id names the webhook on /hooks/ too.
            "hooks_url": f"{base_url}/hooks/{self.id}" if self.auth != "token" else None,
            "from_config": self.from_config,
            "created_at": iso(self.created_at),
            "dialect": self.dialect,
            "locked": self.locked,
            "template": self.template,
            "auth": self.auth,
            "last_dialect": self.last_dialect,
            "last_error": self.last_error,
            "last_error_at": iso(self.last_error_at) if self.last_error_at else None,
        }

    def shown(
        self, base_url: str, token: str | None = None, signing_secret: str | None = None
    ) -> dict[str, Any]:
        """The webhook as the API and CLI show it, with its token and signing secret when just made."""
        body = self.with_token(token, base_url) if token else self.to_json(base_url)
        return body | ({"signing_secret": signing_secret} if signing_secret else {})

    def with_token(self, token: str, base_url: str) -> dict[str, Any]:
        """The webhook right after creation or regeneration: the only time its token is shown."""
        shown = self.to_json(base_url) | {"token": token}
        if self.auth == "token":  # otherwise the token goes in a header, never in a URL
            shown |= {
                "url": f"{base_url}/incomingwebhooks/{self.id}?token={token}",
                "hooks_url": f"{base_url}/hooks/{token}",  # Slack, Mattermost, Teams, templates
                "discord_url": f"{base_url}/api/webhooks/{self.id}/{token}",
            }
        return shown


def message_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A message row (store or writer) as clients see it in the API and on the stream."""
    mentions = row["mentions"]
    return {
        "id": row["id"],
        "room_id": row["room_id"],
        "sender": {"kind": row["sender_kind"], "id": row["sender_id"], "name": row["sender_name"]},
        "content": row["content"],
        "format": row["format"],
        "mentions": json.loads(mentions) if mentions else None,
        "created_at": iso(row["created_at"]),
    }


BOT_ID_PREFIX = "bot:"  # a bot's member id in a room: "bot:<name>", beside users' ids
BOT_ADDRESS_SUFFIX = "-chimebot"


def bot_address(name: str, domain: str) -> str:
    """A bot's address: ``<name>-chimebot@<domain>``."""
    return f"{name}{BOT_ADDRESS_SUFFIX}@{domain}"


def bot_name_of(address: str, domain: str) -> str | None:
    """The bot name in a bot address of this domain (any case), else None."""
    local, _, host = address.strip().lower().rpartition("@")
    if host != domain.lower() or not local.endswith(BOT_ADDRESS_SUFFIX):
        return None
    return local[: -len(BOT_ADDRESS_SUFFIX)] or None


@dataclass(frozen=True, slots=True)
class Bot:
    """A chat-room bot the config declares, with its verification and delivery state."""

    name: str
    display_name: str
    kind: Literal["http", "builtin"]
    endpoint: str | None
    events: tuple[str, ...]
    signing: str
    timeout_seconds: float
    digest: str
    enabled: bool
    disabled_reason: str | None
    verified_at: datetime | None
    verify_error: str | None

    @property
    def member_id(self) -> str:
        """The id the bot has among a room's members."""
        return BOT_ID_PREFIX + self.name

    @property
    def ready(self) -> bool:
        """Whether events go to it: enabled, and verified (its endpoint answered, or its class loaded)."""
        return self.enabled and self.verified_at is not None

    @property
    def status(self) -> str:
        """One word for people: disabled, unverified or ready."""
        if not self.enabled:
            return "disabled"
        return "ready" if self.ready else "unverified"

    def to_json(self, address: str, *, admin: bool = False) -> dict[str, Any]:
        """The bot as the API shows it; administrators also see its endpoint and why it is not ready."""
        shown: dict[str, Any] = {
            "name": self.name,
            "display_name": self.display_name,
            "address": address,
            "member_id": self.member_id,
            "kind": self.kind,
            "events": list(self.events),
            "status": self.status,
            "enabled": self.enabled,
            "verified_at": iso(self.verified_at) if self.verified_at else None,
        }
        if admin:
            shown |= {
                "endpoint": self.endpoint,
                "signing": self.signing,
                "timeout_seconds": self.timeout_seconds,
                "disabled_reason": self.disabled_reason,
                "verify_error": self.verify_error,
            }
        return shown
