"""RFC 3161 time-stamp authority, callable without any web framework.

:meth:`TimeStampAuthority.respond` takes the DER of a TimeStampReq and always returns the DER of
a TimeStampResp: a token (PKIStatus granted) or a rejection carrying the PKIFailureInfo bit that
says why (RFC 3161 §2.4.2). It never raises for anything a client can send, so the HTTP edge
never has a 500 to hide.

The token is CMS SignedData (RFC 5652) over id-ct-TSTInfo, built with asn1crypto and signed
through the hsm signer interface, so a TSA key on a PKCS#11 token and a file key behave the same.
Signed attributes: contentType, messageDigest, signingTime and ESS signingCertificateV2
(RFC 5816) binding the token to the TSA certificate by its SHA-256 hash and issuer/serial.
The TSA refuses to start unless its certificate carries exactly one EKU, id-kp-timeStamping,
marked critical (RFC 3161 §2.3), and matches its key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from ca.context import CaContext
from ca.status import service_keys
from ca.store import chain_der
from core.db import transaction
from hsm.algorithms import algorithm
from hsm.signer import Signer
from policies.oids import POLICY_TSA
from signing.clock import ClockCheck
from signing.config import TsaConfig
from signing.errors import TsaConfigError

log = logging.getLogger(__name__)

TSA_ROLE = "tsa"
# A TimeStampReq is a few hundred bytes; anything near this is not one (the HTTP edge answers
# 413 above it, and direct callers get badDataFormat).
MAX_QUERY_BYTES = 64 * 1024
# Nonces are echoed into the signed token: bound them so a client cannot make us sign
# kilobytes of its choosing (openssl sends 64 bits; RFC 8954 bounds OCSP nonces to 32 octets).
MAX_NONCE_BITS = 512
SERIAL_BITS = 127

# messageImprint hash algorithms we accept, with their digest lengths (RFC 3161 §2.4.1: the
# imprint length must match the algorithm). SHA-1 and MD5 are refused with badAlg: a
# collision-prone imprint lets one token vouch for two documents.
ACCEPTED_IMPRINT_HASHES: dict[str, tuple[str, int]] = {
    "2.16.840.1.101.3.4.2.1": ("sha256", 32),
    "2.16.840.1.101.3.4.2.2": ("sha384", 48),
    "2.16.840.1.101.3.4.2.3": ("sha512", 64),
}

# PKIFailureInfo names (asn1crypto's spelling of RFC 3161 §2.4.2's bits).
BAD_ALG = "bad_alg"
BAD_REQUEST = "bad_request"
BAD_DATA_FORMAT = "bad_data_format"
TIME_NOT_AVAILABLE = "time_not_available"
UNACCEPTED_POLICY = "unaccepted_policy"
UNACCEPTED_EXTENSION = "unaccepted_extensions"
SYSTEM_FAILURE = "system_failure"

GRANTED = 0
REJECTION = 2


class _TimeStampResp(core.Sequence):
    """TimeStampResp with timeStampToken OPTIONAL, as RFC 3161 §2.4.2 has it (asn1crypto's
    class makes it mandatory, so it cannot express a rejection)."""

    _fields = [  # noqa: RUF012 (asn1crypto's declaration style)
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class _Rejection(Exception):
    """Internal: one PKIFailureInfo bit and the text for PKIFreeText."""

    def __init__(self, fail_info: str, text: str) -> None:
        super().__init__(text)
        self.fail_info = fail_info
        self.text = text


@dataclass(frozen=True)
class TsaKey:
    """The TSA's signer and its certificate, as the ceremony recorded them."""

    signer: Signer
    certificate_der: bytes
    #: The issuing CAs below the root (issuer first): sent with the TSA certificate when
    #: certReq is true, so a relying party holding only the root can build the path.
    intermediates_der: tuple[bytes, ...] = ()


