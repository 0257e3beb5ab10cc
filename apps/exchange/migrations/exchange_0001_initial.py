"""apps/exchange tables: organisations' keys, packages, deliveries, receipts.

Revision ID: exchange_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "exchange_0001"
down_revision = None
branch_labels = ("exchange",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exchange_org_key",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("org_code", sa.String(32), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("key_uri", sa.String(512)),
        sa.Column("certificate_ca", sa.String(64), nullable=False),
        sa.Column("certificate_serial", sa.String(40), nullable=False),
        sa.Column("escrow_id", sa.Integer),
        sa.Column("protection", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("certificate_ca", "certificate_serial",
                            name="uq_exchange_org_key_certificate"),
    )
    op.create_index("ix_exchange_org_key_org_code", "exchange_org_key", ["org_code"])
    op.create_table(
        "exchange_package",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_id", sa.String(36), nullable=False, unique=True),
        sa.Column("content_digest", sa.String(64), nullable=False),
        sa.Column("envelope_digest", sa.String(64), nullable=False),
        sa.Column("sender_org", sa.String(32), nullable=False),
        sa.Column("sender_name", sa.String(128), nullable=False),
        sa.Column("document_number", sa.String(128), nullable=False),
        sa.Column("title", sa.String(1000), nullable=False),
        sa.Column("document_date", sa.Date, nullable=False),
        sa.Column("urgency", sa.String(16), nullable=False),
        sa.Column("classification", sa.String(16), nullable=False),
        sa.Column("sent_at", UTCDateTime, nullable=False),
        sa.Column("deadline", UTCDateTime, nullable=False),
        sa.Column("signed_header", sa.LargeBinary, nullable=False),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("seal_ca", sa.String(64), nullable=False),
        sa.Column("seal_serial", sa.String(40), nullable=False),
        sa.Column("submitted_by", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("sender_org", "document_number", name="uq_exchange_package_number"),
    )
    op.create_index("ix_exchange_package_sent_at", "exchange_package", ["sent_at"])
    op.create_table(
        "exchange_delivery",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("package_id", sa.Integer, sa.ForeignKey("exchange_package.id"),
                  nullable=False),
        sa.Column("recipient_org", sa.String(32), nullable=False),
        sa.Column("recipient_name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("transport_state", sa.String(16), nullable=False),
        sa.Column("business_state", sa.String(16), nullable=False),
        sa.Column("fetch_count", sa.Integer, nullable=False),
        sa.Column("fetched_at", UTCDateTime),
        sa.Column("delivered_at", UTCDateTime),
        sa.Column("business_at", UTCDateTime),
        sa.Column("return_reason", sa.Text),
        sa.UniqueConstraint("package_id", "recipient_org", name="uq_exchange_delivery_recipient"),
    )
    op.create_index("ix_exchange_delivery_inbox", "exchange_delivery",
                    ["recipient_org", "transport_state"])
    op.create_table(
        "exchange_receipt",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("delivery_id", sa.Integer, sa.ForeignKey("exchange_delivery.id"),
                  nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ess_receipt", sa.LargeBinary, nullable=False),
        sa.Column("statement", sa.LargeBinary, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("signer_ca", sa.String(64), nullable=False),
        sa.Column("signer_serial", sa.String(40), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("delivery_id", "kind", name="uq_exchange_receipt_kind"),
    )


def downgrade() -> None:
    op.drop_table("exchange_receipt")
    op.drop_index("ix_exchange_delivery_inbox", table_name="exchange_delivery")
    op.drop_table("exchange_delivery")
    op.drop_index("ix_exchange_package_sent_at", table_name="exchange_package")
    op.drop_table("exchange_package")
    op.drop_index("ix_exchange_org_key_org_code", table_name="exchange_org_key")
    op.drop_table("exchange_org_key")
