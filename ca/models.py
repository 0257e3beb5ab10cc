"""Tables owned by ca/: authorities, their key generations, issued certificates, service keys.

A CA is a *name* with key generations (DESIGN.md): issuance uses the newest generation. URLs (CRL
DP, AIA) are built from the name and the generation — generation 1 keeps the plain ones — so a
key rollover changes no URL that an issued certificate names (docs/crl.md, "Key rollover").
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime


class Authority(Base):
    __tablename__ = "ca_authority"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("ca_authority.id"))
    profile: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Generation(Base):
    """One key of a CA and the certificate for it.

    The newest generation issues; every generation not yet retired signs the CRL and (through
    its own delegated signer) the OCSP answers for the certificates it issued. It is retired
    once the last of those has expired (ca/rollover.py), or at once when its key is declared
    compromised (ca/compromise.py) and everything it issued has been revoked.
    """

    __tablename__ = "ca_generation"
    __table_args__ = (UniqueConstraint("authority_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("ca_authority.id"))
    number: Mapped[int] = mapped_column(Integer)
    key_uri: Mapped[str] = mapped_column(String(512))
    # The row in the issuer's certificate store (self-issued for a root), whose status says
    # whether this generation may still issue.
    certificate_id: Mapped[int] = mapped_column(ForeignKey("ca_certificate.id"))
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    retired_reason: Mapped[str | None] = mapped_column(String(32))  # expired | compromised


class Certificate(Base):
    """Every certificate a CA signed or was about to sign.

    ``state`` is ``pending`` from the moment the serial and TBS bytes are committed until the
    signed certificate is stored (``issued``); a crash in between leaves the pending row as the
    record of what was about to be signed (Boulder's order).
    """

    __tablename__ = "ca_certificate"
    __table_args__ = (
        UniqueConstraint("authority_id", "serial", name="uq_ca_certificate_serial"),
        # Delta CRLs ask "what changed since the base CRL" (ca/crl.py, migration ca_0002).
        Index("ix_ca_certificate_status_changed", "authority_id", "status_changed_at"),
        # The RA dashboard's "expiring within N days" (migration ca_0004).
        Index("ix_ca_certificate_authority_not_after", "authority_id", "not_after"),
        # Retirement of a key generation asks for its unexpired certificates (ca_0005).
        Index("ix_ca_certificate_generation_not_after", "generation_id", "not_after"),
        # /metrics: pending reservations per CA and the oldest one (ca_0006), pending rows only.
        Index("ix_ca_certificate_pending", "authority_id", "created_at",
              sqlite_where=text("state = 'pending'"), postgresql_where=text("state = 'pending'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("ca_authority.id"), index=True)
    # The issuer generation that signed it (not a foreign key: generations point back here).
    generation_id: Mapped[int | None] = mapped_column(Integer)
    # Lower-case hex without leading zeros: up to 20 octets fit no SQL integer type.
    serial: Mapped[str] = mapped_column(String(40), index=True)
    profile: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    key_type: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))  # pending | issued
    tbs_der: Mapped[bytes] = mapped_column(LargeBinary)
    certificate_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="good")  # good | revoked | hold
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    status_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    requested_by: Mapped[str] = mapped_column(String(128))
    subscriber_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    issued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ServiceKey(Base):
    """A key that speaks for a CA without being a CA: its OCSP signer, the TSA."""

    __tablename__ = "ca_service_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(32))  # ocsp-signer | tsa
    authority_id: Mapped[int] = mapped_column(ForeignKey("ca_authority.id"))
    key_uri: Mapped[str] = mapped_column(String(512))
    certificate_id: Mapped[int] = mapped_column(ForeignKey("ca_certificate.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class CrlCounter(Base):
    """The CRL number space of one CA (RFC 5280 §5.2.3), shared by its full and delta CRLs.

    Publication locks this row (SELECT ... FOR UPDATE) for the whole build, so numbers are
    never reused — across restarts and across processes on one PostgreSQL — and a higher number
    always means a later thisUpdate and newer content.
    """

    __tablename__ = "ca_crl_counter"

    authority_id: Mapped[int] = mapped_column(ForeignKey("ca_authority.id"), primary_key=True)
    last_number: Mapped[int] = mapped_column(BigInteger)


class PublishedCrl(Base):
    """A signed CRL as served at /crl/<ca>.crl (full) or /crl/<ca>-delta.crl (delta) for key
    generation 1, /crl/<ca>/g<N>.crl and /crl/<ca>/g<N>-delta.crl for generation N ≥ 2."""

    __tablename__ = "ca_crl"
    __table_args__ = (
        UniqueConstraint("authority_id", "number", name="uq_ca_crl_number"),
        Index("ix_ca_crl_newest", "authority_id", "is_delta", "number"),
        Index("ix_ca_crl_generation_newest", "authority_id", "generation", "is_delta",
              "number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("ca_authority.id"))
    # The key generation (number) that signed it and whose certificates it lists.
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    number: Mapped[int] = mapped_column(BigInteger)
    is_delta: Mapped[bool] = mapped_column(Boolean)
    # The full CRL a delta refers to (its deltaCRLIndicator); None on full CRLs.
    base_number: Mapped[int | None] = mapped_column(BigInteger)
    this_update: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    next_update: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    entries: Mapped[int] = mapped_column(Integer)
    der: Mapped[bytes] = mapped_column(LargeBinary)
