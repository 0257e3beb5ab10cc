"""apps/sso tables: clients, signing keys, provider sessions, codes, tokens, login challenges.

Secrets are stored only as SHA-256 digests (client secrets, session cookies, authorization
codes, access tokens, challenge codes): each is 256 random bits (challenge codes fewer, but
they live two minutes and are bound to one browser), so a plain hash is as good as a slow one
and lets a lookup be one indexed equality. A copy of the database holds nothing usable.

Operators are referred to by id and name without a foreign key into ra's tables: apps/sso's
migration branch stands on its own, and an operator is never deleted (only deactivated).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime


class Client(Base):
    """A relying application (办公应用) registered by a ca-admin."""

    __tablename__ = "sso_client"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    #: None for a public client (PKCE only, token_endpoint_auth_method "none").
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    #: JSON lists of exact URIs.
    redirect_uris: Mapped[str] = mapped_column(Text, nullable=False)
    post_logout_redirect_uris: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(512))
    #: Where the portal sends a user to open the application (OIDC Core §4 initiate_login_uri).
    initiate_login_uri: Mapped[str | None] = mapped_column(String(512))
    scope: Mapped[str] = mapped_column(String(256), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class SigningKey(Base):
    """An ID-token key: ``current`` signs, ``previous`` still verifies (listed in JWKS)."""

    __tablename__ = "sso_signing_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    key_uri: Mapped[str] = mapped_column(String(512), nullable=False)
    alg: Mapped[str] = mapped_column(String(16), nullable=False)
    public_jwk: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ProviderSession(Base):
    """A browser logged in at the provider. ``sid`` is what ID and logout tokens carry."""

    __tablename__ = "sso_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sid: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64), nullable=False)
    operator_id: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    username: Mapped[str] = mapped_column(String(64), nullable=False)
    method: Mapped[str] = mapped_column(String(32), nullable=False)
    acr: Mapped[str] = mapped_column(String(128), nullable=False)
    cert_ca: Mapped[str | None] = mapped_column(String(64))
    cert_serial: Mapped[str | None] = mapped_column(String(40))
    client_address: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    lang: Mapped[str] = mapped_column(String(8), nullable=False, default="zh")
    auth_time: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_reason: Mapped[str | None] = mapped_column(String(32))


class SessionClient(Base):
    """A client that received tokens in a session: whom back-channel logout must tell."""

    __tablename__ = "sso_session_client"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sso_session.id"), nullable=False,
                                            index=True)
    client_id: Mapped[str] = mapped_column(String(64), nullable=False)
    first_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    #: When the logout token was delivered (2xx), or the last failure.
    notified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    notify_error: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (UniqueConstraint("session_id", "client_id", name="uq_sso_session_client"),)


class AuthorizationCode(Base):
    __tablename__ = "sso_code"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    client_id: Mapped[str] = mapped_column(String(64), nullable=False)
    session_id: Mapped[int] = mapped_column(ForeignKey("sso_session.id"), nullable=False)
    redirect_uri: Mapped[str] = mapped_column(String(512), nullable=False)
    scope: Mapped[str] = mapped_column(String(256), nullable=False)
    nonce: Mapped[str | None] = mapped_column(String(255))
    code_challenge: Mapped[str] = mapped_column(String(128), nullable=False)
    code_challenge_method: Mapped[str] = mapped_column(String(8), nullable=False)
    #: JSON of the OIDC "claims" request parameter (what the client asked for), or "".
    claims_request: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    #: Set on first exchange; a second exchange is a replay (RFC 6749 §4.1.2).
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AccessToken(Base):
    __tablename__ = "sso_access_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    client_id: Mapped[str] = mapped_column(String(64), nullable=False)
    session_id: Mapped[int] = mapped_column(ForeignKey("sso_session.id"), nullable=False,
                                            index=True)
    code_id: Mapped[int | None] = mapped_column(ForeignKey("sso_code.id"), index=True)
    scope: Mapped[str] = mapped_column(String(256), nullable=False)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class LoginChallenge(Base):
    """A signed-challenge login in progress: shown as ``code`` in one browser, answered by
    `govpki token sign-challenge` on the official's machine. States: pending → signed →
    used (a session was made), or refused / expired."""

    __tablename__ = "sso_challenge"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    #: The browser that asked: SHA-256 of a random cookie value only that browser holds.
    browser_hash: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    nonce: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    client_address: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    operator_id: Mapped[int | None] = mapped_column(Integer)
    cert_ca: Mapped[str | None] = mapped_column(String(64))
    cert_serial: Mapped[str | None] = mapped_column(String(40))
    failure: Mapped[str | None] = mapped_column(String(255))


class RaClientSession(Base):
    """The RA web pages as a relying party: which RA session a provider ``sid`` opened, so a
    back-channel logout ends it (only the SHA-256 of the RA cookie, as ra.authn keeps it)."""

    __tablename__ = "sso_ra_client_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sid: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    ra_token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class LogoutDelivery(Base):
    """One logout token owed to one client (Back-Channel Logout 1.0 §2.5): the outbox that
    apps/sso/backchannel.py works through. ``pending`` until the client answers 2xx
    (``delivered``) or the attempts run out or the client refuses the token for good
    (``failed``, audited). Each attempt posts a freshly signed token (its own ``iat``,
    ``exp`` and ``jti``), so a late retry is not refused as stale."""

    __tablename__ = "sso_logout_delivery"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sso_session.id"), nullable=False,
                                            index=True)
    sid: Mapped[str] = mapped_column(String(64), nullable=False)
    sub: Mapped[str] = mapped_column(String(64), nullable=False)
    client_id: Mapped[str] = mapped_column(String(64), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    #: When the next attempt is due (pending), or when a node claimed it (while sending).
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (Index("ix_sso_logout_delivery_due", "state", "next_attempt_at"),)


class RateCounter(Base):
    """How many times one subject (the SHA-256 of a browser cookie or a source address) did
    one rate-limited thing (``bucket``) in the fixed window starting at ``window_start``."""

    __tablename__ = "sso_rate_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[str] = mapped_column(String(32), nullable=False)
    subject_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    window_start: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    count: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (UniqueConstraint("bucket", "subject_hash", "window_start",
                                       name="uq_sso_rate_counter"),)
