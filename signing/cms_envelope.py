"""CMS EnvelopedData (RFC 5652 §6) and AuthEnvelopedData (RFC 5083): encrypt a document to
recipients' encryption certificates, decrypt it with a key that stays in its key store.

Choices, and why (docs/cms.md has the openssl evidence):

* Key transport only (KeyTransRecipientInfo, RFC 5652 §6.2.1): govpki's encryption profiles
  (official-encryption, org-encryption) are RSA-only; EC recipients would need key agreement.
  The recipient is named by issuerAndSerialNumber, which every CMS implementation matches.
* RSAES-OAEP (RFC 3560) with SHA-256 and MGF1-SHA-256 is the default key transport;
  RSAES-PKCS1-v1_5 is available for old software and always accepted when decrypting, because
  ``openssl cms -encrypt`` uses it unless told otherwise.
* AES-256-CBC in EnvelopedData is the default content encryption: what every ``openssl cms``
  (1.1 and 3.x) decrypts and what the exchange's "EnvelopedData, AES-256" names. It has no
  integrity of its own, so a document is always signed inside (or outside) the envelope and the
  signature is verified after decryption. AES-256-GCM in AuthEnvelopedData (RFC 5083/5084)
  is available (``content_encryption="aes256-gcm"``) where every reader is OpenSSL 3.0 or
  later: it detects tampered ciphertext before anything is returned.
* Decryption goes through :class:`Decryptor` — ``decrypt(ciphertext, padding)`` and
  ``public_key()`` — which :class:`hsm.signer.Signer` already offers for file keys and PKCS#11
  tokens alike (the PKCS#11 signer decrypts inside the process-wide lock), so no raw private
  key is ever handed here. Every failure after the recipient is found — RSA padding, a content
  key of the wrong size, CBC padding, a GCM tag — is the same :class:`DecryptionFailed` with
  one message; a failed PKCS#1 v1.5 unwrap continues with a random key (RFC 3218), so the
  outcome does not reveal which step failed.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from asn1crypto import algos, cms, core
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import GovpkiError
from signing.cms import (
    MAX_ATTACHED_BYTES,
    MAX_SIGNATURE_BYTES,
    CertificateInput,
    _Cert,
    _der_header,
    _load_all,
    _spki,
    _unarmour,
)
from signing.cms_errors import (
    CertificateNotUsable,
    DecryptionFailed,
    EmptyContent,
    InputTooLarge,
    InvalidCertificate,
    MalformedCms,
    NotARecipient,
    UnsupportedAlgorithm,
)

__all__ = ["Decryptor", "EnvelopeRecipient", "decrypt_cms", "encrypt_cms", "recipients_of"]

KeyTransport = Literal["rsaes-oaep", "rsaes-pkcs1v15"]
ContentEncryption = Literal["aes256-cbc", "aes256-gcm"]

MAX_PLAINTEXT_BYTES = MAX_ATTACHED_BYTES
MAX_ENVELOPE_BYTES = MAX_SIGNATURE_BYTES
GCM_NONCE_BYTES = 12  # RFC 5084 §3.2 RECOMMENDS 12 octets
GCM_TAG_BYTES = 16

OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
OID_AUTH_ENVELOPED_DATA = "1.2.840.113549.1.9.16.1.23"
OID_DATA = "1.2.840.113549.1.7.1"
OID_RSA_PKCS1V15 = "1.2.840.113549.1.1.1"
OID_RSAES_OAEP = "1.2.840.113549.1.1.7"

# content-encryption OID → (mode, key bytes)
_CIPHERS: dict[str, tuple[str, int]] = {
    "2.16.840.1.101.3.4.1.2": ("cbc", 16),
    "2.16.840.1.101.3.4.1.22": ("cbc", 24),
    "2.16.840.1.101.3.4.1.42": ("cbc", 32),
    "2.16.840.1.101.3.4.1.6": ("gcm", 16),
    "2.16.840.1.101.3.4.1.26": ("gcm", 24),
    "2.16.840.1.101.3.4.1.46": ("gcm", 32),
}
_OAEP_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,  # RFC 3560's default; only accepted when decrypting
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class GCMParameters(core.Sequence):
    """RFC 5084 §3.2 (asn1crypto has no class for it)."""

    _fields = [  # noqa: RUF012 (asn1crypto's declaration style)
        ("aes_nonce", core.OctetString),
        ("aes_icv_len", core.Integer, {"default": 12}),
    ]


class Decryptor(Protocol):
    """What decryption needs of a key: :class:`hsm.signer.Signer` satisfies it."""

    def public_key(self) -> PublicKeyTypes: ...

    def decrypt(self, ciphertext: bytes, pad: padding.AsymmetricPadding) -> bytes: ...


@dataclass(frozen=True)
class EnvelopeRecipient:
    """One KeyTransRecipientInfo as the envelope names it (to pick the right key)."""

    issuer: str | None  # for people: asn1crypto's human-friendly form
    issuer_der: bytes | None = field(repr=False)
    serial: int | None
    key_id: bytes | None
    key_transport: str  # OID

    def matches(self, certificate: x509.Certificate) -> bool:
        if self.serial is not None:
            return (certificate.serial_number == self.serial
                    and certificate.issuer.public_bytes() == self.issuer_der)
        try:
            ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            return False
        return ski.value.digest == self.key_id


# -- encryption ------------------------------------------------------------------------------------


def _check_recipient(cert: _Cert, at: dt.datetime) -> rsa.RSAPublicKey:
    key = cert.pyca.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise UnsupportedAlgorithm(
            f"the recipient certificate {cert.subject} has a {type(key).__name__}: govpki "
            f"encrypts to RSA encryption certificates only (key transport)")
    if not cert.pyca.not_valid_before_utc <= at <= cert.pyca.not_valid_after_utc:
        raise CertificateNotUsable(f"the recipient certificate {cert.subject} is not valid now "
                                   f"(valid {cert.pyca.not_valid_before_utc:%Y-%m-%d} to "
                                   f"{cert.pyca.not_valid_after_utc:%Y-%m-%d})")
    try:
        ku = cert.pyca.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.key_encipherment:
            raise CertificateNotUsable(f"the recipient certificate {cert.subject} is not an "
                                       f"encryption certificate (no keyEncipherment)")
    except x509.ExtensionNotFound:
        pass
    return key


def _oaep(hash_name: str) -> padding.OAEP:
    algorithm = _OAEP_HASHES[hash_name]()
    return padding.OAEP(mgf=padding.MGF1(algorithm), algorithm=algorithm, label=None)


def _key_encryption_algorithm(key_transport: KeyTransport, oaep_hash: str) -> dict[str, Any]:
    if key_transport == "rsaes-pkcs1v15":
        return {"algorithm": "rsaes_pkcs1v15"}
    return {"algorithm": "rsaes_oaep", "parameters": {
        "hash_algorithm": {"algorithm": oaep_hash},
        "mask_gen_algorithm": {"algorithm": "mgf1",
                               "parameters": {"algorithm": oaep_hash}},
    }}


def encrypt_cms(data: bytes, recipient_certificates: Iterable[CertificateInput], *,
                key_transport: KeyTransport = "rsaes-oaep", oaep_hash: str = "sha256",
                content_encryption: ContentEncryption = "aes256-cbc",
                at: dt.datetime | None = None) -> bytes:
    """DER ContentInfo(EnvelopedData) — or AuthEnvelopedData for ``aes256-gcm`` — encrypting
    ``data`` under a fresh AES-256 key wrapped for every recipient certificate.

    Refuses recipients that are not RSA encryption certificates valid at ``at`` (default now).
    Checking their revocation is the caller's part (the exchange asks ca's status first).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    plaintext = bytes(data)
    if not plaintext:
        raise EmptyContent("the data are empty (0 bytes): there is nothing to encrypt")
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise InputTooLarge(f"the data are {len(plaintext)} bytes, over the limit of "
                            f"{MAX_PLAINTEXT_BYTES} bytes")
    if key_transport not in ("rsaes-oaep", "rsaes-pkcs1v15"):
        raise UnsupportedAlgorithm(f"key transport {key_transport!r} is not supported "
                                   f"(rsaes-oaep, rsaes-pkcs1v15)")
    if oaep_hash not in ("sha256", "sha384", "sha512"):
        raise UnsupportedAlgorithm(f"OAEP hash {oaep_hash!r} is not supported (sha256, sha384, "
                                   f"sha512)")
    if content_encryption not in ("aes256-cbc", "aes256-gcm"):
        raise UnsupportedAlgorithm(f"content encryption {content_encryption!r} is not "
                                   f"supported (aes256-cbc, aes256-gcm)")
    when = at if at is not None else dt.datetime.now(dt.UTC)
    recipients = _load_all(recipient_certificates, "recipient certificate")
    if not recipients:
        raise InvalidCertificate("no recipient certificates given")
    keys = [_check_recipient(r, when) for r in recipients]

    cek = os.urandom(32)
    pad = padding.PKCS1v15() if key_transport == "rsaes-pkcs1v15" else _oaep(oaep_hash)
    recipient_infos = [cms.RecipientInfo({"ktri": {
        "version": "v0",
        "rid": {"issuer_and_serial_number": {"issuer": cert.asn1.issuer,
                                             "serial_number": cert.asn1.serial_number}},
        "key_encryption_algorithm": _key_encryption_algorithm(key_transport, oaep_hash),
        "encrypted_key": key.encrypt(cek, pad),
    }}) for cert, key in zip(recipients, keys, strict=True)]

    if content_encryption == "aes256-gcm":
        nonce = os.urandom(GCM_NONCE_BYTES)
        sealed = AESGCM(cek).encrypt(nonce, plaintext, None)
        ciphertext, tag = sealed[:-GCM_TAG_BYTES], sealed[-GCM_TAG_BYTES:]
        algorithm = algos.EncryptionAlgorithm({
            "algorithm": "aes256_gcm",
            "parameters": GCMParameters({"aes_nonce": nonce, "aes_icv_len": GCM_TAG_BYTES}),
        })
        auth = cms.AuthEnvelopedData({
            "version": "v0",
            "recipient_infos": recipient_infos,
            "auth_encrypted_content_info": {"content_type": "data",
                                            "content_encryption_algorithm": algorithm,
                                            "encrypted_content": ciphertext},
            "mac": tag,
        })
        return bytes(cms.ContentInfo({"content_type": "authenticated_enveloped_data",
                                      "content": auth}).dump())

    iv = os.urandom(16)
    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    enveloped = cms.EnvelopedData({
        "version": "v0",  # RFC 5652 §6.1: only v0 KeyTransRecipientInfos, no originatorInfo
        "recipient_infos": recipient_infos,
        "encrypted_content_info": {
            "content_type": "data",
            "content_encryption_algorithm": {"algorithm": "aes256_cbc", "parameters": iv},
            "encrypted_content": ciphertext,
        },
    })
    return bytes(cms.ContentInfo({"content_type": "enveloped_data",
                                  "content": enveloped}).dump())


