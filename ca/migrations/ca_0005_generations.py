"""Key generations that retire, and CRLs per generation (issuing-CA key rollover).

A generation is retired once the last certificate it signed has expired: it then stops signing
CRLs and OCSP answers. Each published CRL names the generation that signed it, since after a
rollover every generation publishes its own CRL at its own URL (docs/crl.md, "Key rollover").
Rows written before this revision belong to generation 1, the only one there was.

Revision ID: ca_0005
Revises: ca_0004
"""

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "ca_0005"
down_revision = "ca_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ca_generation", sa.Column("retired_at", UTCDateTime, nullable=True))
    op.add_column("ca_generation", sa.Column("retired_reason", sa.String(32), nullable=True))
    op.add_column("ca_crl", sa.Column("generation", sa.Integer, nullable=False,
                                      server_default="1"))
    op.create_index("ix_ca_crl_generation_newest", "ca_crl",
                    ["authority_id", "generation", "is_delta", "number"])
    # "Does this generation still have unexpired certificates?" (retirement, OCSP, CRLs).
    op.create_index("ix_ca_certificate_generation_not_after", "ca_certificate",
                    ["generation_id", "not_after"])


def downgrade() -> None:
    op.drop_index("ix_ca_certificate_generation_not_after", "ca_certificate")
    op.drop_index("ix_ca_crl_generation_newest", "ca_crl")
    with op.batch_alter_table("ca_crl") as batch:
        batch.drop_column("generation")
    with op.batch_alter_table("ca_generation") as batch:
        batch.drop_column("retired_reason")
        batch.drop_column("retired_at")
