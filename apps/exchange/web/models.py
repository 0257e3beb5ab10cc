"""The exchange pages' own table: their login sessions.

A session is opened by the OIDC callback after the provider's ID token was checked, and is a
server-side row keyed by the SHA-256 of a 256-bit cookie value (a database copy holds no usable
cookie). ``sid`` is the provider session that opened it, so a back-channel logout token naming
that ``sid`` ends it. The account is the RA operator the ID token's ``sub`` names; its roles
and organisation are read again on every request, so a role taken away or an account
deactivated acts at once.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime


class WebSession(Base):
    __tablename__ = "exchange_web_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    username: Mapped[str] = mapped_column(String(64), nullable=False)
    #: The provider's session id (``sid`` claim); back-channel logout ends by it.
    sid: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    acr: Mapped[str] = mapped_column(String(128), nullable=False)
    #: The organisation claim of the ID token as shown in the top bar (the official's unit).
    claimed_org: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    csrf_token: Mapped[str] = mapped_column(String(64), nullable=False)
    lang: Mapped[str] = mapped_column(String(8), nullable=False, default="zh")
    client_address: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
