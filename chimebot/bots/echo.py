"""An example built-in bot to copy: it greets a room it joins and echoes what it is asked.

Declare it with::

    [[bots]]
    name = "echo"
    builtin = "echo"
    events = ["Invite", "Mention"]
    rooms = ["General"]

and write "@echo hello" in the room.
"""

from __future__ import annotations

import re

from chimebot.bots.builtin import BotEvent, BuiltinBot


class EchoBot(BuiltinBot):
    """Says hello when invited, and answers a mention with the text after the mention."""

    async def on_invite(self, event: BotEvent) -> None:
        """Greet the room."""
        await self.post(event.room_id, f"Hello! Mention me (@{self.name}) and I repeat what you say.")

    async def on_mention(self, event: BotEvent) -> str | None:
        """Reply with the message minus the mentions."""
        text = re.sub(r"(?<![\w@])@[\w.+-]+(?:@[\w-]+(?:\.[\w-]+)+)?", "", event.message or "").strip()
        return f"{event.sender} said: {text}" if text else "You mentioned me, but said nothing."
