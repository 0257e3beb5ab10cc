"""Certificate login: two ra.authn.LoginMethod implementations and what they share.

1. :class:`ClientCertificateLogin` — mutual TLS terminated at a reverse proxy, which forwards
   the verified client certificate in the ``Client-Cert`` header (RFC 9440 §2: a Structured
   Field byte sequence, ``:base64-DER:``), or in nginx's ``$ssl_client_escaped_cert`` form
   (URL-escaped PEM). The header is believed only from the addresses in
   ``[sso] trusted_proxies``: anyone else could simply type it.
2. :class:`SignedChallengeLogin` — for browsers without TLS client authentication: the login
   page shows a short code bound to that browser; `govpki token sign-challenge CODE` on the
   official's machine signs the challenge (hsm.challenge.login_signed_data: label, origin,
   nonce, expiry) with the USB key and posts it with the certificate; the page, polling, then
   completes the login. A nonce is answered once: a second answer is a replay, refused and
   audited.

Either way the certificate is then checked the same way (:func:`verify_login_certificate`):
EKU clientAuth, validity, issued by one of this installation's CAs (signature checked) whose
chain leads to a configured root, the store's copy is this very certificate, and its status
in ca/'s store (in-process, not over HTTP) is good — revoked and suspended certificates are
refused. The certificate names its holder through ca/'s ``subscriber_ref``
(``ra-official:<id>/…``): the official, and the one active RA account linked to that official
(an official's self-service account, or an operator's own). Every refusal is audited and
shown as a page that says why.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

from apps.sso import models
from apps.sso.config import SsoConfig
from apps.sso.errors import (
    CertificateRefused,
    ChallengeRefused,
    LoginRefused,
    MalformedInput,
    UntrustedProxy,
)
from ca import status as ca_status
from ca.context import CaContext
from ca.errors import CaError
from ca.store import find_certificate, get_authority
from core import audit
from core.db import transaction, utcnow
from hsm.algorithms import algorithm, key_type_of
from hsm.challenge import LOGIN_LABEL, is_client_auth, login_signed_data
from hsm.errors import HsmError
from ra.errors import NotFound
from ra.operators import active_usernames_for_official, get_operator, load_operator
from ra.records import Operator

ACR_CERTIFICATE: Final = "urn:govpki:acr:certificate"
ACR_PASSWORD: Final = "urn:govpki:acr:password-totp"  # noqa: S105 (an acr name)
#: RFC 8176 authentication method references by acr.
AMR: Final = {ACR_CERTIFICATE: ["hwk", "pin", "mfa"], ACR_PASSWORD: ["pwd", "otp", "mfa"]}
MAX_HEADER: Final = 16384
MAX_CERTIFICATE: Final = 8192
MAX_SIGNATURE: Final = 1024
CODE_ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed
CODE_LENGTH: Final = 8
TRUST_TTL: Final = 30.0
_SF_BINARY = re.compile(r":([A-Za-z0-9+/]*={0,2}):")
_SUBSCRIBER = re.compile(r"ra-official:(\d+)/")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


# ---------------------------------------------------------------------------------------------
# Parsing outside input


def parse_client_cert_header(value: str) -> x509.Certificate:
    """The certificate in a ``Client-Cert`` header: RFC 9440 ``:base64-DER:`` or nginx's
    URL-escaped PEM. Anything else raises MalformedInput (never another exception)."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_HEADER:
        raise MalformedInput("the Client-Cert header is empty or too long")
    text = value.strip()
    try:
        match = _SF_BINARY.fullmatch(text)
        if match is not None:
            der = base64.b64decode(match.group(1), validate=True)
            if not der or len(der) > MAX_CERTIFICATE:
                raise MalformedInput("the Client-Cert header holds no certificate")
            return _positive_serial(x509.load_der_x509_certificate(der))
        pem = unquote(text, errors="strict") if "%" in text else text
        if pem.count("-----BEGIN CERTIFICATE-----") != 1 or not pem.startswith(
                "-----BEGIN CERTIFICATE-----") \
                or not pem.rstrip().endswith("-----END CERTIFICATE-----"):
            raise MalformedInput("the Client-Cert header is neither an RFC 9440 byte sequence "
                                 "nor one escaped PEM certificate")
        return _positive_serial(x509.load_pem_x509_certificate(pem.encode("ascii")))
    except MalformedInput:
        raise
    except (ValueError, TypeError, UnicodeError, binascii.Error, x509.InvalidVersion):
        # InvalidVersion is no ValueError (found by tests/apps/sso/test_parsers.py)
        raise MalformedInput("the Client-Cert header does not hold a readable X.509 "
                             "certificate") from None