def load_tsa_key(ctx: CaContext, ca: str | None = None) -> TsaKey:
    """The newest TSA service key (of ``ca`` when given) from ca's read-only status API."""
    with transaction(ctx.sessions) as session:
        records = service_keys(session, TSA_ROLE, ca)
    if not records:
        where = f" under CA '{ca}'" if ca else ""
        raise TsaConfigError(f"no TSA key has been certified{where}: run the key ceremony")
    record = records[0]
    with transaction(ctx.sessions) as session:
        chain = chain_der(session, record.ca)
    intermediates = tuple(d for d in chain
                          if (c := x509.load_der_x509_certificate(d)).subject != c.issuer)
    return TsaKey(ctx.keyring.get(record.key_uri), record.certificate_der, intermediates)


def check_tsa_certificate(certificate: x509.Certificate, signer: Signer,
                          at: dt.datetime) -> None:
    """Refuse a certificate the TSA must not sign with (RFC 3161 §2.3, RFC 5280 §4.2.1.12).

    Relying parties (openssl ts -verify among them) reject tokens from a certificate without a
    sole critical timeStamping EKU; failing here at start-up beats issuing tokens nobody accepts.
    """
    try:
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise TsaConfigError("the TSA certificate has no extendedKeyUsage extension "
                             "(RFC 3161 §2.3 requires a critical id-kp-timeStamping)") from None
    if not eku.critical:
        raise TsaConfigError("the TSA certificate's extendedKeyUsage is not critical "
                             "(RFC 3161 §2.3)")
    if list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        names = ", ".join(o.dotted_string for o in eku.value)
        raise TsaConfigError(f"the TSA certificate's extendedKeyUsage must be exactly "
                             f"id-kp-timeStamping (RFC 3161 §2.3), found: {names}")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if (certificate.public_key().public_bytes(der, spki)
            != signer.public_key().public_bytes(der, spki)):
        raise TsaConfigError(f"the TSA certificate does not match the key {signer.key_uri}")
    if not certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc:
        raise TsaConfigError(
            f"the TSA certificate is not valid now (valid "
            f"{certificate.not_valid_before_utc:%Y-%m-%d} to "
            f"{certificate.not_valid_after_utc:%Y-%m-%d})")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_serial() -> int:
    """127 random bits from the CSPRNG, never 0.

    Uniqueness is probabilistic, not enforced by a table: with 2^127 values, the chance of any
    repeat among 10^12 tokens is about 10^-15, and a serial only has to be unique per TSA
    (RFC 3161 §2.4.2). It fits the 160 bits every client must accept.
    """
    while True:
        serial = secrets.randbits(SERIAL_BITS)
        if serial:
            return serial


@dataclass(frozen=True)
class _Request:
    message_imprint: tsp.MessageImprint
    nonce: int | None
    cert_req: bool


