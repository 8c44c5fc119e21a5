"""Wire formats of webhooks, in and out; this package knows nothing of the chimebot application."""
