"""Webhook dialects, templates, authentication and idempotency receipts.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 03:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("webhooks") as batch:
        batch.add_column(sa.Column("dialect", sa.String(length=16), server_default="auto", nullable=False))
        batch.add_column(sa.Column("locked", sa.Boolean(), server_default="1", nullable=False))
        batch.add_column(sa.Column("template", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("auth", sa.String(length=24), server_default="token", nullable=False))
        batch.add_column(sa.Column("signing_secret", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("last_dialect", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_webhooks_token_hash", "webhooks", ["token_hash"], unique=False)
    op.create_table(
        "webhook_receipts",
        sa.Column("webhook_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("webhook_id", "key", name=op.f("pk_webhook_receipts")),
    )
    op.create_index(op.f("ix_webhook_receipts_created_at"), "webhook_receipts", ["created_at"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(op.f("ix_webhook_receipts_created_at"), table_name="webhook_receipts")
    op.drop_table("webhook_receipts")
    op.drop_index("ix_webhooks_token_hash", table_name="webhooks")
    with op.batch_alter_table("webhooks") as batch:
        for column in (
            "last_error_at",
            "last_error",
            "last_dialect",
            "signing_secret",
            "auth",
            "template",
            "locked",
            "dialect",
        ):
            batch.drop_column(column)
