"""Issuing-CA key rollover (ca/rollover.py), with the OpenSSL CLI as the arbiter.

After a rollover, a certificate of the old generation and one of the new must each verify with
``openssl verify -crl_check`` against the CRL fetched over HTTP from the URL in its own CRL
distribution point, a revoked one of each must fail with "certificate revoked", and
``openssl ocsp -issuer <its generation's certificate>`` must verify the answer for each. Then
the old generation is retired once (with a controlled clock) its last certificate has expired.
Each storage × key-store pair gets a PKI of its own: a rollover changes the CA for everyone.
"""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from ca.crl import latest_crl, publish_crls
from ca.errors import UnknownCa
from ca.issuer import cached_issuer
from ca.models import Certificate, Generation
from ca.revocation import revoke
from ca.rollover import RolloverRefused, retire_finished, rollover, summaries
from ca.store import get_authority
from core.audit import AuditEvent
from core.db import transaction
from core.errors import GovpkiError
from ocsp.signer import ensure_fresh
from tests.ca.generations import (
    MATRIX_PARAMS,
    Served,
    aki,
    ca_certs,
    crl_dp,
    issue,
    label_uri,
    openssl_ocsp,
    openssl_verify,
    serial,
    serve_own_pki,
    ski,
)


@pytest.fixture(scope="module", params=MATRIX_PARAMS)
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve_own_pki(request, tmp_path_factory, *request.param)


