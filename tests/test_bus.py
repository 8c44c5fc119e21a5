"""The bus: a subscription made before its rooms are read still follows joins and leaves made meanwhile."""

from __future__ import annotations

from chimebot.bus import MEMBER_JOINED, MEMBER_LEFT, MESSAGE_CREATED, Bus, Envelope


def env(event_id: int, kind: str, room: str, user: str | None = None) -> Envelope:
    """An envelope whose frame names its id, so tests can see what was offered."""
    return Envelope(event_id, room, kind, user, f"frame {event_id}")


def test_a_leave_delivered_before_settling_wins_over_a_stale_snapshot() -> None:
    bus = Bus()
    sub = bus.subscribe("bob", limit=100)
    # The snapshot (as of event 10) still lists "ops"; bob left it in event 11 while it was read.
    bus.deliver([env(11, MEMBER_LEFT, "ops", "bob")])
    bus.settle(sub, {"ops", "dev"}, as_of=10)
    assert sub.room_ids == {"dev"}
    bus.deliver([env(12, MESSAGE_CREATED, "ops"), env(13, MESSAGE_CREATED, "dev")])
    assert [event_id for event_id, _ in sub.pending] == [11, 13]


def test_a_join_delivered_before_settling_is_kept_and_older_changes_are_ignored() -> None:
    bus = Bus()
    sub = bus.subscribe("bob", limit=100)
    bus.deliver([env(5, MEMBER_LEFT, "old", "bob"), env(9, MEMBER_JOINED, "new", "bob")])
    # The snapshot was taken after event 5 (so it already lacks "old") but before event 9.
    bus.settle(sub, {"dev"}, as_of=7)
    assert sub.room_ids == {"dev", "new"}
    bus.deliver([env(10, MESSAGE_CREATED, "new"), env(11, MESSAGE_CREATED, "old")])
    assert [event_id for event_id, _ in sub.pending] == [5, 9, 10]


def test_after_settling_membership_changes_apply_at_once_and_old_ids_are_skipped() -> None:
    bus = Bus()
    sub = bus.subscribe("bob", limit=100)
    bus.settle(sub, set(), as_of=0)
    bus.deliver([env(3, MEMBER_JOINED, "ops", "bob"), env(4, MESSAGE_CREATED, "ops")])
    bus.deliver([env(4, MESSAGE_CREATED, "ops"), env(2, MESSAGE_CREATED, "ops")])  # repeats, older
    bus.deliver([env(5, MEMBER_LEFT, "ops", "bob"), env(6, MESSAGE_CREATED, "ops")])
    assert [event_id for event_id, _ in sub.pending] == [3, 4, 5]
    bus.unsubscribe(sub)
    bus.deliver([env(7, MEMBER_JOINED, "ops", "bob")])
    assert [event_id for event_id, _ in sub.pending] == [3, 4, 5]
