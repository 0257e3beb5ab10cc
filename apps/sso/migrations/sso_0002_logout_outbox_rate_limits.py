"""apps/sso: the back-channel logout outbox and the login rate-limit counters.

Revision ID: sso_0002
Revises: sso_0001
"""

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "sso_0002"
down_revision = "sso_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sso_logout_delivery",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("sso_session.id"), nullable=False),
        sa.Column("sid", sa.String(64), nullable=False),
        sa.Column("sub", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("last_attempt_at", UTCDateTime),
        sa.Column("delivered_at", UTCDateTime),
        sa.Column("last_error", sa.String(255)),
    )
    op.create_index("ix_sso_logout_delivery_session_id", "sso_logout_delivery", ["session_id"])
    op.create_index("ix_sso_logout_delivery_due", "sso_logout_delivery",
                    ["state", "next_attempt_at"])
    op.create_table(
        "sso_rate_counter",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("bucket", sa.String(32), nullable=False),
        sa.Column("subject_hash", sa.String(64), nullable=False),
        sa.Column("window_start", UTCDateTime, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.UniqueConstraint("bucket", "subject_hash", "window_start",
                            name="uq_sso_rate_counter"),
    )
    op.create_index("ix_sso_rate_counter_window_start", "sso_rate_counter", ["window_start"])


def downgrade() -> None:
    op.drop_table("sso_rate_counter")
    op.drop_table("sso_logout_delivery")
