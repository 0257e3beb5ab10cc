"""ra/ authentication: operator credentials, web sessions, API tokens, enrollment codes.

Revision ID: ra_0002
Revises: ra_0001
"""

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "ra_0002"
down_revision = "ra_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ra_credential",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("operator_id", sa.Integer, sa.ForeignKey("ra_operator.id"), nullable=False,
                  unique=True),
        sa.Column("password_hash", sa.String(256)),
        sa.Column("password_changed_at", UTCDateTime),
        sa.Column("totp_sealed", sa.LargeBinary),
        sa.Column("totp_last_step", sa.Integer, nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False),
        sa.Column("locked_until", UTCDateTime),
    )
    op.create_table(
        "ra_web_session",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("operator_id", sa.Integer, sa.ForeignKey("ra_operator.id"), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("acr", sa.String(128), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("lang", sa.String(8), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("last_seen", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime),
    )
    op.create_index("ix_ra_web_session_operator_id", "ra_web_session", ["operator_id"])
    op.create_table(
        "ra_api_token",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("operator_id", sa.Integer, sa.ForeignKey("ra_operator.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
        sa.Column("last_used_at", UTCDateTime),
    )
    op.create_index("ix_ra_api_token_operator_id", "ra_api_token", ["operator_id"])
    op.create_table(
        "ra_enrollment_code",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("official_id", sa.Integer, sa.ForeignKey("ra_official.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("used_at", UTCDateTime),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("ra_request.id")),
    )
    op.create_index("ix_ra_enrollment_code_official_id", "ra_enrollment_code", ["official_id"])


def downgrade() -> None:
    for table in ("ra_enrollment_code", "ra_api_token", "ra_web_session", "ra_credential"):
        op.drop_table(table)