# -- decryption ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Envelope:
    authenticated: bool
    recipients: list[tuple[EnvelopeRecipient, Any]]  # (description, asn1 KeyTransRecipientInfo)
    cipher_oid: str
    cipher_parameters: Any
    ciphertext: bytes
    mac: bytes | None
    auth_attrs_der: bytes | None


def _parse_envelope(enveloped: bytes) -> _Envelope:
    if not isinstance(enveloped, bytes | bytearray | memoryview):
        raise TypeError(f"enveloped must be bytes, not {type(enveloped).__name__}")
    raw = bytes(enveloped)
    if not raw:
        raise EmptyContent("the envelope is empty (0 bytes)")
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise InputTooLarge(f"the envelope is {len(raw)} bytes, over the limit of "
                            f"{MAX_ENVELOPE_BYTES} bytes")
    raw = _unarmour(raw)
    try:
        info = cms.ContentInfo.load(raw, strict=True)
        outer = info["content_type"].dotted
        if outer not in (OID_ENVELOPED_DATA, OID_AUTH_ENVELOPED_DATA):
            raise MalformedCms(f"not a CMS EnvelopedData (its content type is "
                               f"{info['content_type'].native}, {outer})")
        body = info["content"]
        authenticated = outer == OID_AUTH_ENVELOPED_DATA
        eci = body["auth_encrypted_content_info" if authenticated else "encrypted_content_info"]
        algorithm = eci["content_encryption_algorithm"]
        ciphertext_field = eci["encrypted_content"]
        ciphertext = b"" if ciphertext_field.native is None else bytes(ciphertext_field.native)
        recipients: list[tuple[EnvelopeRecipient, Any]] = []
        for ri in body["recipient_infos"]:
            if ri.name != "ktri":
                continue  # key agreement, KEK and password recipients are not ours
            ktri = ri.chosen
            rid = ktri["rid"]
            kea = ktri["key_encryption_algorithm"]["algorithm"].dotted
            if rid.name == "issuer_and_serial_number":
                issuer = rid.chosen["issuer"]
                described = EnvelopeRecipient(
                    issuer=issuer.human_friendly, issuer_der=bytes(issuer.dump()),
                    serial=int(rid.chosen["serial_number"].native), key_id=None,
                    key_transport=kea)
            else:
                described = EnvelopeRecipient(None, None, None, bytes(rid.chosen.native), kea)
            ktri["encrypted_key"].native  # noqa: B018
            ktri["key_encryption_algorithm"]["parameters"].native  # noqa: B018
            recipients.append((described, ktri))
        mac = bytes(body["mac"].native) if authenticated else None
        auth_attrs_der = None
        if authenticated and isinstance(body["auth_attrs"], cms.CMSAttributes):
            contents = bytes(body["auth_attrs"].contents)
            auth_attrs_der = _set_of(contents)
        return _Envelope(authenticated, recipients, algorithm["algorithm"].dotted,
                         algorithm["parameters"], ciphertext, mac, auth_attrs_der)
    except GovpkiError:
        raise
    except Exception:
        raise MalformedCms("not a CMS EnvelopedData: the bytes do not decode as one "
                           "(garbage, truncated or damaged)") from None


