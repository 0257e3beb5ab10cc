"""ocsp/ table: pre-signed responses.

Revision ID: ocsp_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "ocsp_0001"
down_revision = None
branch_labels = ("ocsp",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ocsp_response",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ca", sa.String(64), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("serial", sa.String(40), nullable=False),
        sa.Column("hash_algorithm", sa.String(16), nullable=False),
        sa.Column("issuer_name_hash", sa.LargeBinary, nullable=False),
        sa.Column("issuer_key_hash", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revoked_at", UTCDateTime),
        sa.Column("revocation_reason", sa.String(32)),
        sa.Column("this_update", UTCDateTime, nullable=False),
        sa.Column("next_update", UTCDateTime, nullable=False),
        sa.Column("response_der", sa.LargeBinary, nullable=False),
        sa.Column("signer_serial", sa.String(40), nullable=False),
        sa.UniqueConstraint("hash_algorithm", "issuer_key_hash", "serial",
                            name="uq_ocsp_response_certid"),
    )
    op.create_index("ix_ocsp_response_ca", "ocsp_response", ["ca"])
    op.create_index("ix_ocsp_response_serial", "ocsp_response", ["serial"])
    op.create_index("ix_ocsp_response_next_update", "ocsp_response", ["next_update"])


def downgrade() -> None:
    op.drop_table("ocsp_response")