def test_rollover_old_and_new_generation_verify_with_their_own_crl_and_ocsp(
        served: Served, tmp_path: Path) -> None:
    pki, ctx = served.pki, served.pki.ctx
    old_good, old_revoked, old_short = issue(pki), issue(pki), issue(pki, days=1)
    cached_issuer(ctx, "officials")  # the 30 s cache is warm with generation 1

    result = rollover(ctx, "officials", actor="test", key_uri=label_uri(pki, "officials-ca-2"),
                      ocsp_key_uri=label_uri(pki, "officials-ocsp-2"))
    assert (result.previous_generation, result.generation) == (1, 2)
    root, (gen1, gen2) = ca_certs(pki)
    assert gen2.subject == gen1.subject and ski(gen2) != ski(gen1)
    assert aki(gen2) == ski(root) and result.ocsp_signer is not None
    assert aki(result.ocsp_signer.certificate()) == ski(gen2)
    # The key lives where the first one does: file key or token object.
    assert result.key_uri.split(":")[0] == label_uri(pki, "x").split(":")[0]

    # New issuance uses the new key at once, in this process (no waiting out the cache).
    new_good, new_revoked = issue(pki), issue(pki)
    assert aki(new_good) == ski(gen2) and aki(old_good) == ski(gen1)
    base = served.base
    assert crl_dp(old_good) == f"{base}/crl/officials.crl"
    assert crl_dp(new_good) == f"{base}/crl/officials/g2.crl"
    revoke(ctx, serial(old_revoked), "keyCompromise", ca="officials", actor="test")
    revoke(ctx, serial(new_revoked), "keyCompromise", ca="officials", actor="test")
    publish_crls(ctx, "officials")

    # OpenSSL decides: each certificate against the CRL its own CRL DP serves.
    for cert in (old_good, new_good):
        out = openssl_verify(tmp_path, cert, root, [gen1, gen2])
        assert out.returncode == 0 and ": OK" in out.stdout, out.stdout + out.stderr
    for cert in (old_revoked, new_revoked):
        out = openssl_verify(tmp_path, cert, root, [gen1, gen2])
        assert out.returncode != 0 and "certificate revoked" in out.stdout + out.stderr
    # Each generation's CRL lists only what that key signed.
    old_crl = latest_crl(ctx, "officials")
    new_crl = latest_crl(ctx, "officials", generation=2)
    assert old_crl is not None and new_crl is not None
    assert {serial(old_revoked)} <= {format(e.serial_number, "x") for e in old_crl.crl()}
    assert serial(new_revoked) not in {format(e.serial_number, "x") for e in old_crl.crl()}
    assert [format(e.serial_number, "x") for e in new_crl.crl()] == [serial(new_revoked)]
    assert old_crl.crl().is_signature_valid(gen1.public_key())  # type: ignore[arg-type]
    assert new_crl.crl().is_signature_valid(gen2.public_key())  # type: ignore[arg-type]

    # OCSP: the old generation's answers come from its own signer, found by issuerKeyHash.
    for cert, issuer, status in ((old_good, gen1, "good"), (old_revoked, gen1, "revoked"),
                                 (new_good, gen2, "good"), (new_revoked, gen2, "revoked")):
        out = openssl_ocsp(tmp_path, base, cert, issuer, root)
        assert "Response verify OK" in out.stderr, out.stdout + out.stderr
        assert f"{tmp_path / (serial(cert) + '.pem')}: {status}" in out.stdout, out.stdout
    # A CertID under the other generation's key does not name the certificate.
    out = openssl_ocsp(tmp_path, base, old_good, gen2, root)
    assert ": unknown" in out.stdout and "Response verify OK" in out.stderr

    # The old generation's signer is renewed under the old generation, and still verifies.
    renewed = {r.generation: r for r in ensure_fresh(ctx, force=True, ca="officials",
                                                      actor="test")}
    assert set(renewed) == {1, 2}
    with transaction(ctx.sessions) as session:
        events = {e.action for e in session.scalars(select(AuditEvent).where(
            AuditEvent.object_id.in_(["officials"])))}
    assert {"ca.rollover.start", "ca.generation.create", "ca.rollover"} <= events

    # Retirement, with a controlled clock: not while one certificate of generation 1 lives.
    last = max(c.not_valid_after_utc for c in (old_good, old_revoked, old_short))
    assert retire_finished(ctx, actor="test", now=last - dt.timedelta(seconds=1)) == []
    assert next(g.unexpired for g in summaries(ctx, "officials")) >= 3
    retired = retire_finished(ctx, actor="test", now=last + dt.timedelta(seconds=1))
    assert [(r.ca, r.generation) for r in retired] == [("officials", 1)]
    # A retired generation publishes no more CRLs and its CertIDs are refused by OCSP.
    published = publish_crls(ctx, "officials")
    assert {r.generation for r in published} == {2}
    out = openssl_ocsp(tmp_path, base, old_good, gen1, root)
    assert "unauthorized" in (out.stdout + out.stderr).lower()
    out = openssl_ocsp(tmp_path, base, new_good, gen2, root)
    assert ": good" in out.stdout and "Response verify OK" in out.stderr
    # Issuance goes on under generation 2.
    assert aki(issue(pki)) == ski(gen2)
    with transaction(ctx.sessions) as session:
        gen_rows = session.scalars(select(Generation).order_by(Generation.id)).all()
        assert any(g.retired_reason == "expired" for g in gen_rows)
    # The first generation's URLs still answer with what they named (its last CRL).
    with urllib.request.urlopen(f"{base}/certs/officials.crt", timeout=10) as response:
        assert response.read() == gen1.public_bytes(serialization.Encoding.DER)
    with urllib.request.urlopen(f"{base}/certs/officials/g2.crt", timeout=10) as response:
        assert response.read() == gen2.public_bytes(serialization.Encoding.DER)


def test_published_paths_refuse_what_does_not_exist(served: Served) -> None:
    """Unknown generations and malformed generation paths are 404 problems, never a 500."""
    for path in ("/crl/officials/g9.crl", "/crl/officials/g0.crl", "/crl/officials/x2.crl",
                 "/crl/nosuch/g2.crl", "/certs/officials/g9.crt", "/certs/officials/gg.crt",
                 "/crl/officials/g2-delta-delta.crl"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(served.base + path, timeout=10)
        assert caught.value.code == 404, path
        assert caught.value.headers["Content-Type"].startswith("application/problem+json")


def test_rollover_refusals_change_nothing(served: Served) -> None:
    pki, ctx = served.pki, served.pki.ctx

    def counts() -> tuple[int, int]:
        with transaction(ctx.sessions) as session:
            return (session.scalar(select(func.count()).select_from(Generation)) or 0,
                    session.scalar(select(func.count()).select_from(Certificate)) or 0)

    before = counts()
    with pytest.raises(RolloverRefused, match="is a root"):
        rollover(ctx, "root", actor="test")
    with transaction(ctx.sessions) as session:
        taken = get_authority(session, "devices").key_uri  # a key that exists
    with pytest.raises(RolloverRefused, match="already exist"):
        rollover(ctx, "officials", actor="test", key_uri=taken)
    with pytest.raises(RolloverRefused, match="different names"):
        rollover(ctx, "officials", actor="test", key_uri=label_uri(pki, "same"),
                 ocsp_key_uri=label_uri(pki, "same"))
    with pytest.raises(RolloverRefused, match="outside 1"):
        rollover(ctx, "officials", actor="test", validity_days=99999)
    with pytest.raises(UnknownCa):
        rollover(ctx, "nosuch", actor="test")
    assert counts() == before
    assert not ctx.keyring.exists(label_uri(pki, "same"))
    with transaction(ctx.sessions) as session:
        refusals = session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "ca.rollover", AuditEvent.outcome == "refused"))
    assert refusals == 5


