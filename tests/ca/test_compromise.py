"""The key-compromise runbook (ca/compromise.py, docs/OPERATIONS.md "Key compromise"), walked
once end to end: the issuing CA's key is declared compromised, its certificate is revoked at
the root (root CRL), a new generation is made, the affected certificates are listed, re-issued
and revoked, everything is audited — and OpenSSL agrees with each step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select

from ca.cli import checkpoint
from ca.compromise import CompromiseRefused, declare_compromise
from ca.revocation import revoke
from ca.store import find_certificate
from core.audit import AuditEvent, verify_chain
from core.db import transaction
from tests.ca.generations import (
    MATRIX_PARAMS,
    Served,
    aki,
    ca_certs,
    crl_dp,
    fetch_crl,
    issue,
    label_uri,
    openssl_ocsp,
    openssl_verify,
    serial,
    serve_own_pki,
    ski,
)

# Walked once per key store: file keys on SQLite, SoftHSM2 on PostgreSQL.
PAIRS = [p for p in MATRIX_PARAMS if p.id in ("sqlite-file", "postgres-softhsm")]


@pytest.fixture(scope="module", params=PAIRS)
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve_own_pki(request, tmp_path_factory, *request.param)


def spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def listed(crl: x509.CertificateRevocationList) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for entry in crl:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
        except x509.ExtensionNotFound:
            reason = None
        out[format(entry.serial_number, "x")] = reason
    return out


def test_key_compromise_runbook(served: Served, tmp_path: Path) -> None:
    pki, ctx = served.pki, served.pki.ctx
    signing = issue(pki, subscriber_ref="ra-official:7/request:70")
    seal = issue(pki, profile="department-seal", subscriber_ref="ra-official:8/request:80")
    already = issue(pki)
    revoke(ctx, serial(already), "superseded", ca="officials", actor="test")
    root, (gen1,) = ca_certs(pki)

    report = declare_compromise(ctx, "officials", actor="ca-admin",
                                key_uri=label_uri(pki, "officials-ca-2"),
                                ocsp_key_uri=label_uri(pki, "officials-ocsp-2"))

    # 1-2. The compromised generation's certificate is revoked at the root: cACompromise.
    assert (report.generation, report.parent, report.new_generation) == (1, "root", 2)
    assert report.ca_serial == serial(gen1)
    assert listed(fetch_crl(gen1))[serial(gen1)] == "ca_compromise"
    # 3. A new generation issues from now on.
    _, (_, gen2) = ca_certs(pki)
    assert aki(issue(pki)) == ski(gen2) and spki(gen2) != spki(gen1)
    # 4. The affected certificates are listed; the already revoked one is not.
    by_serial = {a.serial: a for a in report.affected}
    assert serial(already) not in by_serial
    assert by_serial[serial(signing)].action == "reissued"
    assert by_serial[serial(seal)].action == "reissued"
    assert [a.action for a in report.affected if a.action == "kept"] == ["kept"]  # OCSP signer
    for old in (signing, seal):
        item = by_serial[serial(old)]
        with transaction(ctx.sessions) as session:
            assert item.replacement is not None
            new = find_certificate(session, item.replacement, "officials")
            assert find_certificate(session, serial(old), "officials").revocation_reason \
                == "cACompromise"
        cert = new.certificate()
        # Same subscriber, subject and key; new key generation; never longer than before.
        assert new.subscriber_ref == item.subscriber_ref and new.profile == item.profile
        assert cert.subject == old.subject and spki(cert) == spki(old)
        assert aki(cert) == ski(gen2) and cert.not_valid_after_utc <= old.not_valid_after_utc
        assert crl_dp(cert).endswith("/crl/officials/g2.crl")

        # OpenSSL: the old certificate fails on its own CRL and on the chain (the CA itself is
        # revoked at the root); the replacement passes with every CRL on its path.
        out = openssl_verify(tmp_path, old, root, [gen1, gen2])
        assert out.returncode != 0 and "certificate revoked" in out.stdout + out.stderr
        out = openssl_verify(tmp_path, old, root, [gen1, gen2], whole_chain=True)
        assert out.returncode != 0 and "certificate revoked" in out.stdout + out.stderr
        out = openssl_verify(tmp_path, cert, root, [gen1, gen2], whole_chain=True)
        assert out.returncode == 0 and ": OK" in out.stdout, out.stdout + out.stderr
        # OCSP: the old generation's signer answers "revoked", the new one "good".
        out = openssl_ocsp(tmp_path, served.base, old, gen1, root)
        assert "Response verify OK" in out.stderr and ": revoked" in out.stdout
        assert "Reason: cACompromise" in out.stdout
        out = openssl_ocsp(tmp_path, served.base, cert, gen2, root)
        assert "Response verify OK" in out.stderr and ": good" in out.stdout

    # 5. Audited, and the audit chain verifies.
    with transaction(ctx.sessions) as session:
        actions = [e.action for e in session.scalars(
            select(AuditEvent).where(AuditEvent.actor == "ca-admin").order_by(AuditEvent.seq))]
    for action in ("ca.compromise.declare", "ca.revoke", "ca.rollover", "ca.reissue",
                   "ca.compromise.complete"):
        assert action in actions, action
    assert actions.index("ca.compromise.declare") < actions.index("ca.rollover") \
        < actions.index("ca.compromise.complete")
    checkpoint(ctx)
    audit_key = ctx.keyring.get(ctx.config.audit.key_uri).public_key()
    with transaction(ctx.sessions) as session:
        verdict = verify_chain(session, ctx.config.path(ctx.config.audit.checkpoint_file),
                               audit_key)
    assert verdict.first_problem is None, verdict.first_problem

    # Run again (an interrupted run is simply repeated): nothing more to do for generation 1.
    again = declare_compromise(ctx, "officials", actor="ca-admin", generation=1)
    assert again.rollover is None and again.new_generation == 2
    assert [a.action for a in again.affected] == ["kept"]


def test_compromise_without_reissue_lists_for_the_ra(served: Served) -> None:
    """--no-reissue: the affected certificates are revoked and listed for re-key through the
    RA (a new key on the official's USB key), nothing is re-issued by the CA; the report says
    whom to notify (the RA's official behind the certificate)."""
    from govpki.subscribers import official_to_notify
    from ra import operators, orgs, requests
    from ra.officials import OfficialInput, create_official
    from tests.ca.helpers import make_csr, new_key

    pki, ctx = served.pki, served.pki.ctx
    orgs.load_organisations(ctx.sessions, actor="test")
    admin = operators.add_operator(ctx.sessions, None, "cmp-admin", org_code="630000",
                                   role="ca-admin")
    clerk = operators.add_operator(ctx.sessions, admin, "cmp-clerk", org_code="630100",
                                   role="ra-operator")
    approver = operators.add_operator(ctx.sessions, admin, "cmp-approver", org_code="630100",
                                      role="ra-operator")
    official = create_official(ctx.sessions, clerk, OfficialInput(
        "QH-CMP-1", "孙七", "630100-BGT", "科员", "0971-1234567", "秘书科"))
    done = requests.submit(ctx, clerk, official.identifier, "new-pair",
                           csr=make_csr(new_key("ec-p256")))
    done = requests.execute(ctx, approver, requests.approve(ctx, approver, done.id).id)
    ra_serial = done.issued[0].serial

    report = declare_compromise(ctx, "officials", actor="ca-admin", reissue=False,
                                key_uri=label_uri(pki, "officials-ca-3"),
                                ocsp_key_uri=label_uri(pki, "officials-ocsp-3"))
    item = next(a for a in report.affected if a.serial == ra_serial)
    assert (item.action, item.replacement) == ("reissue-through-ra", None)
    assert item.subscriber_ref is not None and item.subscriber_ref.startswith(
        official.subscriber_ref + "/")
    document = report.as_json(notify=lambda ref: official_to_notify(ctx, ref) if ref else None)
    assert document["new_generation"] == 3
    listed = next(a for a in document["affected"]  # type: ignore[attr-defined]
                  if a["serial"] == ra_serial)
    assert listed["notify"] == {"official": "QH-CMP-1", "name": "孙七",
                                "organisation": official.organisation.code,
                                "organisation_name": official.organisation.name,
                                "contact": "0971-1234567"}
    # CA and service certificates name nobody to notify.
    assert all(a["notify"] is None for a in document["affected"]  # type: ignore[attr-defined]
               if not str(a["subscriber_ref"]).startswith("ra-official:"))
    assert official_to_notify(ctx, "ra-official:999999/request:1") is None
    with transaction(ctx.sessions) as session:
        assert find_certificate(session, ra_serial, "officials").status == "revoked"


def test_a_root_compromise_is_refused_with_the_procedure(served: Served) -> None:
    with pytest.raises(CompromiseRefused, match="root ceremony"):
        declare_compromise(served.pki.ctx, "root", actor="ca-admin")
