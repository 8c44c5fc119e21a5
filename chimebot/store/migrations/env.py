"""Alembic environment: migrations always run on a connection handed over by ``Store.migrate``."""

from alembic import context

from chimebot.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `chimebot migrate`, which supplies the connection")

# render_as_batch lets ALTERs work on SQLite, which rebuilds tables instead.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