def _set_of(contents: bytes) -> bytes:
    return _der_header(0x31, len(contents)) + contents


def recipients_of(enveloped: bytes) -> list[EnvelopeRecipient]:
    """Who an envelope is for (key-transport recipients), to pick the key before decrypting."""
    return [r for r, _ in _parse_envelope(enveloped).recipients]


def _padding_of(ktri: Any) -> padding.AsymmetricPadding:
    algorithm = ktri["key_encryption_algorithm"]
    oid = algorithm["algorithm"].dotted
    if oid == OID_RSA_PKCS1V15:
        return padding.PKCS1v15()
    if oid != OID_RSAES_OAEP:
        raise UnsupportedAlgorithm(f"key transport {oid} is not supported (RSAES-OAEP, "
                                   f"RSAES-PKCS1-v1_5)")
    params = algorithm["parameters"]
    if params.native is None:  # absent: RFC 3560's defaults (SHA-1, MGF1-SHA-1)
        return _oaep("sha1")
    try:
        hash_name = params["hash_algorithm"]["algorithm"].native
        mgf = params["mask_gen_algorithm"]
        if mgf["algorithm"].native != "mgf1":
            raise UnsupportedAlgorithm(f"OAEP with mask generation {mgf['algorithm'].dotted} "
                                       f"is not supported (MGF1)")
        mgf_hash = mgf["parameters"]["algorithm"].native
        label = params["p_source_algorithm"]["parameters"].native or None
    except UnsupportedAlgorithm:
        raise
    except Exception:
        raise UnsupportedAlgorithm("the RSAES-OAEP parameters cannot be read") from None
    if hash_name not in _OAEP_HASHES or mgf_hash not in _OAEP_HASHES:
        raise UnsupportedAlgorithm(f"OAEP with {hash_name}/MGF1-{mgf_hash} is not supported")
    return padding.OAEP(mgf=padding.MGF1(_OAEP_HASHES[mgf_hash]()),
                        algorithm=_OAEP_HASHES[hash_name](), label=label)


