"""pyhanko-certvalidator validates a chain, fetching revocation from our responder at the URL the
certificates name (AIA http://127.0.0.1:8600/ocsp)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from asn1crypto import x509 as asn1_x509
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)

from ca.revocation import revoke
from ca.store import chain_der
from core.db import transaction
from ocsp.wsgi import create_ocsp_app
from tests.ocsp.conftest import LoopbackServer, issue

AIA_PORT = 8600


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def aia_server(ofile_pki) -> Iterator[LoopbackServer]:  # type: ignore[no-untyped-def]
    if not _port_free(AIA_PORT):
        pytest.skip(f"port {AIA_PORT} (the certificates' AIA OCSP URL) is in use here")
    app = create_ocsp_app(ofile_pki.ctx, listen=False)
    srv = LoopbackServer(app, AIA_PORT)
    yield srv
    srv.close()
    app.close()


def _validator(pki, leaf_der: bytes) -> CertificateValidator:  # type: ignore[no-untyped-def]
    with transaction(pki.ctx.sessions) as session:
        chain = [asn1_x509.Certificate.load(d) for d in chain_der(session, "officials")]
    policy = CertRevTrustPolicy(RevocationCheckingPolicy(
        ee_certificate_rule=RevocationCheckingRule.OCSP_REQUIRED,
        intermediate_ca_cert_rule=RevocationCheckingRule.NO_CHECK))
    context = ValidationContext(trust_roots=[chain[-1]], other_certs=chain[:-1],
                                allow_fetching=True, revinfo_policy=policy)
    return CertificateValidator(asn1_x509.Certificate.load(leaf_der),
                                intermediate_certs=chain[:-1], validation_context=context)


def test_pyhanko_validates_good_and_rejects_revoked(ofile_pki, aia_server) -> None:
    from cryptography.hazmat.primitives import serialization

    good = issue(ofile_pki)
    path = asyncio.run(_validator(ofile_pki, good.public_bytes(serialization.Encoding.DER))
                       .async_validate_usage({"digital_signature"}))
    assert path is not None
    bad = issue(ofile_pki)
    revoke(ofile_pki.ctx, format(bad.serial_number, "x"), "keyCompromise", actor="t")
    with pytest.raises(RevokedError):
        asyncio.run(_validator(ofile_pki, bad.public_bytes(serialization.Encoding.DER))
                    .async_validate_usage({"digital_signature"}))


@pytest.fixture
def full_app_server(ofile_pki) -> Iterator[LoopbackServer]:  # type: ignore[no-untyped-def]
    """The whole govpki app (CRLs, certificates, OCSP) on the URL the certificates name."""
    if not _port_free(AIA_PORT):
        pytest.skip(f"port {AIA_PORT} (the certificates' CRL DP / AIA URL) is in use here")
    import os

    from govpki.wsgi import create_app

    os.environ["GOVPKI_SCHEDULER"] = "off"  # this test publishes CRLs itself
    try:
        app = create_app(ctx=ofile_pki.ctx)
    finally:
        del os.environ["GOVPKI_SCHEDULER"]
    srv = LoopbackServer(app, AIA_PORT)
    yield srv
    srv.close()


def test_pyhanko_fetches_our_crls_for_the_whole_chain(ofile_pki, full_app_server) -> None:
    """CRL_REQUIRED for the leaf and the issuing CA: certvalidator fetches /crl/officials.crl
    and /crl/root.crl from the CRL distribution points and decides from them alone."""
    from cryptography.hazmat.primitives import serialization

    from ca.crl import publish_crls

    good = issue(ofile_pki)
    bad = issue(ofile_pki)
    revoke(ofile_pki.ctx, format(bad.serial_number, "x"), "keyCompromise", actor="t")
    publish_crls(ofile_pki.ctx, actor="t")
    with transaction(ofile_pki.ctx.sessions) as session:
        chain = [asn1_x509.Certificate.load(d) for d in chain_der(session, "officials")]
    policy = CertRevTrustPolicy(RevocationCheckingPolicy(
        ee_certificate_rule=RevocationCheckingRule.CRL_REQUIRED,
        intermediate_ca_cert_rule=RevocationCheckingRule.CRL_REQUIRED))

    def validator(der: bytes) -> CertificateValidator:
        context = ValidationContext(trust_roots=[chain[-1]], other_certs=chain[:-1],
                                    allow_fetching=True, revinfo_policy=policy)
        return CertificateValidator(asn1_x509.Certificate.load(der),
                                    intermediate_certs=chain[:-1], validation_context=context)

    path = asyncio.run(validator(good.public_bytes(serialization.Encoding.DER))
                       .async_validate_usage({"digital_signature"}))
    assert path is not None
    with pytest.raises(RevokedError):
        asyncio.run(validator(bad.public_bytes(serialization.Encoding.DER))
                    .async_validate_usage({"digital_signature"}))