# --- the operator's commands ---------------------------------------------------------------

@pytest.mark.slow
def test_rollover_commands_as_the_operator_runs_them(tmp_path: Path) -> None:
    """`govpki ca rollover`, `ca generations`, `ca retire-generations`, `ca compromise` in a
    real process on a demo home (the steps docs/OPERATIONS.md gives); refusals are one line
    and change nothing."""
    import json

    from tests.govpki.test_cli import assert_one_line_error, row_counts, run

    home = tmp_path / "home"
    run(home, "init")
    out = run(home, "ca", "rollover", "officials", "--reason", "planned renewal")
    assert "generation 2 (was 1)" in out.stdout and "ocsp-signer for officials" in out.stdout
    assert any(p.name.startswith("officials-ca-2") for p in (home / "keys").iterdir())
    gens = json.loads(run(home, "ca", "generations", "officials", "--json").stdout)
    assert [(g["generation"], g["current"], g["status"]) for g in gens] == [
        (1, False, "good"), (2, True, "good")]

    before = row_counts(home)
    assert_one_line_error(run(home, "ca", "rollover", "root", check=False), "is a root")
    assert row_counts(home) == (before[0], before[1] + 1)  # the audited refusal, nothing else
    # Generation 1 of the demo signed nothing but its OCSP signer: retired at once.
    assert "retired officials generation 1 (expired)" in run(
        home, "ca", "retire-generations").stdout

    report_file = tmp_path / "compromise.json"
    out = run(home, "ca", "compromise", "officials", "--yes", "--report", str(report_file))
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert (report["compromised_generation"], report["new_generation"]) == (2, 3)
    assert "revoked at root" in out.stderr
    gens = json.loads(run(home, "ca", "generations", "officials", "--json").stdout)
    assert [(g["generation"], g["current"], g["status"], g["retired_reason"])
            for g in gens] == [(1, False, "good", "expired"), (2, False, "revoked", None),
                               (3, True, "good", None)]
    run(home, "audit", "verify")


# --- an offline root ----------------------------------------------------------------------------

