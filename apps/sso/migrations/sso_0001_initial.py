"""apps/sso tables: clients, signing keys, provider sessions, codes, tokens, challenges.

Revision ID: sso_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "sso_0001"
down_revision = None
branch_labels = ("sso",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sso_client",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("client_id", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("secret_hash", sa.String(64)),
        sa.Column("redirect_uris", sa.Text, nullable=False),
        sa.Column("post_logout_redirect_uris", sa.Text, nullable=False),
        sa.Column("backchannel_logout_uri", sa.String(512)),
        sa.Column("initiate_login_uri", sa.String(512)),
        sa.Column("scope", sa.String(256), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "sso_signing_key",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kid", sa.String(64), nullable=False, unique=True),
        sa.Column("key_uri", sa.String(512), nullable=False),
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("public_jwk", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("retired_at", UTCDateTime),
    )
    op.create_index("ix_sso_signing_key_status", "sso_signing_key", ["status"])
    op.create_table(
        "sso_session",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sid", sa.String(64), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("operator_id", sa.Integer, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("acr", sa.String(128), nullable=False),
        sa.Column("cert_ca", sa.String(64)),
        sa.Column("cert_serial", sa.String(40)),
        sa.Column("client_address", sa.String(64), nullable=False),
        sa.Column("lang", sa.String(8), nullable=False),
        sa.Column("auth_time", UTCDateTime, nullable=False),
        sa.Column("last_seen", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime),
        sa.Column("ended_reason", sa.String(32)),
    )
    op.create_index("ix_sso_session_operator_id", "sso_session", ["operator_id"])
    op.create_table(
        "sso_session_client",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("sso_session.id"), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("first_at", UTCDateTime, nullable=False),
        sa.Column("notified_at", UTCDateTime),
        sa.Column("notify_error", sa.String(255)),
        sa.UniqueConstraint("session_id", "client_id", name="uq_sso_session_client"),
    )
    op.create_index("ix_sso_session_client_session_id", "sso_session_client", ["session_id"])
    op.create_table(
        "sso_code",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("sso_session.id"), nullable=False),
        sa.Column("redirect_uri", sa.String(512), nullable=False),
        sa.Column("scope", sa.String(256), nullable=False),
        sa.Column("nonce", sa.String(255)),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("code_challenge_method", sa.String(8), nullable=False),
        sa.Column("claims_request", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("used_at", UTCDateTime),
    )
    op.create_table(
        "sso_access_token",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("sso_session.id"), nullable=False),
        sa.Column("code_id", sa.Integer, sa.ForeignKey("sso_code.id")),
        sa.Column("scope", sa.String(256), nullable=False),
        sa.Column("issued_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
    )
    op.create_index("ix_sso_access_token_session_id", "sso_access_token", ["session_id"])
    op.create_index("ix_sso_access_token_code_id", "sso_access_token", ["code_id"])
    op.create_table(
        "sso_challenge",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("browser_hash", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("client_address", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("answered_at", UTCDateTime),
        sa.Column("operator_id", sa.Integer),
        sa.Column("cert_ca", sa.String(64)),
        sa.Column("cert_serial", sa.String(40)),
        sa.Column("failure", sa.String(255)),
    )
    op.create_index("ix_sso_challenge_browser_hash", "sso_challenge", ["browser_hash"])
    op.create_table(
        "sso_ra_client_session",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sid", sa.String(64), nullable=False),
        sa.Column("ra_token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_sso_ra_client_session_sid", "sso_ra_client_session", ["sid"])


def downgrade() -> None:
    for table in ("sso_ra_client_session", "sso_challenge", "sso_access_token", "sso_code",
                  "sso_session_client", "sso_session", "sso_signing_key", "sso_client"):
        op.drop_table(table)
