"""Accounts, invitations, meetings, usage and the audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 21:48:06.580438
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "audit_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=True),
        sa.Column("actor_id", sa.String(length=36), nullable=True),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=80), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_account_id", ["account_id", "id"], unique=False)

    op.create_table(
        "account_domains",
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_domains_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_account_domains")),
    )
    op.create_table(
        "invitations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("invited_by", sa.String(length=36), nullable=True),
        sa.Column("invited_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_on", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_invitations_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_invitations_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("account_id", "user_id", name="uq_invitations_account_user"),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invitations_token_hash")),
    )
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invitations_user_id"), ["user_id"], unique=False)

    op.create_table(
        "meetings",
        sa.Column("id", sa.String(length=10), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("host_id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=12), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attendee_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_meetings_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["host_id"], ["users.id"], name=op.f("fk_meetings_host_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meetings")),
    )
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.create_index("ix_meetings_account_start", ["account_id", "start_at"], unique=False)

    op.create_table(
        "pro_activity",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("meeting_id", sa.String(length=10), nullable=True),
        sa.Column("license", sa.String(length=10), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_pro_activity_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_pro_activity_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pro_activity")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("pro_activity", schema=None) as batch_op:
        batch_op.create_index("ix_pro_activity_account_at", ["account_id", "at"], unique=False)

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("remote_control", sa.Boolean(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("dial_out", sa.Boolean(), server_default="1", nullable=False))
        batch_op.add_column(
            sa.Column("time_zone", sa.String(length=64), server_default="UTC", nullable=False)
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("full_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("license", sa.String(length=10), server_default="pro", nullable=False))
        batch_op.add_column(
            sa.Column(
                "registration_status", sa.String(length=12), server_default="registered", nullable=False
            )
        )
        batch_op.add_column(sa.Column("registered_on", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("personal_meeting_id", sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column("personal_pin", sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column("password_hash", sa.String(length=200), nullable=True))

    # Users made before this revision: registered when created, named by their address, and given
    # a personal meeting id and PIN like every new user.
    conn = op.get_bind()
    users = sa.table(
        "users",
        sa.column("id"),
        sa.column("email"),
        sa.column("created_at"),
        sa.column("full_name"),
        sa.column("registered_on"),
        sa.column("personal_meeting_id"),
        sa.column("personal_pin"),
    )
    taken: set[str] = set()
    for user_id, email, created_at in conn.execute(sa.select(users.c.id, users.c.email, users.c.created_at)):
        meeting_id = _digits(10)
        while meeting_id in taken:
            meeting_id = _digits(10)
        taken.add(meeting_id)
        conn.execute(
            users.update()
            .where(users.c.id == user_id)
            .values(
                full_name=email,
                registered_on=created_at,
                personal_meeting_id=meeting_id,
                personal_pin=_digits(6),
            )
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("full_name", existing_type=sa.String(length=200), nullable=False)
        batch_op.alter_column("personal_meeting_id", existing_type=sa.String(length=10), nullable=False)
        batch_op.alter_column("personal_pin", existing_type=sa.String(length=10), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_users_personal_meeting_id"), ["personal_meeting_id"])


def _digits(count: int) -> str:
    """Random decimal digits, as chimebot.ids makes meeting ids and PINs (copied: migrations stay frozen)."""
    return str(secrets.randbelow(9) + 1) + "".join(str(secrets.randbelow(10)) for _ in range(count - 1))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_users_personal_meeting_id"), type_="unique")
        batch_op.drop_column("password_hash")
        batch_op.drop_column("personal_pin")
        batch_op.drop_column("personal_meeting_id")
        batch_op.drop_column("registered_on")
        batch_op.drop_column("registration_status")
        batch_op.drop_column("license")
        batch_op.drop_column("full_name")

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("time_zone")
        batch_op.drop_column("dial_out")
        batch_op.drop_column("remote_control")

    with op.batch_alter_table("pro_activity", schema=None) as batch_op:
        batch_op.drop_index("ix_pro_activity_account_at")

    op.drop_table("pro_activity")
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_index("ix_meetings_account_start")

    op.drop_table("meetings")
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invitations_user_id"))

    op.drop_table("invitations")
    op.drop_table("account_domains")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_account_id")

    op.drop_table("audit_log")
