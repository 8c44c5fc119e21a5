"""What a license allows: every Pro feature asks ``require_pro`` before it does anything."""

from __future__ import annotations

from typing import Literal

from chimebot.errors import ProRequired
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
