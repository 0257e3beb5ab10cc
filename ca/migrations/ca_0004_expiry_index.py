"""Index certificates by (authority, not_after): the RA dashboard asks for the certificates
that expire within a window, which must not scan every unexpired certificate of a CA.

Revision ID: ca_0004
Revises: ca_0003
"""

from alembic import op

revision = "ca_0004"
down_revision = "ca_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ca_certificate_authority_not_after", "ca_certificate",
                    ["authority_id", "not_after"])


def downgrade() -> None:
    op.drop_index("ix_ca_certificate_authority_not_after", "ca_certificate")
