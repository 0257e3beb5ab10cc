"""Operator passwords (scrypt) and second factors (TOTP, RFC 6238), and the lockout counter.

Why these choices: scrypt is in the standard library and memory-hard (RFC 7914; n=2^15, r=8,
p=1 is the OWASP floor); TOTP is what every authenticator app speaks (RFC 6238 with the
defaults Google Authenticator assumes: SHA-1, 6 digits, 30 s), accepted one step either side
for clock drift and never twice (§5.2). After ``lockout_threshold`` consecutive failures the
account locks for ``lockout_minutes``; while locked nothing is checked, so guessing stops
paying. Every failure, lock and success is an audit event; the message to the caller never
says which factor was wrong.

Who may log in this way at all is ``[ra] password_login`` (ra.config): by default only the
bootstrap administrator; everyone else logs in with a certificate through single sign-on. The
check comes after the credentials (and their lockout) exactly as for an allowed account, and
only right credentials learn "not allowed here": the refusal cannot serve as an oracle for
which accounts exist or which is the bootstrap administrator.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qs, quote, urlparse

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor import InvalidToken
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ca.context import CaContext
from core import audit
from core.db import transaction, utcnow
from ra import models
from ra.authz import authorize
from ra.config import RaConfig
from ra.errors import (
    AccountLocked,
    AuthenticationFailed,
    Forbidden,
    PasswordLoginNotAllowed,
    ValidationError,
)
from ra.operators import get_operator, load_operator
from ra.records import Operator
from ra.sealing import Sealer

MIN_PASSWORD: Final = 12
MAX_PASSWORD: Final = 1024
TOTP_DIGITS: Final = 6
TOTP_PERIOD: Final = 30
TOTP_ISSUER: Final = "govpki RA"
_SCRYPT: Final = {"n": 2**15, "r": 8, "p": 1}
_GENERIC: Final = "login failed: the user name, password or one-time code is wrong"
_CERTIFICATE_ONLY: Final = ("password login is kept for the bootstrap administrator only: log "
                            "in with the certificate on your USB key (single sign-on)")


# ---------------------------------------------------------------------------------------------
# Passwords


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, maxmem=64 * 1024 * 1024, dklen=32,
                            **_SCRYPT)
    b64 = base64.b64encode
    return (f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}$"
            f"{b64(salt).decode()}${b64(digest).decode()}")


def verify_password(password: str, stored: str | None) -> bool:
    """Constant-time check; a missing or malformed hash is checked against a dummy so an
    unknown account costs the same time as a known one."""
    try:
        scheme, n, r, p, salt, digest = (stored or "").split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        params = {"n": int(n), "r": int(r), "p": int(p)}
        salt_b, digest_b = base64.b64decode(salt), base64.b64decode(digest)
    except ValueError:
        params, salt_b, digest_b = _SCRYPT, b"\0" * 16, b""
    candidate = hashlib.scrypt(password.encode(), salt=salt_b, maxmem=64 * 1024 * 1024,
                               dklen=32, **params)
    return bool(digest_b) and hmac.compare_digest(candidate, digest_b)


def _check_password_quality(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValidationError(f"a password must be {MIN_PASSWORD} to {MAX_PASSWORD} "
                              "characters", field="password")
    if len(set(password)) < 5:
        raise ValidationError("the password repeats too few characters", field="password")


def _credential(session: Session, operator_id: int) -> models.Credential:
    row = session.scalar(select(models.Credential).where(
        models.Credential.operator_id == operator_id).with_for_update())
    if row is None:
        row = models.Credential(operator_id=operator_id, totp_last_step=0, failed_logins=0)
        session.add(row)
        session.flush()
    return row


def _stored(ctx: CaContext, operator_id: int) -> tuple[str | None, bytes | None]:
    with transaction(ctx.sessions) as session:
        row = session.scalar(select(models.Credential).where(
            models.Credential.operator_id == operator_id))
        return (None, None) if row is None else (row.password_hash, row.totp_sealed)


def _may_manage(ctx: CaContext, actor: Operator | None, target: Operator, *,
                first_time: bool) -> str:
    """Credentials of others are security administration; one's own are one's own. Without
    an actor (the local CLI on the CA machine) only a credential never set may be set: the
    bootstrap of new accounts; resetting one needs an operator allowed to."""
    if actor is None:
        if not first_time:
            exc = Forbidden(f"forbidden: {target.username} already has this credential; a "
                            "reset needs GOVPKI_ACTOR naming a security administrator")
            audit.record_refusal(ctx.sessions, actor="bootstrap",
                                 action="ra.operator.credentials", object_type="operator",
                                 object_id=target.username,
                                 details={"error": exc.kind, "message": exc.message})
            raise exc
        return "bootstrap"
    if actor.id != target.id:
        authorize(ctx.sessions, actor, "operator.credentials", target.organisation,
                  object_type="operator", object_id=target.username)
    return actor.username


def set_password(ctx: CaContext, actor: Operator | None, username: str, password: str
                 ) -> None:
    """Set (or reset) a password; a reset also clears a lockout. ``actor`` None is the local
    bootstrap from the CLI on the CA machine."""
    target = get_operator(ctx.sessions, username)
    by = _may_manage(ctx, actor, target, first_time=_stored(ctx, target.id)[0] is None)
    _check_password_quality(password)
    hashed = hash_password(password)
    with transaction(ctx.sessions) as session:
        row = _credential(session, target.id)
        row.password_hash, row.password_changed_at = hashed, utcnow()
        row.failed_logins, row.locked_until = 0, None
        # A new password ends every open session of the account (a reset after compromise).
        session.execute(update(models.WebSession).where(
            models.WebSession.operator_id == target.id,
            models.WebSession.ended_at.is_(None)).values(ended_at=utcnow()))
        audit.record_event(session, actor=by, action="ra.operator.password.set",
                           object_type="operator", object_id=username, outcome="success")


# ---------------------------------------------------------------------------------------------
# TOTP


def _totp(secret: bytes) -> TOTP:
    # RFC 6238 HMAC-SHA-1: what authenticator apps assume; HMAC use, not collision-prone.
    return TOTP(secret, TOTP_DIGITS, SHA1(), TOTP_PERIOD, enforce_key_length=False)  # noqa: S303


def enroll_totp(ctx: CaContext, actor: Operator | None, username: str) -> str:
    """A new TOTP seed for ``username``; returns the otpauth:// URI (show it once, as a QR code
    or text, to the account holder). The previous seed stops working."""
    target = get_operator(ctx.sessions, username)
    by = _may_manage(ctx, actor, target, first_time=_stored(ctx, target.id)[1] is None)
    secret = secrets.token_bytes(20)
    sealed = Sealer.for_home(ctx.config.home).seal(secret, f"totp:{target.id}")
    with transaction(ctx.sessions) as session:
        row = _credential(session, target.id)
        row.totp_sealed, row.totp_last_step = sealed, 0
        audit.record_event(session, actor=by, action="ra.operator.totp.enroll",
                           object_type="operator", object_id=username, outcome="success")
    return _totp(secret).get_provisioning_uri(quote(username), TOTP_ISSUER)


def totp_now(otpauth_uri: str, at: float | None = None) -> str:
    """The current code for a provisioning URI: what an authenticator app would show."""
    query = parse_qs(urlparse(otpauth_uri).query)
    secret_b32 = query["secret"][0]
    secret = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    return _totp(secret).generate(at if at is not None else time.time()).decode()


def _matching_step(secret: bytes, code: str, now: float, after_step: int) -> int | None:
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    step = int(now) // TOTP_PERIOD
    for candidate in (step - 1, step, step + 1):
        if candidate <= after_step:
            continue
        try:
            _totp(secret).verify(code.encode(), candidate * TOTP_PERIOD)
        except InvalidToken:
            continue
        return candidate
    return None


# ---------------------------------------------------------------------------------------------
# The password + TOTP login method (ra.authn.LoginMethod)


class PasswordTotpLogin:
    """User name, password and a TOTP code: the bootstrap administrator's login (and every
    operator's where ``[ra] password_login = "all"``)."""

    name: str = "password-totp"
    acr: str = "urn:govpki:acr:password-totp"
    fields: tuple[str, ...] = ("username", "password", "totp")

    def __init__(self, config: RaConfig) -> None:
        self.config = config

    def authenticate(self, ctx: CaContext, form: Mapping[str, str], *, client: str
                     ) -> Operator:
        username = (form.get("username") or "").strip()[:64]
        password = (form.get("password") or "")[:MAX_PASSWORD]
        code = (form.get("totp") or "").strip()
        now = utcnow()
        with transaction(ctx.sessions) as session:
            op_row = session.scalar(select(models.Operator).where(
                models.Operator.username == username))
            cred = None if op_row is None else session.scalar(select(models.Credential).where(
                models.Credential.operator_id == op_row.id))
            stored = None if cred is None else cred.password_hash
            sealed = None if cred is None else cred.totp_sealed
            locked_until = None if cred is None else cred.locked_until
            last_step = 0 if cred is None else cred.totp_last_step
            active = op_row is not None and op_row.active
            allowed = op_row is not None and self.config.password_allowed(
                bootstrap=op_row.bootstrap)
        if locked_until is not None and locked_until > now:
            self._refuse(ctx, username, client, "locked")
            raise AccountLocked(f"account {username} is locked after repeated failed logins "
                                f"until {locked_until:%Y-%m-%d %H:%M} UTC; a security "
                                "administrator can unlock it by resetting the password",
                                until=locked_until.isoformat())
        password_ok = verify_password(password, stored)  # always run: same cost for all
        step = None
        if password_ok and sealed is not None and op_row is not None:
            secret = Sealer.for_home(ctx.config.home).open(sealed, f"totp:{op_row.id}")
            step = _matching_step(secret, code, now.timestamp(), last_step)
        if op_row is None or not active or step is None:
            locked = self._count_failure(ctx, op_row.id if op_row is not None else None, now)
            self._refuse(ctx, username, client, "locked-now" if locked else "bad-credentials")
            if locked:
                raise AccountLocked(f"account {username} is now locked for "
                                    f"{self.config.lockout_minutes} minutes after "
                                    f"{self.config.lockout_threshold} failed logins")
            raise AuthenticationFailed(_GENERIC)
        if not allowed:
            self._refuse(ctx, username, client, PasswordLoginNotAllowed.kind)
            raise PasswordLoginNotAllowed(_CERTIFICATE_ONLY,
                                          password_login=self.config.password_login)
        with transaction(ctx.sessions) as session:
            row = _credential(session, op_row.id)
            if row.totp_last_step >= step:  # a concurrent login used this code first
                raise AuthenticationFailed(_GENERIC)
            row.totp_last_step, row.failed_logins, row.locked_until = step, 0, None
            operator = load_operator(session, op_row.id)
        assert operator is not None
        return operator

    def _count_failure(self, ctx: CaContext, operator_id: int | None, now: dt.datetime
                       ) -> bool:
        if operator_id is None:
            return False
        with transaction(ctx.sessions) as session:
            row = _credential(session, operator_id)
            row.failed_logins += 1
            if row.failed_logins >= self.config.lockout_threshold:
                row.failed_logins = 0
                row.locked_until = now + dt.timedelta(minutes=self.config.lockout_minutes)
                return True
        return False

    @staticmethod
    def _refuse(ctx: CaContext, username: str, client: str, why: str) -> None:
        audit.record_refusal(ctx.sessions, actor=username or "anonymous", action="ra.login",
                             object_type="operator", object_id=username,
                             details={"method": "password-totp", "client": client[:64],
                                      "error": why})
