"""kmc/ tables: master key record, escrowed keys, recovery requests and approvals.

Revision ID: kmc_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "kmc_0001"
down_revision = None
branch_labels = ("kmc",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kmc_master_key",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key_uri", sa.String(512), nullable=False, unique=True),
        sa.Column("mechanism", sa.String(64), nullable=False),
        sa.Column("public_key_der", sa.LargeBinary),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "kmc_escrow",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner_kind", sa.String(16), nullable=False),
        sa.Column("owner_ref", sa.String(128), nullable=False),
        sa.Column("subscriber_ref", sa.String(128), nullable=False),
        sa.Column("organisation_code", sa.String(32), nullable=False),
        sa.Column("organisation_path", sa.String(512), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("public_key_der", sa.LargeBinary, nullable=False),
        sa.Column("public_key_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("master_key_id", sa.Integer, sa.ForeignKey("kmc_master_key.id"),
                  nullable=False),
        sa.Column("wrap_mechanism", sa.String(64), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("certificate_ca", sa.String(64)),
        sa.Column("certificate_serial", sa.String(40)),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("delivered_at", UTCDateTime),
        sa.Column("deliveries", sa.Integer, nullable=False, server_default="0"),
        sa.UniqueConstraint("certificate_ca", "certificate_serial",
                            name="uq_kmc_escrow_certificate"),
    )
    op.create_index("ix_kmc_escrow_owner_ref", "kmc_escrow", ["owner_ref"])
    op.create_index("ix_kmc_escrow_subscriber_ref", "kmc_escrow", ["subscriber_ref"])
    op.create_index("ix_kmc_escrow_organisation_path", "kmc_escrow", ["organisation_path"])
    op.create_table(
        "kmc_recovery",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("escrow_id", sa.Integer, sa.ForeignKey("kmc_escrow.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("transport_key_der", sa.LargeBinary, nullable=False),
        sa.Column("transport_key_sha256", sa.String(64), nullable=False),
        sa.Column("required_approvals", sa.Integer, nullable=False),
        sa.Column("submitted_by", sa.String(64), nullable=False),
        sa.Column("submitted_at", UTCDateTime, nullable=False),
        sa.Column("decided_by", sa.String(64)),
        sa.Column("decided_at", UTCDateTime),
        sa.Column("decision_comment", sa.Text),
        sa.Column("released_by", sa.String(64)),
        sa.Column("released_at", UTCDateTime),
    )
    op.create_index("ix_kmc_recovery_escrow_id", "kmc_recovery", ["escrow_id"])
    op.create_table(
        "kmc_recovery_approval",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("recovery_id", sa.Integer, sa.ForeignKey("kmc_recovery.id"),
                  nullable=False),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("approved_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("recovery_id", "operator", name="uq_kmc_recovery_approval"),
    )


def downgrade() -> None:
    op.drop_table("kmc_recovery_approval")
    op.drop_table("kmc_recovery")
    op.drop_table("kmc_escrow")
    op.drop_table("kmc_master_key")
