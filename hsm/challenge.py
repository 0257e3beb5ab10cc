"""`govpki token sign-challenge`: answer a login challenge of the SSO provider with the USB key.

The provider's login page shows a short code; on the official's machine, with the USB key
plugged in, this module fetches the challenge for that code, signs it with the key of the
signing certificate (the one whose certificate carries EKU clientAuth) and posts the
signature and the certificate back. The browser, polling, then logs in.

What is signed is a domain-separated structure, never a bare nonce (:func:`login_signed_data`):
the fixed label ``govpki-login-v1``, the provider's origin *as this tool contacted it* (so a
challenge relayed through another site is signed for that site's origin and refused by the
real provider), the nonce and the expiry, each length-prefixed. Document signatures (CMS,
PAdES) sign DER that starts with a SET tag; these bytes start with the label's length, so a
login signature can never pass for a document signature, nor the other way round.

Standard library HTTP (urllib), as hsm/ra_client.py: the tool runs on officials' desktops.
The code travels in a POST body, never in a URL (proxies log URLs).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from hsm.algorithms import algorithm
from hsm.errors import HsmError, KeyNotFound
from hsm.ra_client import RaUnreachable, call_json
from hsm.token import TokenKey, UsbToken

LOGIN_LABEL: Final = "govpki-login-v1"
CHALLENGE_PATH: Final = "/sso/challenge"
ANSWER_PATH: Final = "/sso/challenge/answer"


def origin_of(url: str) -> str:
    """RFC 6454 origin of an http(s) URL: scheme://host[:port], default port dropped."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HsmError(f"the provider address must be an http(s) URL, got {url!r}")
    port = parts.port
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def login_signed_data(origin: str, nonce: str, expires_at: int) -> bytes:
    """The bytes a login signature covers: label, origin, nonce, expiry (Unix seconds), each
    as a 4-byte big-endian length and its UTF-8 bytes."""
    out = bytearray()
    for value in (LOGIN_LABEL, origin, nonce, str(int(expires_at))):
        raw = value.encode("utf-8")
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


@dataclass(frozen=True)
class Challenge:
    origin: str
    nonce: str
    expires_at: int
    requested_from: str
    requested_at: str


def is_client_auth(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH in eku


def login_certificate(usb: UsbToken, key_ref: str | None = None
                      ) -> tuple[TokenKey, x509.Certificate]:
    """The key and certificate to log in with: ``key_ref`` when given, else the token's
    client-authentication certificate valid longest (a renewed key beside an old one)."""
    candidates: list[tuple[TokenKey, x509.Certificate]] = []
    for key_id, cert in usb.certificates():
        if not key_id or not is_client_auth(cert):
            continue
        try:
            key = usb.find_key(f"id:{key_id.hex()}")
        except KeyNotFound:
            continue  # a CA certificate, or a certificate without its key
        if key_ref is not None and key.key_id != usb.find_key(key_ref).key_id:
            continue
        candidates.append((key, cert))
    if not candidates:
        which = f" for key {key_ref}" if key_ref else ""
        raise KeyNotFound(f"token {usb.token_label!r} holds no certificate{which} for client "
                          "authentication (EKU clientAuth) beside its key")
    return max(candidates, key=lambda kc: kc[1].not_valid_after_utc)


class ChallengeClient:
    def __init__(self, provider_url: str, *, timeout: float = 30.0) -> None:
        self.origin = origin_of(provider_url)
        self.base_url = provider_url.rstrip("/")
        self.timeout = timeout

    def fetch(self, code: str) -> Challenge:
        data = self._post(CHALLENGE_PATH, {"code": code})
        try:
            return Challenge(origin=str(data["origin"]), nonce=str(data["nonce"]),
                             expires_at=int(data["expires_at"]),
                             requested_from=str(data.get("requested_from", "")),
                             requested_at=str(data.get("requested_at", "")))
        except (KeyError, TypeError, ValueError):
            raise RaUnreachable("the provider's answer lacks origin/nonce/expires_at: is the "
                                "address that of a govpki SSO provider?") from None

    def sign(self, usb: UsbToken, challenge: Challenge, key_ref: str | None = None
             ) -> tuple[bytes, bytes]:
        """(certificate DER, signature) over :func:`login_signed_data` for *our* origin."""
        if challenge.origin != self.origin:
            raise HsmError(f"the challenge is for {challenge.origin}, but this tool contacted "
                           f"{self.origin}: refusing to sign for another site")
        key, cert = login_certificate(usb, key_ref)
        signer = usb.signer(key)
        hash_algorithm = algorithm(signer.key_type).hash_algorithm()
        data = login_signed_data(self.origin, challenge.nonce, challenge.expires_at)
        return cert.public_bytes(serialization.Encoding.DER), signer.sign(data, hash_algorithm)

    def answer(self, code: str, certificate_der: bytes, signature: bytes) -> dict[str, Any]:
        return self._post(ANSWER_PATH, {
            "code": code, "format": LOGIN_LABEL,
            "certificate": base64.b64encode(certificate_der).decode("ascii"),
            "signature": base64.b64encode(signature).decode("ascii")})

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return call_json("POST", self.base_url + path, json.dumps(body).encode(),
                         timeout=self.timeout, peer="the provider")
