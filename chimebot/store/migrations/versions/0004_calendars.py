"""Calendar sources' sync state and meeting objects, and users' do-not-disturb.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 01:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("do_not_disturb", sa.Boolean(), server_default="0", nullable=False))
    with op.batch_alter_table("occurrences", schema=None) as batch_op:
        batch_op.create_index("ix_occurrences_uid", ["uid"], unique=False)
    op.create_table(
        "calendar_sources",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=True),
        sa.Column("last_sync", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("objects", sa.Integer(), server_default="0", nullable=False),
        sa.Column("requests", sa.Integer(), server_default="0", nullable=False),
        sa.Column("problems", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_calendar_sources")),
    )
    op.create_table(
        "calendar_objects",
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("href", sa.String(length=1024), nullable=False),
        sa.Column("uids", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "href", name=op.f("pk_calendar_objects")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("calendar_objects")
    op.drop_table("calendar_sources")
    with op.batch_alter_table("occurrences", schema=None) as batch_op:
        batch_op.drop_index("ix_occurrences_uid")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("do_not_disturb")
