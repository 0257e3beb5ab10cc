"""ra/ tables: organisations, officials, operators, roles, requests, approvals.

Revision ID: ra_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "ra_0001"
down_revision = None
branch_labels = ("ra",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ra_organisation",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.String(32), nullable=False, unique=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("ra_organisation.id")),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
    )
    op.create_index("ix_ra_organisation_path", "ra_organisation", ["path"])
    op.create_table(
        "ra_official",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("identifier", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("organisation_id", sa.Integer, sa.ForeignKey("ra_organisation.id"),
                  nullable=False),
        sa.Column("position", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(64)),
        sa.Column("contact", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_ra_official_name", "ra_official", ["name"])
    op.create_index("ix_ra_official_organisation_id", "ra_official", ["organisation_id"])
    op.create_table(
        "ra_operator",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("display_name", sa.String(64), nullable=False),
        sa.Column("organisation_id", sa.Integer, sa.ForeignKey("ra_organisation.id"),
                  nullable=False),
        sa.Column("official_id", sa.Integer, sa.ForeignKey("ra_official.id")),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "ra_role_assignment",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("operator_id", sa.Integer, sa.ForeignKey("ra_operator.id"), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("granted_by", sa.String(64), nullable=False),
        sa.Column("approved_by", sa.String(64)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("operator_id", "role", name="uq_ra_role_assignment"),
    )
    op.create_index("ix_ra_role_assignment_operator_id", "ra_role_assignment", ["operator_id"])
    op.create_table(
        "ra_request",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("official_id", sa.Integer, sa.ForeignKey("ra_official.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ca", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("csr", sa.LargeBinary),
        sa.Column("reason", sa.String(32)),
        sa.Column("required_approvals", sa.Integer, nullable=False),
        sa.Column("submitted_by", sa.String(64), nullable=False),
        sa.Column("submitted_at", UTCDateTime, nullable=False),
        sa.Column("submit_comment", sa.Text, nullable=False),
        sa.Column("decided_by", sa.String(64)),
        sa.Column("decided_at", UTCDateTime),
        sa.Column("decision_comment", sa.Text),
        sa.Column("executed_by", sa.String(64)),
        sa.Column("executed_at", UTCDateTime),
        sa.Column("encryption_status", sa.String(32)),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_ra_request_official_id", "ra_request", ["official_id"])
    op.create_index("ix_ra_request_state", "ra_request", ["state"])
    op.create_table(
        "ra_request_certificate",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("ra_request.id"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("ca", sa.String(64), nullable=False),
        sa.Column("serial", sa.String(40), nullable=False),
    )
    op.create_index("ix_ra_request_certificate_request_id", "ra_request_certificate",
                    ["request_id"])
    op.create_table(
        "ra_approval",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("ra_request.id"), nullable=False),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("approved_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("request_id", "operator", name="uq_ra_approval"),
    )
    op.create_index("ix_ra_approval_request_id", "ra_approval", ["request_id"])


def downgrade() -> None:
    for table in ("ra_approval", "ra_request_certificate", "ra_request", "ra_role_assignment",
                  "ra_operator", "ra_official", "ra_organisation"):
        op.drop_table(table)
