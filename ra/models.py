"""ra/ tables: organisations, officials, operators and roles, certificate requests, approvals.

ORM rows stay inside ra/: services return the plain dataclasses of :mod:`ra.records`
(STYLE.md lesson 1). The organisation tree keeps a materialised ``path`` ("/630000/630100/")
next to the parent link, so "this organisation and everything below it" — the scope of an RA
operator — is one indexed prefix match instead of a recursive query per page of officials.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime

ORG_KINDS = ("province", "prefecture", "county", "department")
OFFICIAL_STATUSES = ("active", "left")
REQUEST_STATES = ("submitted", "approved", "rejected", "issued", "done")


class Organisation(Base):
    __tablename__ = "ra_organisation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("ra_organisation.id"))
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    path: Mapped[str] = mapped_column(String(512), nullable=False, index=True)


class Official(Base):
    __tablename__ = "ra_official"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identifier: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("ra_organisation.id"),
                                                 nullable=False, index=True)
    position: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    unit: Mapped[str | None] = mapped_column(String(64))
    contact: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class Operator(Base):
    __tablename__ = "ra_operator"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    display_name: Mapped[str] = mapped_column(String(64), nullable=False)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("ra_organisation.id"),
                                                 nullable=False)
    # Set for accounts holding the self-service "official" role: whose record they are.
    official_id: Mapped[int | None] = mapped_column(ForeignKey("ra_official.id"))
    active: Mapped[bool] = mapped_column(nullable=False, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    #: The first account, created by the local bootstrap before any operator existed: the one
    #: that keeps password + TOTP login when ``[ra] password_login = "bootstrap"``.
    bootstrap: Mapped[bool] = mapped_column(nullable=False, default=False,
                                            server_default=false())

    __table_args__ = (Index("uq_ra_operator_bootstrap", "bootstrap", unique=True,
                            sqlite_where=text("bootstrap"), postgresql_where=text("bootstrap")),)


class RoleAssignment(Base):
    """A role held (``active``) or granted and awaiting a second operator (``pending``)."""

    __tablename__ = "ra_role_assignment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("ra_operator.id"), nullable=False,
                                             index=True)
    role: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    granted_by: Mapped[str] = mapped_column(String(64), nullable=False)
    approved_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (UniqueConstraint("operator_id", "role", name="uq_ra_role_assignment"),)


class Request(Base):
    __tablename__ = "ra_request"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    official_id: Mapped[int] = mapped_column(ForeignKey("ra_official.id"), nullable=False,
                                             index=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    ca: Mapped[str] = mapped_column(String(64), nullable=False)
    profile: Mapped[str] = mapped_column(String(64), nullable=False)
    csr: Mapped[bytes | None] = mapped_column(LargeBinary)
    reason: Mapped[str | None] = mapped_column(String(32))  # RFC 5280 reason (revocation)
    required_approvals: Mapped[int] = mapped_column(Integer, nullable=False)
    submitted_by: Mapped[str] = mapped_column(String(64), nullable=False)
    submitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    submit_comment: Mapped[str] = mapped_column(Text, nullable=False, default="")
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decision_comment: Mapped[str | None] = mapped_column(Text)
    executed_by: Mapped[str | None] = mapped_column(String(64))
    executed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    encryption_status: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)


class RequestCertificate(Base):
    """A certificate a request names: ``target`` (to revoke/suspend/release) or ``issued``."""

    __tablename__ = "ra_request_certificate"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("ra_request.id"), nullable=False,
                                            index=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    ca: Mapped[str] = mapped_column(String(64), nullable=False)
    serial: Mapped[str] = mapped_column(String(40), nullable=False)


class Approval(Base):
    __tablename__ = "ra_approval"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("ra_request.id"), nullable=False,
                                            index=True)
    operator: Mapped[str] = mapped_column(String(64), nullable=False)
    comment: Mapped[str] = mapped_column(Text, nullable=False, default="")
    approved_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (UniqueConstraint("request_id", "operator", name="uq_ra_approval"),)


class Credential(Base):
    """An operator's password (scrypt) and TOTP seed, and the failed-login counter.

    The TOTP seed is stored sealed (AES-GCM under the installation's RA secret, ra/sealing.py),
    so a copy of the database alone does not yield working second factors.
    """

    __tablename__ = "ra_credential"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("ra_operator.id"), nullable=False,
                                             unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(256))
    password_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    totp_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: The last TOTP time step accepted: a code is never accepted twice (RFC 6238 §5.2).
    totp_last_step: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failed_logins: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class WebSession(Base):
    """A logged-in browser. Only the SHA-256 of the cookie value is stored."""

    __tablename__ = "ra_web_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("ra_operator.id"), nullable=False,
                                             index=True)
    method: Mapped[str] = mapped_column(String(32), nullable=False)
    acr: Mapped[str] = mapped_column(String(128), nullable=False)
    csrf_token: Mapped[str] = mapped_column(String(64), nullable=False)
    lang: Mapped[str] = mapped_column(String(8), nullable=False, default="zh")
    client: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A bearer token for an API client acting as an operator. Only its SHA-256 is stored."""

    __tablename__ = "ra_api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    operator_id: Mapped[int] = mapped_column(ForeignKey("ra_operator.id"), nullable=False,
                                             index=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class EnrollmentCode(Base):
    """A one-time code an RA operator hands an official for `govpki token enroll`.

    Redeeming it (with a CSR) opens the request; afterwards the same code only reads that
    request's outcome, until it expires. Only the SHA-256 of the code is stored.
    """

    __tablename__ = "ra_enrollment_code"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    official_id: Mapped[int] = mapped_column(ForeignKey("ra_official.id"), nullable=False,
                                             index=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("ra_request.id"))
