"""What a license allows: every Pro feature asks ``require_pro`` before it does anything."""

from __future__ import annotations

from typing import Literal

from chimebot.errors import Forbidden, ProRequired
from chimebot.models import User

# SPEC section 1: what Pro adds to Basic. The value is how the refusal names the feature.
ProFeature = Literal[
    "scheduling meetings",
    "instant meetings",
    "hosting more than 2 people",
    "recording",
    "meeting lock",
    "event mode",
    "personalized meeting links",
    "delegates",
]


def require_pro(user: User, feature: ProFeature) -> None:
    """Raise ProRequired (403 ``pro_required``) unless the user holds a Pro license."""
    if user.license != "pro":
        raise ProRequired(feature)


def require_admin(user: User) -> None:
    """Raise Forbidden (403 ``admin_required``) unless the user is an active administrator of their
    account. The HTTP layer checks this once per request in its ``admin_only`` decorator; services
    that change an account check it again, so no other caller (the CLI, a future one) can skip it."""
    if not user.is_admin or user.registration_status != "registered":
        raise Forbidden("only administrators of the account can do this", code="admin_required")
