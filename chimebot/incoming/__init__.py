"""Incoming webhooks: receiving them in every dialect (``receive``) and managing them (``manage``)."""

from chimebot.incoming.manage import IncomingWebhooks
from chimebot.incoming.receive import Arrival, Outcome, Receiver, Refused
from chimebot.incoming.templates import Templates

__all__ = ["Arrival", "IncomingWebhooks", "Outcome", "Receiver", "Refused", "Templates"]
