"""pyHanko's ``Signer`` over govpki's one signer interface, and the TSA clients PAdES uses.

DESIGN.md: one signer interface for all keys, and every PKCS#11 call inside the process-wide
lock, including calls made on our behalf by pyHanko. So pyHanko never opens a PKCS#11 session
of its own (``pyhanko.sign.pkcs11`` would be a second stack, with its own login and no lock):
:class:`GovpkiPdfSigner` hands pyHanko's raw-signature requests to :class:`hsm.signer.Signer`,
which an official's USB key (``hsm.token``), a department seal key in the server's key store
(``ca.context``'s keyring) and a development file key all implement.

Why the details are as they are:

* The signature mechanism is fixed from the key type's registry entry (``hsm.algorithms``):
  SHA-256 for P-256 and RSA, SHA-384 for P-384, RSASSA-PKCS1-v1_5 for RSA (PKCS#11 tokens and
  SoftHSM2 sign DigestInfo with CKM_RSA_PKCS; PSS is not offered), so pyHanko picks the same
  digest for the document, the signed attributes and the timestamps.
* Dry runs (pyHanko's size estimation) return a placeholder of the *largest* DER signature the
  key can produce — 72 bytes for P-256, 104 for P-384, the modulus size for RSA — so an estimate
  can only be too large, never too small (ECDSA DER signatures vary by a few bytes).
* A token is never asked to sign during estimation: a real USB key may ask for a touch or a
  PIN per signature.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asn1crypto import algos, tsp
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pyhanko.sign.signers.pdf_cms import Signer as PyHankoSigner
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko_certvalidator.registry import SimpleCertificateStore

from hsm.algorithms import algorithm
from hsm.errors import MissingSecret, WrongPin
from hsm.signer import Signer, SoftwareSigner
from signing.pdf_errors import CertificateKeyMismatch, InvalidCertificateFile
from signing.pdf_revinfo import HttpTransport, Transport, TransportError

TSA_QUERY = "application/timestamp-query"
TSA_REPLY = "application/timestamp-reply"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}


def to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def max_signature_bytes(public_key: Any) -> int:
    """The longest signature the key can produce, as CMS carries it (DER for ECDSA)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return (public_key.key_size + 7) // 8
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        n = (public_key.curve.key_size + 7) // 8
        body = 2 * (2 + n + 1)  # two INTEGERs, each possibly with a leading 0x00
        return body + (2 if body < 128 else 3)
    raise TypeError(f"unsupported public key {type(public_key).__name__}")


def same_public_key(a: Any, b: Any) -> bool:
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(a.public_bytes(der, spki) == b.public_bytes(der, spki))


class GovpkiPdfSigner(PyHankoSigner):
    """A pyHanko signer whose only key operation is ``govpki_signer.sign(data, hash)``.

    ``chain`` are the issuing certificates (signer's issuer first); they go into the CMS
    ``certificates`` so a validator (pdfsig, Acrobat) can build the path without fetching.
    """

    def __init__(self, govpki_signer: Signer, certificate: x509.Certificate,
                 chain: Sequence[x509.Certificate] = (), *, embed_roots: bool = True) -> None:
        if not same_public_key(certificate.public_key(), govpki_signer.public_key()):
            raise CertificateKeyMismatch(
                f"the certificate (serial {certificate.serial_number:x}, "
                f"{certificate.subject.rfc4514_string()}) is not for the key "
                f"{govpki_signer.key_uri}")
        alg = algorithm(govpki_signer.key_type)
        self.hash_name = alg.hash_name
        mechanism = f"{alg.hash_name}_{'rsa' if alg.family == 'rsa' else 'ecdsa'}"
        registry = SimpleCertificateStore.from_certs([to_asn1(c) for c in chain])
        super().__init__(
            signing_cert=to_asn1(certificate),
            cert_registry=registry,
            signature_mechanism=algos.SignedDigestAlgorithm({"algorithm": mechanism}),
            embed_roots=embed_roots,
        )
        self.govpki_signer = govpki_signer
        self.certificate = certificate
        self._placeholder = b"\x00" * max_signature_bytes(govpki_signer.public_key())

    async def async_sign_raw(self, data: bytes, digest_algorithm: str,
                             dry_run: bool = False) -> bytes:
        if dry_run:
            return self._placeholder
        hash_cls = _HASHES.get(digest_algorithm.lower())
        if hash_cls is None or digest_algorithm.lower() != self.hash_name:
            raise ValueError(f"digest {digest_algorithm} does not go with key "
                             f"{self.govpki_signer.key_uri} ({self.hash_name})")
        # The hsm signer takes the PKCS#11 lock itself (hsm/pkcs11_lock.py).
        return self.govpki_signer.sign(data, hash_cls())


# -- timestamps ---------------------------------------------------------------------------------


class _TimeStampResp(asn1_core.Sequence):
    """TimeStampResp with the token OPTIONAL (RFC 3161 §2.4.2), so a rejection parses and its
    status text reaches the user."""

    _fields = [  # noqa: RUF012 (asn1crypto's declaration style)
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", asn1_cms.ContentInfo, {"optional": True}),
    ]