def _positive_serial(cert: x509.Certificate) -> x509.Certificate:
    """RFC 5280 §4.1.2.2: pyca still loads a non-positive serial (with a deprecation warning);
    refuse it here, as pyca will."""
    if cert.serial_number <= 0:
        raise MalformedInput("the certificate's serial number is not positive (RFC 5280)")
    return cert


@dataclass(frozen=True)
class ChallengeAnswer:
    code: str
    certificate_der: bytes
    signature: bytes


def normalise_code(code: str) -> str:
    return "".join(c for c in code.upper() if c not in "- \t")


def format_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def parse_answer(body: object) -> ChallengeAnswer:
    """The JSON object `govpki token sign-challenge` posts; MalformedInput otherwise."""
    if not isinstance(body, Mapping):
        raise MalformedInput("the answer must be a JSON object")
    unknown = set(body) - {"code", "format", "certificate", "signature"}
    if unknown:
        raise MalformedInput(f"unknown member(s) {', '.join(sorted(map(str, unknown)))}")
    if body.get("format") != LOGIN_LABEL:
        raise MalformedInput(f"format must be {LOGIN_LABEL!r}")
    code, cert_b64, sig_b64 = body.get("code"), body.get("certificate"), body.get("signature")
    if not isinstance(code, str) or not 1 <= len(code) <= 32:
        raise MalformedInput("code must be the code the login page shows")
    decoded = []
    for name, value, limit in (("certificate", cert_b64, MAX_CERTIFICATE),
                               ("signature", sig_b64, MAX_SIGNATURE)):
        if not isinstance(value, str) or len(value) > limit * 2 or not _B64.fullmatch(value):
            raise MalformedInput(f"{name} must be base64")
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedInput(f"{name} must be base64") from None
        if not raw or len(raw) > limit:
            raise MalformedInput(f"{name} is empty or too long")
        decoded.append(raw)
    return ChallengeAnswer(normalise_code(code), decoded[0], decoded[1])


# ---------------------------------------------------------------------------------------------
# Checking a certificate


@dataclass(frozen=True)
class LoginResult:
    """What a certificate (or any) login proved: the account, and how."""

    operator: Operator
    method: str
    acr: str
    cert_ca: str | None = None
    cert_serial: str | None = None


@dataclass(frozen=True)
class _Issuer:
    ca: str
    certificate: x509.Certificate


