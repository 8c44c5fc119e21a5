"""Bots, their rooms and deliveries, the bot router's place in the event log, and server keys.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SerialId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "bots",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=True),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("signing", sa.String(length=20), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verify_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_bots")),
    )
    op.create_table(
        "room_bots",
        sa.Column("room_id", sa.String(length=36), nullable=False),
        sa.Column("bot_name", sa.String(length=40), nullable=False),
        sa.Column("added_by", sa.String(length=36), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_room_bots_room_id_rooms"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["bot_name"], ["bots.name"], name=op.f("fk_room_bots_bot_name_bots")),
        sa.PrimaryKeyConstraint("room_id", "bot_name", name=op.f("pk_room_bots")),
    )
    op.create_index("ix_room_bots_bot", "room_bots", ["bot_name"], unique=False)
    op.create_table(
        "bot_deliveries",
        sa.Column("id", SerialId, autoincrement=True, nullable=False),
        sa.Column("bot_name", sa.String(length=40), nullable=False),
        sa.Column("room_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=20), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_response", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_deliveries")),
        sa.UniqueConstraint("bot_name", "event_id", "event_type", name="uq_bot_deliveries_event"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_bot_deliveries_queue", "bot_deliveries", ["status", "bot_name", "room_id", "id"], unique=False
    )
    op.create_index("ix_bot_deliveries_bot", "bot_deliveries", ["bot_name", "id"], unique=False)
    op.create_table(
        "log_cursors",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_log_cursors")),
    )
    op.create_table(
        "server_keys",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_server_keys")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("server_keys")
    op.drop_table("log_cursors")
    op.drop_index("ix_bot_deliveries_bot", table_name="bot_deliveries")
    op.drop_index("ix_bot_deliveries_queue", table_name="bot_deliveries")
    op.drop_table("bot_deliveries")
    op.drop_index("ix_room_bots_bot", table_name="room_bots")
    op.drop_table("room_bots")
    op.drop_table("bots")
