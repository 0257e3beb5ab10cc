"""Building the to-be-signed certificate and putting the real signature on it.

Route (b) of DESIGN.md: pyca's builder signs with a throwaway key of the issuer's algorithm, which
gives the exact TBS bytes (with the real issuer name, AKI and signature algorithm); those bytes
are linted, recorded, and then signed by the issuer's key wherever it lives.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPublicKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID, ObjectIdentifier

from ca.der import assemble_signed, replace_tbs_signature_algorithm, signature_algorithm_of
from hsm.algorithms import KeyType, algorithm
from hsm.signer import Signer, SoftwareSigner
from policies.profiles import KeyUsagePolicy

_ATTRS = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "emailAddress": NameOID.EMAIL_ADDRESS,
}


@dataclass(frozen=True)
class ExtensionPlan:
    """The extensions a profile asks for, resolved for one key family and one CA's URLs."""

    key_usage: tuple[str, ...]  # RFC 5280 names
    key_usage_critical: bool = True
    extended_key_usage: tuple[str, ...] = ()  # dotted OIDs
    eku_critical: bool = False
    is_ca: bool = False
    path_length: int | None = None
    policy_oids: tuple[str, ...] = ()
    crl_url: str | None = None
    delta_crl_url: str | None = None
    ocsp_url: str | None = None
    ca_issuers_url: str | None = None
    ocsp_nocheck: bool = False
    san_dns: tuple[str, ...] = ()
    san_ip: tuple[str, ...] = ()
    san_email: tuple[str, ...] = ()
    extra: tuple[tuple[x509.ExtensionType, bool], ...] = field(default=())


def build_name(attributes: list[tuple[str, str]]) -> x509.Name:
    """C as PrintableString (RFC 5280 App. A), everything else UTF8String: Chinese names intact."""
    rdns = []
    for short, value in attributes:
        oid = _ATTRS[short]
        if short in ("C", "serialNumber"):
            attr = x509.NameAttribute(oid, value, _type=x509.name._ASN1Type.PrintableString)
        elif short == "emailAddress":
            attr = x509.NameAttribute(oid, value, _type=x509.name._ASN1Type.IA5String)
        else:
            attr = x509.NameAttribute(oid, value, _type=x509.name._ASN1Type.UTF8String)
        rdns.append(x509.RelativeDistinguishedName([attr]))
    return x509.Name(rdns)


def _key_usage(names: tuple[str, ...]) -> x509.KeyUsage:
    return x509.KeyUsage(**KeyUsagePolicy(names).x509_flags())


def extensions_for(
    plan: ExtensionPlan,
    subject_public_key: CertificatePublicKeyTypes,
    issuer_ski: bytes | None,
) -> list[tuple[x509.ExtensionType, bool]]:
    exts: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=plan.is_ca, path_length=plan.path_length if plan.is_ca else None),
         True),
        (_key_usage(plan.key_usage), plan.key_usage_critical),
    ]
    if plan.extended_key_usage:
        exts.append((x509.ExtendedKeyUsage(
            [ObjectIdentifier(oid) for oid in plan.extended_key_usage]),
                     plan.eku_critical))
    exts.append((x509.SubjectKeyIdentifier.from_public_key(subject_public_key), False))
    if issuer_ski is not None:
        exts.append((x509.AuthorityKeyIdentifier(issuer_ski, None, None), False))
    if plan.policy_oids:
        exts.append((x509.CertificatePolicies(
            [x509.PolicyInformation(ObjectIdentifier(o), None) for o in plan.policy_oids]), False))
    if plan.crl_url:
        exts.append((x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(plan.crl_url)], None, None, None)]), False))
    if plan.delta_crl_url:
        exts.append((x509.FreshestCRL([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(plan.delta_crl_url)], None, None, None)]), False))
    aia = []
    if plan.ocsp_url:
        aia.append(x509.AccessDescription(
            x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(plan.ocsp_url)))
    if plan.ca_issuers_url:
        aia.append(x509.AccessDescription(
            x509.AuthorityInformationAccessOID.CA_ISSUERS,
            x509.UniformResourceIdentifier(plan.ca_issuers_url)))
    if aia:
        exts.append((x509.AuthorityInformationAccess(aia), False))
    san: list[x509.GeneralName] = [x509.DNSName(d) for d in plan.san_dns]
    san += [x509.IPAddress(ipaddress.ip_address(i)) for i in plan.san_ip]
    san += [x509.RFC822Name(e) for e in plan.san_email]
    if san:
        exts.append((x509.SubjectAlternativeName(san), False))
    if plan.ocsp_nocheck:
        exts.append((x509.OCSPNoCheck(), False))
    exts.extend(plan.extra)
    return exts


