"""ID-token keys: kept in govpki's key store, used through hsm's one Signer interface.

Why it looks like this:

* The private key is never in this process when a PKCS#11 store is configured: the key is
  generated on the token (``pkcs11:token=…;object=sso-…``) and every JWS is signed through
  :meth:`hsm.signer.Signer.sign_raw`, which returns the raw r||s that JWS wants for ECDSA
  (RFC 7518 §3.4). A file key (``file:sso-…``) is used when the installation runs on file keys.
  authlib and joserfc never see a private key: the compact JWS is assembled here (RFC 7515
  §7.1) and only *verification* uses joserfc.
* ES256 (P-256, SHA-256): small tokens, quick to sign on USB-class tokens, and every OIDC
  client library accepts it.
* ``kid`` is the RFC 7638 thumbprint of the public key, so it is derived, never chosen.
* Rotation: :func:`rotate` makes a new key ``current`` and keeps the one before as
  ``previous``; the JWKS lists both, so tokens signed just before a rotation still verify at
  relying parties that fetched the JWKS after it. The one before that is retired.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from sqlalchemy import select

from apps.sso import models
from apps.sso.errors import KeyUnavailable, MalformedInput
from ca.context import CaContext
from core import audit
from core.db import transaction, utcnow
from hsm.algorithms import KeyType
from hsm.pkcs11_uri import Pkcs11Uri
from hsm.signer import Signer

ALG: Final = "ES256"
#: How long a process trusts its copy of the key list (a rotation reaches every node by then).
CACHE_SECONDS: Final = 30.0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class KeyRecord:
    kid: str
    key_uri: str
    alg: str
    public_jwk: Mapping[str, Any]
    status: str
    created_at: dt.datetime


def encode_jws(signer: Signer, kid: str, claims: Mapping[str, Any], *, typ: str = "JWT"
               ) -> str:
    """A compact JWS (RFC 7515 §7.1) of ``claims`` signed ES256 through ``signer``."""
    header = {"alg": ALG, "kid": kid, "typ": typ}
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + b64url(json.dumps(dict(claims), separators=(",", ":"),
                                         ensure_ascii=False).encode()))
    signature = signer.sign_raw(signing_input.encode("ascii"), hashes.SHA256())
    return signing_input + "." + b64url(signature)


def public_jwk(public_key: object) -> tuple[str, dict[str, Any]]:
    """(kid, public JWK with kid/alg/use) for an EC P-256 public key."""
    if not isinstance(public_key, ec.EllipticCurvePublicKey) \
            or public_key.curve.name != "secp256r1":
        raise KeyUnavailable("the SSO token key must be an EC P-256 key (ES256)")
    key = ECKey.import_key(public_key)
    kid = key.thumbprint()
    jwk = dict(key.as_dict(private=False))
    jwk.update({"kid": kid, "alg": ALG, "use": "sig"})
    return kid, jwk


def _new_uri(ctx: CaContext) -> str:
    stamp = f"sso-{utcnow():%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
    keystore = ctx.config.keystore
    if keystore.type == "pkcs11" and keystore.token_label:
        return Pkcs11Uri(token=keystore.token_label, object=stamp).format()
    return f"file:{stamp}"


def _to_record(row: models.SigningKey) -> KeyRecord:
    return KeyRecord(row.kid, row.key_uri, row.alg, json.loads(row.public_jwk), row.status,
                     row.created_at)


def list_keys(ctx: CaContext, *, include_retired: bool = False) -> list[KeyRecord]:
    """Newest first."""
    with transaction(ctx.sessions) as session:
        query = select(models.SigningKey).order_by(models.SigningKey.id.desc())
        if not include_retired:
            query = query.where(models.SigningKey.status.in_(("current", "previous")))
        return [_to_record(r) for r in session.scalars(query)]


def rotate(ctx: CaContext, *, actor: str, key_uri: str | None = None) -> KeyRecord:
    """Generate a new key (or adopt ``key_uri``, an existing EC P-256 key) and make it the
    current one; the current becomes previous, the previous is retired."""
    if key_uri is None:
        key_uri = _new_uri(ctx)
        signer = ctx.keyring.generate(key_uri, KeyType.EC_P256)
    else:
        signer = ctx.keyring.get(key_uri)
    kid, jwk = public_jwk(signer.public_key())
    now = utcnow()
    with transaction(ctx.sessions) as session:
        for row in session.scalars(select(models.SigningKey).where(
                models.SigningKey.status.in_(("current", "previous"))).with_for_update()):
            if row.status == "previous":
                row.status, row.retired_at = "retired", now
            else:
                row.status = "previous"
        row = models.SigningKey(kid=kid, key_uri=key_uri, alg=ALG, public_jwk=json.dumps(jwk),
                                status="current", created_at=now)
        session.add(row)
        session.flush()
        audit.record_event(session, actor=actor, action="sso.key.rotate",
                           object_type="sso-key", object_id=kid, outcome="success",
                           details={"key_uri": key_uri, "alg": ALG})
        return _to_record(row)


class TokenKeys:
    """The process's view of the key list: the current signer and the JWKS, re-read every
    :data:`CACHE_SECONDS`. The first use on an installation without a key makes one."""

    def __init__(self, ctx: CaContext) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._loaded_at = 0.0
        self._keys: list[KeyRecord] = []
        self._keyset: KeySet | None = None

    def _refresh(self) -> list[KeyRecord]:
        with self._lock:
            if time.monotonic() - self._loaded_at < CACHE_SECONDS and self._keys:
                return self._keys
            keys = list_keys(self.ctx)
            if not any(k.status == "current" for k in keys):
                rotate(self.ctx, actor="system")
                keys = list_keys(self.ctx)
            self._keys = keys
            self._keyset = KeySet.import_key_set({"keys": [dict(k.public_jwk) for k in keys]})
            self._loaded_at = time.monotonic()
            return keys

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = 0.0

    def current(self) -> tuple[KeyRecord, Signer]:
        record = next(k for k in self._refresh() if k.status == "current")
        return record, self.ctx.keyring.get(record.key_uri)

    def sign(self, claims: Mapping[str, Any], *, typ: str = "JWT") -> str:
        record, signer = self.current()
        return encode_jws(signer, record.kid, claims, typ=typ)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(k.public_jwk) for k in self._refresh()]}

    def keyset(self) -> KeySet:
        self._refresh()
        assert self._keyset is not None
        return self._keyset

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a JWS this provider signed (signature only: callers check the claims
        their use needs). Raises MalformedInput otherwise."""
        if not isinstance(token, str) or len(token) > 16384 or token.count(".") != 2:
            raise MalformedInput("not a compact JWS")
        try:
            decoded = jwt.decode(token, self.keyset(), algorithms=[ALG])
        except (JoseError, ValueError, TypeError) as exc:
            raise MalformedInput(f"the token does not verify: {type(exc).__name__}") from None
        return dict(decoded.claims)
