"""ca/ tables: authorities, key generations, certificates, service keys.

Revision ID: ca_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "ca_0001"
down_revision = None
branch_labels = ("ca",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ca_authority",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("ca_authority.id")),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "ca_certificate",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("authority_id", sa.Integer, sa.ForeignKey("ca_authority.id"), nullable=False),
        sa.Column("generation_id", sa.Integer),
        sa.Column("serial", sa.String(40), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("tbs_der", sa.LargeBinary, nullable=False),
        sa.Column("certificate_der", sa.LargeBinary),
        sa.Column("not_before", UTCDateTime, nullable=False),
        sa.Column("not_after", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revoked_at", UTCDateTime),
        sa.Column("revocation_reason", sa.String(32)),
        sa.Column("status_changed_at", UTCDateTime),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("subscriber_ref", sa.String(128)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("issued_at", UTCDateTime),
        sa.UniqueConstraint("authority_id", "serial", name="uq_ca_certificate_serial"),
    )
    op.create_table(
        "ca_generation",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("authority_id", sa.Integer, sa.ForeignKey("ca_authority.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("key_uri", sa.String(512), nullable=False),
        sa.Column("certificate_id", sa.Integer, sa.ForeignKey("ca_certificate.id"), nullable=False),
        sa.Column("certificate_der", sa.LargeBinary, nullable=False),
        sa.Column("not_before", UTCDateTime, nullable=False),
        sa.Column("not_after", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("authority_id", "number"),
    )
    op.create_index("ix_ca_certificate_serial", "ca_certificate", ["serial"])
    op.create_index("ix_ca_certificate_authority_id", "ca_certificate", ["authority_id"])
    op.create_table(
        "ca_service_key",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("authority_id", sa.Integer, sa.ForeignKey("ca_authority.id"), nullable=False),
        sa.Column("key_uri", sa.String(512), nullable=False),
        sa.Column("certificate_id", sa.Integer, sa.ForeignKey("ca_certificate.id"), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("ca_service_key", "ca_certificate", "ca_generation", "ca_authority"):
        op.drop_table(table)
