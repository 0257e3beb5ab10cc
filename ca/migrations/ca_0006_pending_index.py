"""A partial index over pending reservations, for the metrics that alert on them.

A reservation row (``state = 'pending'``) lives for milliseconds in normal operation: it is
committed before the key signs and turned into ``issued`` with the certificate. One that stays
means a process died between the two (Boulder's order), and an operator must look at it
(docs/OPERATIONS.md, *Pending reservations*). /metrics asks for the count and the oldest one per
CA on every scrape; the index holds only the pending rows, so that stays cheap however many
certificates a CA has issued.

Revision ID: ca_0006
Revises: ca_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "ca_0006"
down_revision = "ca_0005"
branch_labels = None
depends_on = None

_PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    op.create_index("ix_ca_certificate_pending", "ca_certificate", ["authority_id", "created_at"],
                    sqlite_where=_PENDING, postgresql_where=_PENDING)


def downgrade() -> None:
    op.drop_index("ix_ca_certificate_pending", table_name="ca_certificate")