@pytest.mark.hsm
def test_offline_root_token_is_brought_out_for_rollover_and_root_crls(
        softhsm_token: dict[str, str], tmp_path: Path) -> None:
    """The root key on a PKCS#11 token that the serving configuration does not open (kept in
    the safe); issuing CA keys in the file store. The scheduler's CRL round publishes the
    issuing CAs and passes the root by quietly; a rollover and the root's CRL are signed with
    the token brought out for the event (``--parent-*`` / ``crl publish --pkcs11-module``)."""
    from ca.ceremony import load_ceremony, run_ceremony
    from ca.cli import DEMO_CEREMONY
    from ca.compromise import declare_compromise
    from ca.context import CaContext
    from ca.crl import republish_due
    from core import migrate
    from core.config import AuditConfig, Config
    from core.db import make_engine
    from govpki.migrations import all_version_locations
    from hsm.file_store import FileKeyStore
    from hsm.keystore import KeyRing
    from hsm.pkcs11_store import Pkcs11KeyStore
    from hsm.pkcs11_uri import Pkcs11Uri
    from tests.conftest import TEST_PASSPHRASE

    prefix = f"{tmp_path.name[-20:]}-"
    root_uri = Pkcs11Uri(token=softhsm_token["label"], object=prefix + "root-ca-1").format()
    url = f"sqlite:///{tmp_path / 'govpki.sqlite3'}"
    engine = make_engine(url)
    migrate.upgrade(engine, all_version_locations())
    engine.dispose()
    config = Config(home=tmp_path, database_url=url, public_base_url="http://127.0.0.1:8600",
                    audit=AuditConfig(key_uri="file:audit"))
    files = FileKeyStore(tmp_path / "keys", passphrase=TEST_PASSPHRASE)
    with Pkcs11KeyStore(softhsm_token["module"], softhsm_token["label"],
                        pin=softhsm_token["pin"]) as root_token:
        ceremony_ctx = CaContext.open(config, keyring=KeyRing([files, root_token]))
        run_ceremony(ceremony_ctx, load_ceremony(DEMO_CEREMONY), actor="test",
                     key_uri=lambda label: root_uri if label == "root-ca-1"
                     else f"file:{prefix}{label}")
        ceremony_ctx.close()

        online = CaContext.open(config, keyring=KeyRing([files]))  # the token is in the safe
        try:
            published = republish_due(online)
            assert {r.ca for r in published} == {"officials", "devices"}
            with transaction(online.sessions) as session:
                failures = session.scalar(select(func.count()).select_from(AuditEvent).where(
                    AuditEvent.action == "ca.crl.publish", AuditEvent.outcome == "failure"))
            assert failures == 0  # passed by, not failed every minute
            with pytest.raises(GovpkiError):
                publish_crls(online, "root")  # asked for explicitly: a clear refusal

            # The token is brought out: the rollover's certificate is signed by the root on it.
            wrong = online.keyring.get(f"file:{prefix}devices-ca-1")
            with pytest.raises(RolloverRefused, match="is not the key of CA 'root'"):
                rollover(online, "officials", actor="test", parent_signer=wrong)
            result = rollover(online, "officials", actor="test",
                              parent_signer=root_token.get(root_uri))
            assert result.generation == 2 and result.key_uri.startswith("file:")
            # `govpki crl publish --ca root --pkcs11-module ... --token-label ...`
            records = publish_crls(online, "root", signer=root_token.get(root_uri))
            assert [(r.ca, r.is_delta) for r in records] == [("root", False), ("root", True)]
            assert records[0].crl().is_signature_valid(
                root_token.get(root_uri).public_key())  # type: ignore[arg-type]
            # A key compromise with the root brought out: revoked on the root's CRL.
            report = declare_compromise(online, "officials", actor="test",
                                        parent_signer=root_token.get(root_uri))
            root_crl = latest_crl(online, "root")
            assert root_crl is not None and report.ca_serial in {
                format(e.serial_number, "x") for e in root_crl.crl()}
        finally:
            online.close()


@pytest.mark.hsm
@pytest.mark.slow
def test_root_token_options_as_the_operator_runs_them(softhsm_token: dict[str, str],
                                                      tmp_path: Path) -> None:
    """`govpki crl publish --ca root --pkcs11-module … --token-label …` and `govpki ca rollover
    … --parent-pkcs11-module … --parent-token-label …` on a SoftHSM2 home, PINs from the
    environment only (docs/OPERATIONS.md, Key custody)."""
    from tests import softhsm
    from tests.conftest import TEST_PIN, TEST_SO_PIN
    from tests.govpki.test_cli import ROOT, assert_one_line_error, run

    label = "cli-rollover"
    softhsm.init_token(label, TEST_PIN, TEST_SO_PIN)
    module = softhsm_token["module"]
    home = tmp_path / "home"
    env = {"GOVPKI_PKCS11_PIN": TEST_PIN, "GOVPKI_ROOT_PIN": TEST_PIN,
           "GOVPKI_KEY_PASSPHRASE": "unused-passphrase"}
    run(home, "ca", "ceremony", str(ROOT / "policies" / "ceremonies" / "demo.yaml"),
        "--pkcs11-module", module, "--token-label", label, env=env)
    out = run(home, "crl", "publish", "--ca", "root", "--pkcs11-module", module,
              "--token-label", label, env=env)
    assert out.stdout.count("root ") == 2  # a full CRL and its delta
    wrong = run(home, "ca", "rollover", "officials", "--parent-pkcs11-module", module,
                "--parent-token-label", "no-such-token", env=env, check=False)
    assert_one_line_error(wrong, "no-such-token")
    out = run(home, "ca", "rollover", "officials", "--parent-pkcs11-module", module,
              "--parent-token-label", label, env=env)
    assert "generation 2 (was 1)" in out.stdout
    assert f"pkcs11:token={label};object=officials-ca-2" in out.stdout
    assert TEST_PIN not in out.stdout + out.stderr
