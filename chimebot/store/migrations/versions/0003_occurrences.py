"""Calendar occurrences that the scheduler calls.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 23:06:16.820785
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "occurrences",
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("uid", sa.String(length=1000), nullable=False),
        sa.Column("recurrence_id", sa.DateTime(timezone=True), nullable=True),
        sa.Column("meeting_id", sa.String(length=10), nullable=True),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("organizer", sa.String(length=320), nullable=True),
        sa.Column("attendees", sa.Text(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_occurrences")),
    )
    with op.batch_alter_table("occurrences", schema=None) as batch_op:
        batch_op.create_index("ix_occurrences_source_state", ["source", "state"], unique=False)
        batch_op.create_index("ix_occurrences_state_start", ["state", "start_at"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("occurrences", schema=None) as batch_op:
        batch_op.drop_index("ix_occurrences_state_start")
        batch_op.drop_index("ix_occurrences_source_state")
    op.drop_table("occurrences")
