"""What calendars say about meetings, and when it changes: sources and invitations (no chimebot state)."""
