"""Index certificates by subscriber reference: the RA lists an official's certificates by the
``ra-official:<id>/`` prefix on every official page and renewal.

Revision ID: ca_0003
Revises: ca_0002
"""

from alembic import op

revision = "ca_0003"
down_revision = "ca_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ca_certificate_subscriber_ref", "ca_certificate", ["subscriber_ref"])


def downgrade() -> None:
    op.drop_index("ix_ca_certificate_subscriber_ref", "ca_certificate")