class TimeStampAuthority:
    """One TSA key and its clock check; thread-safe (the signer serialises token access).

    ``ctx`` supplies the newest TSA key certified by the ceremony; ``key`` overrides it (a
    deployment running one TSA per CA, or tests). ``now`` is the clock the tokens state: the
    system clock, which the configured check vouches for; tests freeze it.
    """

    def __init__(self, ctx: CaContext | None, config: TsaConfig | None = None, *,
                 key: TsaKey | None = None, ca: str | None = None,
                 now: Callable[[], dt.datetime] = _utcnow) -> None:
        if key is None:
            if ctx is None:
                raise TypeError("TimeStampAuthority needs a CaContext or a TsaKey")
            key = load_tsa_key(ctx, ca)
        self.config = config or TsaConfig()
        self.clock = ClockCheck(self.config)
        self.policy = POLICY_TSA
        self._now = now
        self._signer = key.signer
        self.certificate = x509.load_der_x509_certificate(key.certificate_der)
        check_tsa_certificate(self.certificate, self._signer, now())
        self._key_alg = algorithm(self._signer.key_type)
        self._hash = self._key_alg.hash_algorithm()
        # The parts that never change are encoded once and re-loaded per token: asn1crypto
        # re-serialises objects built from Python values on every dump (a 20x cost), but
        # hands back the original bytes of an object loaded from DER.
        self._certificate_der = key.certificate_der
        self._intermediates_der = key.intermediates_der
        cert = asn1_x509.Certificate.load(key.certificate_der)
        self._sid_der = cms.SignerIdentifier({"issuer_and_serial_number": {
            "issuer": cert.issuer,
            "serial_number": cert.serial_number,
        }}).dump()
        # RFC 5816 §2.2.1: ESSCertIDv2 with SHA-256 (the DEFAULT, so hashAlgorithm is omitted)
        # and issuerSerial, so a relying party can tell a re-issued certificate apart.
        self._ess_attribute_der = cms.CMSAttribute({
            "type": "signing_certificate_v2",
            "values": [{"certs": [tsp.ESSCertIDv2({
                "hash_algorithm": {"algorithm": "sha256"},
                "cert_hash": hashlib.sha256(key.certificate_der).digest(),
                "issuer_serial": {
                    "issuer": [asn1_x509.GeneralName({"directory_name": cert.issuer})],
                    "serial_number": cert.serial_number,
                },
            })]}],
        }).dump()
        self._signature_algorithm_der = algos.SignedDigestAlgorithm(
            {"algorithm": self._key_alg.signature_oid}).dump()
        log.info("TSA ready: key %s, certificate serial %x, policy %s, clock source %s",
                 self._signer.key_uri, self.certificate.serial_number, self.policy,
                 self.config.clock_source)

    # -- public API --------------------------------------------------------------------------

    def respond(self, query_der: bytes) -> bytes:
        """DER TimeStampResp for a DER TimeStampReq: a token, or a rejection saying why."""
        try:
            request = self._parse(query_der)
            clock = self.clock.state()
            if not clock.synchronised:
                # The detail (offsets, commands) is for operators: logged and on /tsa/health.
                raise _Rejection(TIME_NOT_AVAILABLE, "the TSA's clock is not synchronised")
            gen_time = self._now()
            if not (self.certificate.not_valid_before_utc <= gen_time
                    <= self.certificate.not_valid_after_utc):
                raise _Rejection(SYSTEM_FAILURE, "the TSA certificate is not valid at this time")
            token = self._token(request, gen_time)
            return _TimeStampResp({"status": {"status": GRANTED},
                                   "time_stamp_token": token}).dump()
        except _Rejection as rejection:
            return self._rejection(rejection.fail_info, rejection.text)
        except Exception:  # the signer or the encoder: never an exception to the client
            log.exception("TSA failed to build a time-stamp token")
            return self._rejection(SYSTEM_FAILURE, "the TSA could not produce a token")

    def clock_status(self) -> dict[str, Any]:
        """Health signal: ``{"source", "synchronised", "detail"}``."""
        return self.clock.status()

    # -- request -----------------------------------------------------------------------------

    def _parse(self, query_der: bytes) -> _Request:
        """RFC 3161 §2.4.1 checks, each refusal with its PKIFailureInfo bit."""
        if not isinstance(query_der, bytes | bytearray) or not query_der:
            raise _Rejection(BAD_DATA_FORMAT, "empty request")
        if len(query_der) > MAX_QUERY_BYTES:
            raise _Rejection(BAD_DATA_FORMAT, "request too large")
        try:
            req = tsp.TimeStampReq.load(bytes(query_der), strict=True)
            req.native  # noqa: B018 (asn1crypto parses lazily: force every field now)
            version = req["version"].native
            imprint = req["message_imprint"]
            hash_alg = imprint["hash_algorithm"]
            oid = hash_alg["algorithm"].dotted
            # asn1crypto types SHA-2 parameters as NULL: any other value fails right here
            # (RFC 5754 §2: absent or NULL), so it is badDataFormat like any non-DER input.
            hash_alg["parameters"].native  # noqa: B018
            hashed = imprint["hashed_message"].native
            policy = req["req_policy"]
            nonce = req["nonce"].native
            cert_req = bool(req["cert_req"].native)
            has_extensions = req["extensions"].native is not None
        except Exception:  # asn1crypto raises ValueError, TypeError, KeyError, OverflowError...
            raise _Rejection(BAD_DATA_FORMAT, "the request is not a TimeStampReq") from None
        if version != "v1":
            raise _Rejection(BAD_DATA_FORMAT, f"unsupported TimeStampReq version {version}")
        accepted = ACCEPTED_IMPRINT_HASHES.get(oid)
        if accepted is None:
            raise _Rejection(BAD_ALG, f"messageImprint hash algorithm {oid} is not accepted "
                                      "(SHA-256, SHA-384, SHA-512)")
        name, length = accepted
        if len(hashed) != length:
            raise _Rejection(BAD_DATA_FORMAT, f"a {name} messageImprint is {length} octets, "
                                              f"not {len(hashed)}")
        if policy.native is not None and policy.dotted != self.policy:
            raise _Rejection(UNACCEPTED_POLICY, f"policy {policy.dotted} is not offered; this "
                                                f"TSA's policy is {self.policy}")
        if has_extensions:
            raise _Rejection(UNACCEPTED_EXTENSION, "this TSA accepts no request extensions")
        if nonce is not None and abs(nonce).bit_length() > MAX_NONCE_BITS:
            raise _Rejection(BAD_DATA_FORMAT, f"nonce longer than {MAX_NONCE_BITS} bits")
        # The imprint goes into TSTInfo as the client sent it (hash parameters NULL or absent
        # alike, which clients compare), re-encoded so a BER request still yields a DER token.
        copy = tsp.MessageImprint.load(imprint.dump(force=True))
        return _Request(copy, nonce, cert_req)

    # -- response ----------------------------------------------------------------------------

    def _rejection(self, fail_info: str, text: str) -> bytes:
        return _TimeStampResp({"status": {
            "status": REJECTION,
            "status_string": [text],
            "fail_info": {fail_info},
        }}).dump()

    def _token(self, request: _Request, gen_time: dt.datetime) -> cms.ContentInfo:
        """TimeStampToken: SignedData over TSTInfo (RFC 3161 §2.4.2, RFC 5652 §5)."""
        # Millisecond precision: finer digits would promise nothing the accuracy backs.
        gen_time = gen_time.replace(microsecond=gen_time.microsecond // 1000 * 1000)
        tst_fields: dict[str, Any] = {
            "version": "v1",
            "policy": self.policy,
            "message_imprint": request.message_imprint,
            "serial_number": new_serial(),
            "gen_time": gen_time,
            "accuracy": {"seconds": self.config.accuracy_seconds},
        }
        if request.nonce is not None:
            tst_fields["nonce"] = request.nonce
        tst_info = tsp.TSTInfo(tst_fields)
        econtent = tst_info.dump()
        hash_name = self._key_alg.hash_name
        signed_attrs = cms.CMSAttributes([
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute({"type": "signing_time",
                              "values": [cms.Time({"utc_time": gen_time})]}),
            cms.CMSAttribute({"type": "message_digest",
                              "values": [hashlib.new(hash_name, econtent).digest()]}),
            cms.CMSAttribute.load(self._ess_attribute_der),
        ])
        # RFC 5652 §5.4: the signature covers the DER of the attributes as a SET OF (tag 0x31),
        # which asn1crypto emits in DER order; SignerInfo then carries them as [0] IMPLICIT.
        signature = self._signer.sign(signed_attrs.dump(), self._hash)
        signer_info = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier.load(self._sid_der),
            "digest_algorithm": {"algorithm": hash_name},
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm.load(
                self._signature_algorithm_der),
            "signature": signature,
        })
        signed_data: dict[str, Any] = {
            "version": "v3",  # RFC 5652 §5.1: eContentType other than id-data
            "digest_algorithms": [{"algorithm": hash_name}],
            "encap_content_info": {"content_type": "tst_info", "content": tst_info},
            "signer_infos": [signer_info],
        }
        if request.cert_req:
            # RFC 3161 §2.4.1: certReq true → the certificate that signingCertificateV2 names.
            signed_data["certificates"] = [asn1_x509.Certificate.load(d) for d in (
                self._certificate_der, *self._intermediates_der)]
        return cms.ContentInfo({"content_type": "signed_data",
                                "content": cms.SignedData(signed_data)})
