"""The table ocsp/ owns: pre-signed answers, so a restarted or added responder rebuilds its
memory from the database instead of re-signing everything (DESIGN.md, Revocation and time)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime


class PresignedResponse(Base):
    """One signed OCSPResponse for one (CertID hash algorithm, issuer generation, serial).

    ``status``/``revoked_at``/``revocation_reason`` are what the answer says, so a responder can
    tell whether a stored answer still matches the CA's store without parsing it.
    """

    __tablename__ = "ocsp_response"
    __table_args__ = (
        UniqueConstraint("hash_algorithm", "issuer_key_hash", "serial",
                         name="uq_ocsp_response_certid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ca: Mapped[str] = mapped_column(String(64), index=True)
    generation: Mapped[int] = mapped_column(Integer)
    # Lower-case hex without leading zeros, as ca/ stores it.
    serial: Mapped[str] = mapped_column(String(40), index=True)
    hash_algorithm: Mapped[str] = mapped_column(String(16))  # sha1 | sha256
    issuer_name_hash: Mapped[bytes] = mapped_column(LargeBinary)
    issuer_key_hash: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))  # good | revoked | hold (answered revoked)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    this_update: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    next_update: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    response_der: Mapped[bytes] = mapped_column(LargeBinary)
    signer_serial: Mapped[str] = mapped_column(String(40))