class _TrustCache:
    """This installation's CA certificates by subject, re-read every :data:`TRUST_TTL`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_ctx: dict[int, tuple[float, dict[bytes, list[_Issuer]]]] = {}
        self._chains: dict[tuple[int, str, bytes], tuple[float, str | None]] = {}

    def chain_problem(self, ctx: CaContext, session: Session, config: SsoConfig,
                      issuer: _Issuer, now: dt.datetime) -> str | None:
        """:func:`_chain_problem`, remembered for :data:`TRUST_TTL` per CA generation: CA
        certificates change status rarely, and a login should not cost four reads per CA."""
        key = (id(ctx), issuer.ca, issuer.certificate.fingerprint(hashes.SHA256()))
        with self._lock:
            cached = self._chains.get(key)
            if cached is not None and time.monotonic() - cached[0] < TRUST_TTL:
                return cached[1]
        problem = _chain_problem(session, config, issuer, now)
        with self._lock:
            self._chains[key] = (time.monotonic(), problem)
        return problem

    def issuers(self, ctx: CaContext, session: Session) -> dict[bytes, list[_Issuer]]:
        key = id(ctx)
        with self._lock:
            cached = self._by_ctx.get(key)
            if cached is not None and time.monotonic() - cached[0] < TRUST_TTL:
                return cached[1]
        table: dict[bytes, list[_Issuer]] = {}
        for name in ca_status.authority_names(session):
            for gen in ca_status.generations(session, name):
                cert = gen.certificate()
                table.setdefault(cert.subject.public_bytes(), []).append(_Issuer(name, cert))
        with self._lock:
            self._by_ctx[key] = (time.monotonic(), table)
        return table


_TRUST = _TrustCache()


def _refuse(ctx: CaContext, reason: str, message: str, *, client: str,
            details: Mapping[str, Any] | None = None, kind: type[LoginRefused] = CertificateRefused,
            actor: str = "anonymous") -> LoginRefused:
    """Audit a refused login and return the error to raise."""
    audit.record_refusal(ctx.sessions, actor=actor, action="sso.login",
                         object_type="certificate",
                         object_id=str((details or {}).get("certificate", "")),
                         details={"reason": reason, "client": client[:64],
                                  **{k: v for k, v in (details or {}).items()
                                     if k != "certificate"}})
    return kind(message, reason=reason)


def verify_login_certificate(ctx: CaContext, config: SsoConfig, cert: x509.Certificate, *,
                             client: str, method: str, now: dt.datetime | None = None
                             ) -> LoginResult:
    """Check a login certificate (module doc) and find its account; audited either way."""
    now = now or utcnow()
    serial = format(cert.serial_number, "x")
    facts: dict[str, Any] = {"certificate": serial, "method": method,
                             "subject": cert.subject.rfc4514_string()[:200]}
    if not is_client_auth(cert):
        raise _refuse(ctx, "not-client-auth", "this certificate is not for client "
                      "authentication (no EKU clientAuth): log in with the signing "
                      "certificate of your USB key", client=client, details=facts)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise _refuse(ctx, "expired", f"the certificate is outside its validity "
                      f"({cert.not_valid_before_utc:%Y-%m-%d} – "
                      f"{cert.not_valid_after_utc:%Y-%m-%d})", client=client, details=facts)
    with transaction(ctx.sessions) as session:
        issuer = None
        for candidate in _TRUST.issuers(ctx, session).get(cert.issuer.public_bytes(), []):
            try:
                cert.verify_directly_issued_by(candidate.certificate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            issuer = candidate
            break
        if issuer is None:
            foreign = True
        else:
            foreign = False
            chain_problem = _TRUST.chain_problem(ctx, session, config, issuer, now)
            try:
                record = find_certificate(session, serial, issuer.ca)
            except CaError:
                record = None
            usernames: list[str] = []
            if record is not None and record.certificate_der == cert.public_bytes(
                    Encoding.DER):
                match = _SUBSCRIBER.match(record.subscriber_ref or "")
                if match is not None:
                    usernames = active_usernames_for_official(session, int(match.group(1)))
            else:
                foreign = True
    if foreign or issuer is None:
        raise _refuse(ctx, "foreign", "the certificate was not issued by this province's "
                      "certificate authority", client=client, details=facts)
    facts["ca"] = issuer.ca
    if chain_problem is not None:
        raise _refuse(ctx, "untrusted-chain", chain_problem, client=client, details=facts)
    assert record is not None
    if record.status == "revoked":
        raise _refuse(ctx, "revoked", "the certificate has been revoked (已吊销)",
                      client=client, details=facts)
    if record.status == "hold":
        raise _refuse(ctx, "suspended", "the certificate is suspended (已冻结): ask your RA "
                      "operator to release it", client=client, details=facts)
    if len(usernames) != 1:
        why = "no RA account is linked" if not usernames else "several accounts are linked"
        raise _refuse(ctx, "no-account", f"the certificate is valid, but {why} to its "
                      "holder: ask your RA operator", client=client, details=facts)
    operator = get_operator(ctx.sessions, usernames[0])
    return LoginResult(operator, method, ACR_CERTIFICATE, issuer.ca, serial)


def _chain_problem(session: Session, config: SsoConfig, issuer: _Issuer, now: dt.datetime
                   ) -> str | None:
    """None when ``issuer``'s chain is valid now and ends at a trusted root."""
    name: str | None = issuer.ca
    cert = issuer.certificate
    seen = set()
    while name is not None and name not in seen:
        seen.add(name)
        authority = get_authority(session, name)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return f"the certificate of CA {name} is outside its validity"
        if authority.status != "good":
            return f"the certificate of CA {name} is {authority.status}"
        if authority.parent is None:
            roots = config.trust_roots
            if roots and name not in roots:
                return f"root CA {name} is not a trusted root for login ([sso] trust_roots)"
            return None
        name = authority.parent
        cert = get_authority(session, name).certificate()
    return "the CA chain does not end at a root"