def _parse_reply(reply: bytes, where: str) -> Any:
    try:
        parsed = _TimeStampResp.load(reply)
        parsed["status"]["status"].native  # noqa: B018 (force the lazy parse now)
    except (ValueError, TypeError, KeyError) as exc:
        raise TimestampRequestError(f"{where} sent something that is not a TimeStampResp "
                                    f"({exc})") from None
    return parsed


class CallableTimeStamper(TimeStamper):
    """The TSA called in-process: ``respond`` maps a DER TimeStampReq to a DER TimeStampResp
    (``signing.tsa.TimeStampAuthority.respond``), so a host running govpki timestamps without a
    socket and a test needs no server."""

    def __init__(self, respond: Callable[[bytes], bytes], name: str = "the in-process TSA"):
        super().__init__(include_nonce=True)
        self._respond = respond
        self.name = name

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> Any:
        return _parse_reply(self._respond(req.dump()), self.name)


class HttpTimeStamper(TimeStamper):
    """RFC 3161 over HTTP (POST application/timestamp-query) to govpki's ``/tsa``."""

    def __init__(self, url: str, transport: Transport | None = None) -> None:
        super().__init__(include_nonce=True)
        self.url = url
        self.transport: Transport = transport if transport is not None else HttpTransport()

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> Any:
        import asyncio

        def call() -> tuple[bytes, str]:
            return self.transport.post(self.url, req.dump(), TSA_QUERY, (TSA_REPLY,))

        try:
            if self.transport.blocking:
                body, _ctype = await asyncio.to_thread(call)
            else:
                body, _ctype = call()
        except TransportError as exc:
            raise TimestampRequestError(str(exc)) from None
        return _parse_reply(body, self.url)


# -- key material ---------------------------------------------------------------------------------


@dataclass
class SigningKey:
    """What signs: a key behind the signer interface, its certificate and the issuing chain.

    ``close`` releases what was opened for it (a USB key session); :meth:`close` is idempotent.
    """

    signer: Signer
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()
    description: str = ""
    _close: Callable[[], None] | None = field(default=None, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)
    """Per key: the completed chain and the pyHanko signer, reused across documents (a seal
    stamps many papers; rebuilding them is a few milliseconds each time)."""

    def pyhanko_signer(self, chain: Sequence[x509.Certificate]) -> GovpkiPdfSigner:
        """The pyHanko signer for this key with ``chain`` embedded (cached per chain)."""
        key = "signer:" + ",".join(format(c.serial_number, "x") for c in chain)
        signer = self._cache.get(key)
        if signer is None:
            signer = self._cache[key] = GovpkiPdfSigner(self.signer, self.certificate, chain)
        return signer

    def close(self) -> None:
        closer, self._close = self._close, None
        if closer is not None:
            closer()

    def __enter__(self) -> SigningKey:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def load_certificates(data: bytes, what: str = "the certificate file"
                      ) -> list[x509.Certificate]:
    """All certificates of a PEM bundle, or one DER certificate; the first is the signer's."""
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise InvalidCertificateFile(f"{what} is not a PEM or DER X.509 certificate") from None
    if not certs:
        raise InvalidCertificateFile(f"{what} holds no certificate")
    return certs


def read_certificate_file(path: Path | str) -> list[x509.Certificate]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidCertificateFile(f"cannot read {path}: {exc.strerror or exc}") from None
    return load_certificates(data, str(path))


def load_key_file(path: Path | str, passphrase: bytes | None) -> SoftwareSigner:
    """A development key: an *encrypted* PEM private key (PKCS#8 or traditional).

    Unencrypted key files are refused — a signing key on disk in the clear is the habit this
    option must not teach — and a wrong passphrase is :class:`~hsm.errors.WrongPin`'s sibling
    message, naming the file and never the passphrase.
    """
    path = Path(path)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise InvalidCertificateFile(f"cannot read {path}: {exc.strerror or exc}") from None
    if b"ENCRYPTED" not in pem:
        raise MissingSecret(f"{path} is not an encrypted key; protect it with a passphrase "
                            f"(openssl pkcs8 -topk8 -v2 aes-256-cbc)")
    if not passphrase:
        raise MissingSecret(f"{path} is encrypted: give its passphrase "
                            f"(GOVPKI_KEY_FILE_PASSPHRASE or the prompt)")
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase)
    except (ValueError, TypeError):
        raise WrongPin(f"the passphrase does not decrypt {path} (or it is not a key)") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise InvalidCertificateFile(f"{path} holds a {type(key).__name__}; RSA and EC keys "
                                     f"can sign")
    return SoftwareSigner(f"file-key:{path.name}", key)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def certs_of(items: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """Deduplicated, order kept."""
    seen: set[bytes] = set()
    out = []
    for cert in items:
        der = cert.public_bytes(serialization.Encoding.DER)
        if der not in seen:
            seen.add(der)
            out.append(cert)
    return tuple(out)