_throwaway: dict[KeyType, SoftwareSigner] = {}
_throwaway_lock = threading.Lock()


def throwaway_signer(key_type: KeyType) -> SoftwareSigner:
    """A per-process key of the issuer's algorithm, used only to get pyca to emit TBS bytes."""
    with _throwaway_lock:
        signer = _throwaway.get(key_type)
        if signer is None:
            signer = SoftwareSigner(
                f"throwaway:{key_type.value}", algorithm(key_type).generate_software_key()
            )
            _throwaway[key_type] = signer
        return signer


_algorithm_ids: dict[KeyType, bytes] = {}


def signature_algorithm_id(key_type: KeyType) -> bytes:
    """The AlgorithmIdentifier DER pyca writes when a key of ``key_type`` signs (once per
    process, from a certificate the throwaway key signs)."""
    found = _algorithm_ids.get(key_type)
    if found is None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "algorithm")])
        key = throwaway_signer(key_type).as_private_key()
        now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        der = (x509.CertificateBuilder().issuer_name(name).subject_name(name)
               .public_key(key.public_key()).serial_number(1)  # type: ignore[arg-type]
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
               .sign(key, algorithm(key_type).hash_algorithm())  # type: ignore[arg-type]
               .public_bytes(Encoding.DER))
        found = _algorithm_ids[key_type] = signature_algorithm_of(der)
    return found


@dataclass(frozen=True)
class ToBeSigned:
    tbs_der: bytes
    algorithm_der: bytes
    lint_der: bytes  # the throwaway-signed certificate pkilint reads


def build_tbs(
    *,
    issuer_name: x509.Name,
    issuer_key_type: KeyType,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> ToBeSigned:
    builder = (
        x509.CertificateBuilder()
        .issuer_name(issuer_name)
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical)
    issuer_algorithm = algorithm(issuer_key_type)
    if issuer_algorithm.family == "ec":
        cert = builder.sign(
            throwaway_signer(issuer_key_type).as_private_key(),  # type: ignore[arg-type]
            issuer_algorithm.hash_algorithm(),  # type: ignore[arg-type]
        )
        der = cert.public_bytes(Encoding.DER)
        return ToBeSigned(cert.tbs_certificate_bytes, signature_algorithm_of(der), der)
    # An RSA signature costs twenty ECDSA ones, and the throwaway signature is thrown away:
    # a P-256 key signs, and the issuer's AlgorithmIdentifier replaces ECDSA's in the TBS.
    # pkilint reads no signature value (it has no issuer key), so the certificate it lints
    # carries zeros of the issuer's signature length.
    cert = builder.sign(
        throwaway_signer(KeyType.EC_P256).as_private_key(),  # type: ignore[arg-type]
        issuer_algorithm.hash_algorithm(),  # type: ignore[arg-type]
    )
    algorithm_der = signature_algorithm_id(issuer_key_type)
    tbs_der = replace_tbs_signature_algorithm(cert.tbs_certificate_bytes, algorithm_der)
    lint_der = assemble_signed(tbs_der, algorithm_der, bytes(issuer_algorithm.bits // 8))
    return ToBeSigned(tbs_der, algorithm_der, lint_der)


def sign_tbs(tbs: ToBeSigned, signer: Signer, issuer_public_key: CertificateIssuerPublicKeyTypes
             ) -> x509.Certificate:
    """Sign the recorded TBS bytes with the real key and check the result before anyone sees it."""
    hash_algorithm = algorithm(signer.key_type).hash_algorithm()
    signature = signer.sign(tbs.tbs_der, hash_algorithm)
    verify_signature(issuer_public_key, signature, tbs.tbs_der, hash_algorithm)
    return x509.load_der_x509_certificate(
        assemble_signed(tbs.tbs_der, tbs.algorithm_der, signature)
    )


def verify_signature(public_key: CertificateIssuerPublicKeyTypes, signature: bytes, data: bytes,
                     hash_algorithm: hashes.HashAlgorithm) -> None:
    """Raises InvalidSignature: a key that signs wrongly must never produce a certificate."""
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
    else:
        raise TypeError(f"unsupported issuer key {type(public_key).__name__}")
