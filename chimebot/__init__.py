"""chimebot: self-hosted chat rooms, Chime-compatible webhooks, bots and calendar-driven meetings."""

__version__ = "0.1.0"
