"""ca.lint_document must build exactly pkilint's document, or decline and leave it to pkilint."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pkilint import loader
from pyasn1.codec.der import encoder

from ca import lint
from ca.lint_document import CertificateDocumentLoader

_EC_KEY = ec.generate_private_key(ec.SECP256R1())
_RSA_KEY = rsa.generate_private_key(65537, 2048)


def _encoded(pdu) -> bytes | str | None:
    """The value's DER; a damaged value (a UTCTime pkilint decodes but cannot re-encode) is
    compared by the error it raises."""
    if not pdu.isValue:
        return None
    try:
        return encoder.encode(pdu)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[-200:]


def _tree(node, out: list | None = None) -> list:
    """Everything a validator can read off a node: path, name, class, tags, constraints,
    value and encoding, parent, and the order of children."""
    out = [] if out is None else out
    pdu = node.pdu
    out.append((node.path, node.name, type(pdu).__name__, pdu.tagSet, repr(pdu.subtypeSpec),
                pdu.isValue, _encoded(pdu),
                node.parent.path if node.parent is not None else None,
                node.document is not None and node.document.name))
    for child in node.children.values():
        _tree(child, out)
    return out


def _pkilint_tree(der: bytes) -> list:
    return _tree(loader.RFC5280CertificateDocumentLoader().load_der_document(der, "tbs").root)


def _cert(*, cn: str = "张三", rsa_issuer: bool = False, san: tuple[str, ...] = (),
          extensions: bool = True, ou: str = "办公室", serial: int | None = None) -> bytes:
    subject_key = ec.generate_private_key(ec.SECP256R1())
    issuer_key = _RSA_KEY if rsa_issuer else _EC_KEY
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "青海省人民政府办公厅"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "Issuing CA")])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(subject_key.public_key())
               .serial_number(serial or x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=365)))
    if extensions:
        builder = (builder
                   .add_extension(x509.KeyUsage(True, True, False, False, False, False, False,
                                                False, False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                                  critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                       subject_key.public_key()), critical=False)
                   .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                       [x509.UniformResourceIdentifier("http://127.0.0.1:8600/crl/o.crl")],
                       None, None, None)]), critical=False))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.RFC822Name(s) for s in san]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(Encoding.DER)


@pytest.mark.parametrize("kwargs", [
    {}, {"rsa_issuer": True}, {"cn": "x" * 60, "ou": "处" * 40}, {"san": ("a@example.cn",)},
    {"serial": 1}, {"serial": (1 << 159) - 1},
])
def test_same_document_as_pkilint(kwargs) -> None:
    pieces = CertificateDocumentLoader()
    for _ in range(2):  # the second time from kept pieces
        der = _cert(**kwargs)
        doc = pieces.load(der, "tbs")
        assert doc is not None
        assert _tree(doc.root) == _pkilint_tree(der)
        assert encoder.encode(doc.root.pdu) == der


def test_kept_pieces_are_shared_not_rebuilt() -> None:
    """A second certificate of the same issuer reuses the decoded issuer and extension values
    (the point of the loader), yet gets nodes of its own."""
    pieces = CertificateDocumentLoader()
    first, second = pieces.load(_cert(), "tbs"), pieces.load(_cert(), "tbs")
    issuer = "tbsCertificate.issuer.rdnSequence.0"
    assert first.root.navigate(issuer).pdu is second.root.navigate(issuer).pdu
    assert first.root.navigate(issuer) is not second.root.navigate(issuer)
    assert second.root.navigate(issuer).document is second


@pytest.mark.parametrize("der", [
    _cert(extensions=False),                    # no extensions: pkilint's loader decides
    b"\x30\x03\x02\x01\x01",                    # not a certificate
    _cert()[:-1],                               # truncated
    b"\x30\x81\x05" + b"\x30\x03\x02\x01\x01",  # long form where the short one fits
])
def test_declines_what_it_does_not_take(der: bytes) -> None:
    assert CertificateDocumentLoader().load(der, "tbs") is None


def test_a_declined_certificate_is_linted_by_pkilint() -> None:
    findings = lint.lint_certificate(_cert()[:-1])
    assert [f.code for f in findings] == ["decoding_failed"]


_BASE = _cert()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_certificates_decline_or_match_pkilint(data) -> None:
    """Whatever the damage (flipped bytes, cut or inserted bytes), the loader either declines
    or builds the very document pkilint builds; it never accepts what pkilint refuses."""
    der = bytearray(_BASE)
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, len(der) - 1))
        if kind == "flip":
            der[pos] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del der[pos:pos + data.draw(st.integers(1, 4))]
        else:
            der[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
    damaged = bytes(der)
    pieces = CertificateDocumentLoader()
    pieces.load(_BASE, "tbs")  # kept pieces of the undamaged certificate must not leak in
    doc = pieces.load(damaged, "tbs")
    try:
        expected = _pkilint_tree(damaged)
    except Exception:  # pkilint refuses it: so must the loader
        assert doc is None
        return
    if doc is not None:
        assert _tree(doc.root) == expected