def decrypt_cms(enveloped: bytes, decryptor: Decryptor,
                certificate: CertificateInput | None = None) -> bytes:
    """The plaintext of an EnvelopedData or AuthEnvelopedData, unwrapped by ``decryptor``.

    ``certificate`` (the decryptor's encryption certificate) picks the recipient entry; without
    it every RSA key-transport entry is tried. Raises :class:`NotARecipient` when the envelope
    is not for this certificate or key, :class:`DecryptionFailed` (one message for every cause)
    when it does not decrypt, :class:`MalformedCms` for anything that is not an envelope.
    """
    envelope = _parse_envelope(enveloped)
    public = decryptor.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise UnsupportedAlgorithm("decryption needs an RSA key (key transport)")
    cert: _Cert | None = None
    if certificate is not None:
        certs = _load_all(certificate, "certificate")
        if len(certs) != 1:
            raise InvalidCertificate("certificate must be one certificate")
        cert = certs[0]
        if _spki(cert.pyca.public_key()) != _spki(public):
            raise NotARecipient(f"the key does not belong to the certificate {cert.subject}")
        candidates = [ktri for described, ktri in envelope.recipients
                      if described.matches(cert.pyca)]
        if not candidates:
            raise NotARecipient(f"the envelope is not addressed to {cert.subject} (serial "
                                f"{cert.serial_hex}): its recipients are "
                                f"{_describe(envelope)}")
    else:
        candidates = [ktri for _, ktri in envelope.recipients]
        if not candidates:
            raise NotARecipient("the envelope has no RSA key-transport recipient")
    mode, key_bytes = _CIPHERS.get(envelope.cipher_oid, ("", 0))
    if not mode:
        raise UnsupportedAlgorithm(f"content encryption {envelope.cipher_oid} is not supported "
                                   f"(AES-CBC, AES-GCM)")
    if (mode == "gcm") != envelope.authenticated:
        raise MalformedCms("AES-GCM belongs in AuthEnvelopedData and CBC in EnvelopedData")
    modulus_bytes = (public.key_size + 7) // 8
    for ktri in candidates:
        pad = _padding_of(ktri)
        encrypted_key = bytes(ktri["encrypted_key"].native)
        cek = _unwrap(decryptor, encrypted_key, pad, modulus_bytes, key_bytes)
        plaintext = _decrypt_content(envelope, mode, cek)
        if plaintext is not None:
            return plaintext
    raise DecryptionFailed("the envelope could not be decrypted with this key (wrong key, or "
                           "the ciphertext was changed or damaged)")


