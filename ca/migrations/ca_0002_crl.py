"""ca/ tables for CRL publication: the CRL number counter per CA and the published CRLs.

Revision ID: ca_0002
Revises: ca_0001
"""

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "ca_0002"
down_revision = "ca_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ca_crl_counter",
        sa.Column("authority_id", sa.Integer, sa.ForeignKey("ca_authority.id"),
                  primary_key=True),
        sa.Column("last_number", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "ca_crl",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("authority_id", sa.Integer, sa.ForeignKey("ca_authority.id"), nullable=False),
        sa.Column("number", sa.BigInteger, nullable=False),
        sa.Column("is_delta", sa.Boolean, nullable=False),
        sa.Column("base_number", sa.BigInteger),
        sa.Column("this_update", UTCDateTime, nullable=False),
        sa.Column("next_update", UTCDateTime, nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("authority_id", "number", name="uq_ca_crl_number"),
    )
    op.create_index("ix_ca_crl_newest", "ca_crl", ["authority_id", "is_delta", "number"])
    op.create_index("ix_ca_certificate_status_changed", "ca_certificate",
                    ["authority_id", "status_changed_at"])


def downgrade() -> None:
    op.drop_index("ix_ca_certificate_status_changed", "ca_certificate")
    op.drop_index("ix_ca_crl_newest", "ca_crl")
    op.drop_table("ca_crl")
    op.drop_table("ca_crl_counter")
