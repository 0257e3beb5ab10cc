"""apps/exchange/web tables: the exchange pages' login sessions.

A branch of its own ("exchange_web"), so the pages' sessions and the hub's tables (branch
"exchange") change independently.

Revision ID: exchange_web_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "exchange_web_0001"
down_revision = None
branch_labels = ("exchange_web",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exchange_web_session",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("sid", sa.String(64), nullable=False),
        sa.Column("acr", sa.String(128), nullable=False),
        sa.Column("claimed_org", sa.String(128), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("lang", sa.String(8), nullable=False),
        sa.Column("client_address", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("last_seen", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime),
    )
    op.create_index("ix_exchange_web_session_sid", "exchange_web_session", ["sid"])


def downgrade() -> None:
    op.drop_index("ix_exchange_web_session_sid", "exchange_web_session")
    op.drop_table("exchange_web_session")
