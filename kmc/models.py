"""kmc/ tables: the master key record, escrowed keys, recovery requests and their approvals.

Rows hold only public or wrapped values: a public key, a blob wrapped under the master key
(which never leaves the HSM), fingerprints, certificate references. Nothing here decrypts
without the HSM (tests/kmc/test_escrow.py scans every row for the key bytes). Certificates are
referenced by (CA name, serial), not by foreign key: ca/ owns its tables.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime

MASTER_STATES = ("active", "retired")
OWNER_KINDS = ("official", "organisation")
#: generated: wrapped and recorded, certificate not yet issued; escrowed: certified, waiting for
#: its first delivery; delivered: in the owner's token (or the server HSM for organisations).
ESCROW_STATES = ("generated", "escrowed", "delivered")
RECOVERY_KINDS = ("user", "authorised")
RECOVERY_STATES = ("submitted", "approved", "rejected", "released")


class MasterKey(Base):
    __tablename__ = "kmc_master_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_uri: Mapped[str] = mapped_column(String(512), nullable=False, unique=True)
    mechanism: Mapped[str] = mapped_column(String(64), nullable=False)
    #: The master public key for a file store (RSA); None on an HSM (AES).
    public_key_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class Escrow(Base):
    __tablename__ = "kmc_escrow"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(16), nullable=False)
    #: "ra-official:<id>" or "ra-org:<code>": who the key belongs to.
    owner_ref: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    #: The CA's subscriber_ref for the certificate ("ra-official:<id>/request:<id>").
    subscriber_ref: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    organisation_code: Mapped[str] = mapped_column(String(32), nullable=False)
    #: The owner's organisation path when escrowed ("/630000/630100/"): the scope checks' input.
    organisation_path: Mapped[str] = mapped_column(String(512), nullable=False, index=True)
    profile: Mapped[str] = mapped_column(String(64), nullable=False)
    key_type: Mapped[str] = mapped_column(String(16), nullable=False)
    public_key_der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    public_key_sha256: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    master_key_id: Mapped[int] = mapped_column(ForeignKey("kmc_master_key.id"), nullable=False)
    wrap_mechanism: Mapped[str] = mapped_column(String(64), nullable=False)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    certificate_ca: Mapped[str | None] = mapped_column(String(64))
    certificate_serial: Mapped[str | None] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    deliveries: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    __table_args__ = (UniqueConstraint("certificate_ca", "certificate_serial",
                                       name="uq_kmc_escrow_certificate"),)


class Recovery(Base):
    __tablename__ = "kmc_recovery"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    escrow_id: Mapped[int] = mapped_column(ForeignKey("kmc_escrow.id"), nullable=False,
                                           index=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    #: Why (user: what happened to the USB key; authorised: the legal basis, case number).
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    #: The target token's transport public key (DER SPKI) and its SHA-256: approvers approve
    #: the release of this key to *that* token, nothing else.
    transport_key_der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    transport_key_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    required_approvals: Mapped[int] = mapped_column(Integer, nullable=False)
    submitted_by: Mapped[str] = mapped_column(String(64), nullable=False)
    submitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decision_comment: Mapped[str | None] = mapped_column(Text)
    released_by: Mapped[str | None] = mapped_column(String(64))
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class RecoveryApproval(Base):
    __tablename__ = "kmc_recovery_approval"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recovery_id: Mapped[int] = mapped_column(ForeignKey("kmc_recovery.id"), nullable=False)
    operator: Mapped[str] = mapped_column(String(64), nullable=False)
    comment: Mapped[str] = mapped_column(Text, nullable=False)
    approved_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (UniqueConstraint("recovery_id", "operator",
                                       name="uq_kmc_recovery_approval"),)
