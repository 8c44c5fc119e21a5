"""Chat-room bots (SPEC 4): declared in the config, fed from the event log, sent through a durable queue.

``events`` says what bots receive, ``router`` turns the event log into queued deliveries,
``worker`` sends them, ``endpoints`` makes the URLs bots reply through, ``builtin`` loads bots
written in Python, and ``service`` ties them together for the API and the command line.
"""

from chimebot.bots.service import BOT_UNAVAILABLE, Bots, Reply

__all__ = ["BOT_UNAVAILABLE", "Bots", "Reply"]
