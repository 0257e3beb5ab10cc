"""ra/: mark the bootstrap administrator (the one account that keeps password login).

The first operator ever created is the bootstrap (ra.operators.add_operator refuses a local
bootstrap once any operator exists), so an existing installation's bootstrap account is the
oldest one whose first role was granted by "bootstrap". A partial unique index keeps it the
only one.

Revision ID: ra_0003
Revises: ra_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "ra_0003"
down_revision = "ra_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ra_operator", sa.Column("bootstrap", sa.Boolean, nullable=False,
                                           server_default=sa.false()))
    op.execute(sa.text(
        "UPDATE ra_operator SET bootstrap = :yes WHERE id = (SELECT min(id) FROM ra_operator) "
        "AND id IN (SELECT operator_id FROM ra_role_assignment "
        "WHERE granted_by = 'bootstrap' AND role = 'ca-admin')").bindparams(yes=True))
    op.create_index("uq_ra_operator_bootstrap", "ra_operator", ["bootstrap"], unique=True,
                    sqlite_where=sa.text("bootstrap"), postgresql_where=sa.text("bootstrap"))


def downgrade() -> None:
    op.drop_index("uq_ra_operator_bootstrap", table_name="ra_operator")
    with op.batch_alter_table("ra_operator") as batch:
        batch.drop_column("bootstrap")