def _describe(envelope: _Envelope) -> str:
    names = [f"{r.issuer} serial {r.serial:x}" if r.serial is not None
             else f"key id {r.key_id.hex() if r.key_id else '?'}"
             for r, _ in envelope.recipients]
    return "; ".join(names) or "none"


def _unwrap(decryptor: Decryptor, encrypted_key: bytes, pad: padding.AsymmetricPadding,
            modulus_bytes: int, key_bytes: int) -> bytes:
    """The content-encryption key, or a random one of the right size when unwrapping fails
    (RFC 3218): the content decryption then fails like any other wrong key."""
    if len(encrypted_key) == modulus_bytes:
        try:
            cek = decryptor.decrypt(encrypted_key, pad)
        except (ValueError, GovpkiError):  # pyca and hsm.errors.DecryptionFailed alike
            cek = b""
        if len(cek) == key_bytes:
            return cek
    return os.urandom(key_bytes)


def _decrypt_content(envelope: _Envelope, mode: str, cek: bytes) -> bytes | None:
    try:
        if mode == "gcm":
            params = GCMParameters.load(envelope.cipher_parameters.dump())
            nonce = bytes(params["aes_nonce"].native)
            tag_len = int(params["aes_icv_len"].native)
            if envelope.mac is None or len(envelope.mac) != tag_len or tag_len < 12:
                return None
            # RFC 5083: authAttrs, when present, are the AAD (as a DER SET OF).
            aad = envelope.auth_attrs_der
            return AESGCM(cek).decrypt(nonce, envelope.ciphertext + envelope.mac, aad)
        iv = bytes(envelope.cipher_parameters.native)
        if len(iv) != 16 or not envelope.ciphertext or len(envelope.ciphertext) % 16:
            return None
        decryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
        padded = decryptor.update(envelope.ciphertext) + decryptor.finalize()
        unpadder = sym_padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except (InvalidTag, ValueError, TypeError):
        return None