def _verify_signature(cert: x509.Certificate, data: bytes, signature: bytes) -> bool:
    public = cert.public_key()
    try:
        hash_algorithm = algorithm(key_type_of(public)).hash_algorithm()
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(hash_algorithm))
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        else:
            return False
    except (InvalidSignature, HsmError, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Signed challenges


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChallengeRecord:
    id: int
    code: str  # only when just created; "" when read back
    nonce: str
    state: str
    expires_at: dt.datetime
    client_address: str
    created_at: dt.datetime
    failure: str | None


def new_challenge(ctx: CaContext, config: SsoConfig, browser_token: str, *, client: str
                  ) -> ChallengeRecord:
    """A challenge for the browser holding ``browser_token``; its code is shown on the page."""
    now = utcnow()
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    with transaction(ctx.sessions) as session:
        row = models.LoginChallenge(
            code_hash=_sha256(code), browser_hash=_sha256(browser_token),
            nonce=secrets.token_urlsafe(32), state="pending", client_address=client[:64],
            created_at=now, expires_at=now + dt.timedelta(seconds=config.challenge_seconds))
        session.add(row)
        session.flush()
        return ChallengeRecord(row.id, format_code(code), row.nonce, row.state, row.expires_at,
                               row.client_address, row.created_at, None)


def _by_code(session: Session, code: str) -> models.LoginChallenge | None:
    code = normalise_code(code)
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return None
    return session.scalar(select(models.LoginChallenge).where(
        models.LoginChallenge.code_hash == _sha256(code)).with_for_update())


def describe_challenge(ctx: CaContext, code: str, *, client: str) -> ChallengeRecord:
    """The pending challenge a code names (for the official's tool); refused when unknown,
    expired or already answered."""
    now = utcnow()
    with transaction(ctx.sessions) as session:
        row = _by_code(session, code)
        problem = _challenge_problem(row, now)
        if row is not None and problem == "expired" and row.state == "pending":
            row.state = "expired"
        record = None if row is None else ChallengeRecord(
            row.id, "", row.nonce, row.state, row.expires_at, row.client_address,
            row.created_at, row.failure)
    if problem is not None:
        raise _challenge_refusal(ctx, problem, client=client,
                                 challenge=record.id if record else None)
    assert record is not None
    return record


def _challenge_problem(row: models.LoginChallenge | None, now: dt.datetime) -> str | None:
    if row is None:
        return "unknown"
    if row.state != "pending":
        return "replayed" if row.state in ("signed", "used") else row.state
    if now > row.expires_at:
        return "expired"
    return None


_CHALLENGE_MESSAGES: Final = {
    "unknown": "no login is waiting for this code: check it on the login page",
    "expired": "the login code has expired: reload the login page for a new one",
    "replayed": "this login code has already been answered (a replayed challenge is refused)",
    "refused": "this login code was refused: reload the login page for a new one",
    "bad-signature": "the signature does not verify with the certificate sent",
}


def _challenge_refusal(ctx: CaContext, reason: str, *, client: str, challenge: int | None,
                       extra: Mapping[str, Any] | None = None) -> LoginRefused:
    return _refuse(ctx, reason, _CHALLENGE_MESSAGES.get(reason, reason), client=client,
                   kind=ChallengeRefused, details={"challenge": challenge, **(extra or {})})


def answer_challenge(ctx: CaContext, config: SsoConfig, answer: ChallengeAnswer, *,
                     origin: str, client: str, now: dt.datetime | None = None) -> LoginResult:
    """Verify an answer from `govpki token sign-challenge`: the signature over
    login_signed_data(origin, nonce, expiry) with the certificate sent, then the certificate
    itself. Success marks the challenge signed for the browser to pick up; any failure marks
    it refused (a new code is needed)."""
    now = now or utcnow()
    with transaction(ctx.sessions) as session:
        row = _by_code(session, answer.code)
        problem = _challenge_problem(row, now)
        if row is not None and problem is None:
            row.state = "answering"  # claimed: a concurrent second answer sees a replay
        values = None if row is None else (row.id, row.nonce, row.expires_at)
    if problem is not None or values is None:
        raise _challenge_refusal(ctx, problem or "unknown", client=client,
                                 challenge=values[0] if values else None)
    challenge_id, nonce, expires_at = values
    try:
        try:
            cert = x509.load_der_x509_certificate(answer.certificate_der)
        except (ValueError, x509.InvalidVersion):
            raise MalformedInput("certificate is not DER X.509") from None
        data = login_signed_data(origin, nonce, int(expires_at.timestamp()))
        if not _verify_signature(cert, data, answer.signature):
            raise _challenge_refusal(ctx, "bad-signature", client=client,
                                     challenge=challenge_id,
                                     extra={"certificate": format(cert.serial_number, "x")})
        result = verify_login_certificate(ctx, config, cert, client=client,
                                          method=SignedChallengeLogin.name, now=now)
    except (LoginRefused, MalformedInput) as exc:
        _finish(ctx, challenge_id, "refused", failure=exc.message)
        raise
    _finish(ctx, challenge_id, "signed", result=result)
    return result


def _finish(ctx: CaContext, challenge_id: int, state: str, *, failure: str | None = None,
            result: LoginResult | None = None) -> None:
    with transaction(ctx.sessions) as session:
        row = session.get(models.LoginChallenge, challenge_id)
        assert row is not None
        row.state, row.answered_at = state, utcnow()
        row.failure = failure[:255] if failure else None
        if result is not None:
            row.operator_id = result.operator.id
            row.cert_ca, row.cert_serial = result.cert_ca, result.cert_serial


def challenge_state(ctx: CaContext, challenge_id: int, browser_token: str
                    ) -> tuple[str, str | None]:
    """(state, failure message) of this browser's challenge, for the polling page: pending,
    signed, refused, expired; "unknown" for another browser's challenge."""
    now = utcnow()
    with transaction(ctx.sessions) as session:
        row = session.get(models.LoginChallenge, challenge_id)
        if row is None or row.browser_hash != _sha256(browser_token):
            return "unknown", None
        if row.state in ("pending", "answering") and now > row.expires_at:
            row.state = "expired"
        state = "pending" if row.state == "answering" else row.state
        return state, row.failure


# ---------------------------------------------------------------------------------------------
# The two LoginMethods (ra.authn.LoginMethod protocol)


class ClientCertificateLogin:
    """Mutual TLS at a trusted reverse proxy (RFC 9440 Client-Cert)."""

    name: str = "client-certificate"
    acr: str = ACR_CERTIFICATE
    #: ``client_cert`` is the header's value, filled in by the view, never typed by a user.
    fields: tuple[str, ...] = ("client_cert",)

    def __init__(self, config: SsoConfig) -> None:
        self.config = config

    def authenticate_detailed(self, ctx: CaContext, form: Mapping[str, str], *, client: str
                              ) -> LoginResult:
        header = form.get("client_cert") or ""
        if not self.config.is_trusted_proxy(client):
            raise _refuse(ctx, "untrusted-proxy", "a Client-Cert header is accepted only from "
                          "the configured TLS proxies ([sso] trusted_proxies)", client=client,
                          kind=UntrustedProxy, details={"header": bool(header)})
        try:
            cert = parse_client_cert_header(header)
        except MalformedInput as exc:
            raise _refuse(ctx, "malformed", exc.message, client=client) from None
        return verify_login_certificate(ctx, self.config, cert, client=client,
                                        method=self.name)

    def authenticate(self, ctx: CaContext, form: Mapping[str, str], *, client: str
                     ) -> Operator:
        return self.authenticate_detailed(ctx, form, client=client).operator


class SignedChallengeLogin:
    """The browser's half of the signed challenge: picks up an answered challenge."""

    name: str = "signed-challenge"
    acr: str = ACR_CERTIFICATE
    #: ``challenge`` (its id) and ``browser`` (the browser's binding cookie), set by the view.
    fields: tuple[str, ...] = ("challenge", "browser")

    def __init__(self, config: SsoConfig) -> None:
        self.config = config

    def authenticate_detailed(self, ctx: CaContext, form: Mapping[str, str], *, client: str
                              ) -> LoginResult:
        try:
            challenge_id = int(form.get("challenge") or "")
        except ValueError:
            challenge_id = 0
        browser = form.get("browser") or ""
        with transaction(ctx.sessions) as session:
            row = session.get(models.LoginChallenge, challenge_id) if challenge_id else None
            ok = (row is not None and bool(browser)
                  and row.browser_hash == _sha256(browser) and row.state == "signed"
                  and row.operator_id is not None)
            if ok and row is not None:
                row.state = "used"
                operator_id, cert_ca, serial = row.operator_id, row.cert_ca, row.cert_serial
            state = row.state if row is not None else None
        if not ok:
            reason = "replayed" if state == "used" else "unknown"
            raise _challenge_refusal(ctx, reason, client=client,
                                     challenge=challenge_id or None)
        assert operator_id is not None  # ``ok`` checked it
        with transaction(ctx.sessions) as session:
            operator = load_operator(session, operator_id)
        if operator is None:
            raise NotFound(f"no operator {operator_id}")
        if not operator.active:
            raise _challenge_refusal(ctx, "refused", client=client, challenge=challenge_id)
        return LoginResult(operator, self.name, self.acr, cert_ca, serial)

    def authenticate(self, ctx: CaContext, form: Mapping[str, str], *, client: str
                     ) -> Operator:
        return self.authenticate_detailed(ctx, form, client=client).operator


def password_result(method: Any, operator: Operator) -> LoginResult:
    """A LoginResult for a method that only returns an operator (password + TOTP)."""
    return LoginResult(operator, str(method.name), str(method.acr))
