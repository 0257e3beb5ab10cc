"""The `govpki` command as an operator runs it: a real process, a real GOVPKI_HOME, the OpenSSL
CLI as the independent checker. Errors must be one line, exit non-zero, and change nothing."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import audit_guard
from tests.conftest import TEST_PIN, TEST_SO_PIN

ROOT = Path(__file__).resolve().parents[2]
GOVPKI = str(Path(sys.executable).parent / "govpki")
DN = "CN=李四,OU=信息中心,O=青海省人民政府办公厅,L=西宁市,ST=青海省,C=CN"


def run(home: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("GOVPKI_DATABASE_URL", "GOVPKI_KEY_PASSPHRASE")}
    full_env.update({"GOVPKI_HOME": str(home), "GOVPKI_ACTOR": "cli-test"}, **(env or {}))
    result = subprocess.run([GOVPKI, *args], capture_output=True, text=True, env=full_env,
                            cwd=ROOT, check=False, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"govpki {' '.join(args)} failed: {result.stderr}")
    return result


def assert_one_line_error(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    # progress lines may come first; the error itself is exactly one line, the last one
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert words.lower() in errors[0].lower()


def openssl_csr(directory: Path, key_args: list[str]) -> Path:
    csr = directory / "req.csr"
    subprocess.run(["openssl", "req", "-new", *key_args, "-nodes", "-keyout",
                    str(directory / "req.key"), "-subj", "/CN=ignored", "-out", str(csr)],
                   check=True, capture_output=True)
    return csr


def row_counts(home: Path) -> tuple[int, int]:
    with sqlite3.connect(home / "govpki.sqlite3") as db:
        return (db.execute("SELECT count(*) FROM ca_certificate").fetchone()[0],
                db.execute("SELECT count(*) FROM audit_event").fetchone()[0])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cli-home")
    run(home, "init")
    return home


def test_init_creates_demo_hierarchy_and_refuses_a_second_time(home: Path) -> None:
    listing = run(home, "ca", "list").stdout
    for name in ("root", "officials", "devices"):
        assert f"{name} " in listing
    before = row_counts(home)
    keys_before = sorted(p.name for p in (home / "keys").iterdir())
    again = run(home, "init", check=False)
    assert_one_line_error(again, "already initialised")
    # nothing changed but the audited refusal
    assert row_counts(home) == (before[0], before[1] + 1)
    with sqlite3.connect(home / "govpki.sqlite3") as db:
        last = db.execute("SELECT action, outcome FROM audit_event ORDER BY seq DESC").fetchone()
    assert last == ("ceremony.start", "refused")
    assert sorted(p.name for p in (home / "keys").iterdir()) == keys_before
    assert run(home, "init", "--if-empty").returncode == 0
    assert (home / "govpki.toml").stat().st_mode & 0o077 == 0
    assert (home / "govpki.sqlite3").stat().st_mode & 0o077 == 0
    assert (home / "secrets" / "key-passphrase").stat().st_mode & 0o077 == 0


def test_profiles_listed(home: Path) -> None:
    out = run(home, "ca", "profiles").stdout
    for name in ("official-signing", "official-encryption", "org-encryption", "department-seal",
                 "server-tls", "ocsp-signer", "tsa", "sso-signing"):
        assert name in out
    data = json.loads(run(home, "ca", "profiles", "--json").stdout)
    assert data["official-encryption"]["key_types"] == ["rsa-2048", "rsa-3072"]


@pytest.mark.parametrize("key_args, profile", [
    (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "official-signing"),
    (["-newkey", "rsa:2048"], "official-encryption"),
])
def test_issue_verify_show_revoke(home: Path, tmp_path: Path, key_args: list[str],
                                  profile: str) -> None:
    csr = openssl_csr(tmp_path, key_args)
    cert = tmp_path / "cert.pem"
    run(home, "ca", "issue", "--ca", "officials", "--profile", profile, "--csr", str(csr),
        "--subject", DN, "--out", str(cert))
    chain = run(home, "ca", "export-chain", "--ca", "officials").stdout
    blocks = chain.split("-----END CERTIFICATE-----\n")
    (tmp_path / "issuing.pem").write_text(blocks[0] + "-----END CERTIFICATE-----\n")
    (tmp_path / "root.pem").write_text(blocks[1] + "-----END CERTIFICATE-----\n")
    verify = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile",
                             str(tmp_path / "root.pem"), "-untrusted",
                             str(tmp_path / "issuing.pem"), str(cert)],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    text = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-serial",
                           "-subject", "-nameopt", "utf8"], capture_output=True, text=True,
                          check=True).stdout
    assert "李四" in text and "信息中心" in text
    serial = text.split("serial=")[1].split()[0].lower().lstrip("0")
    shown = json.loads(run(home, "ca", "show", serial).stdout)
    assert shown["status"] == "good" and shown["profile"] == profile
    assert shown["subject"] == DN
    run(home, "ca", "suspend", serial)
    assert json.loads(run(home, "ca", "show", serial).stdout)["status"] == "hold"
    run(home, "ca", "release", serial)
    run(home, "ca", "revoke", serial, "--reason", "keyCompromise")
    shown = json.loads(run(home, "ca", "show", serial).stdout)
    assert shown["status"] == "revoked" and shown["revocation_reason"] == "keyCompromise"
    assert_one_line_error(run(home, "ca", "revoke", serial, check=False), "it is revoked")
    assert run(home, "ca", "show", serial, "--pem").stdout == cert.read_text()


@pytest.mark.parametrize("case", ["garbage", "unknown-profile", "bad-subject", "unknown-ca"])
def test_bad_input_is_one_line_and_stores_nothing(home: Path, tmp_path: Path, case: str
                                                  ) -> None:
    csr = openssl_csr(tmp_path, ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
    args = {"ca": "officials", "profile": "official-signing", "subject": DN}
    words = {"garbage": "does not parse", "unknown-profile": "unknown profile",
             "bad-subject": "CN", "unknown-ca": "no CA named"}[case]
    if case == "garbage":
        csr.write_bytes(b"\x30\x82garbage")
    elif case == "unknown-profile":
        args["profile"] = "nonesuch"
    elif case == "bad-subject":
        args["subject"] = "CN=王五 630102199003071234,O=青海省人民政府办公厅,ST=青海省,C=CN"
    else:
        args["ca"] = "nowhere"
    certs_before, _ = row_counts(home)
    result = run(home, "ca", "issue", "--ca", args["ca"], "--profile", args["profile"],
                 "--csr", str(csr), "--subject", args["subject"], check=False)
    assert_one_line_error(result, words)
    assert "630102199003071234" not in result.stderr
    assert row_counts(home)[0] == certs_before


def test_audit_verify_detects_an_altered_row(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(home, "init")
    ok = run(home, "audit", "verify")
    assert "OK" in ok.stdout
    tampering = "UPDATE audit_event SET actor = 'mallory' WHERE seq = 3"
    with sqlite3.connect(home / "govpki.sqlite3") as db, \
            pytest.raises(sqlite3.IntegrityError, match=audit_guard.message("UPDATE")):
        db.execute(tampering)  # `govpki init` made the log append-only
    with sqlite3.connect(home / "govpki.sqlite3") as db:
        audit_guard.drop(db)  # as an attacker with DDL rights: the guard only stops the rest
        db.execute(tampering)
    bad = run(home, "audit", "verify", check=False)
    assert bad.returncode != 0
    assert "seq 3" in bad.stdout


@contextmanager
def served_home(home: Path) -> Iterator[str]:
    """`govpki serve` for ``home`` on a free loopback port; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, GOVPKI_HOME=str(home))
    proc = subprocess.Popen([GOVPKI, "serve", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:  # granian drains its workers; under a loaded CI machine that takes a while
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_serve_answers_ca_certificates(home: Path) -> None:
    with served_home(home) as base:
        with urllib.request.urlopen(base + "/certs/officials.crt", timeout=5) as r:
            assert r.headers["Content-Type"] == "application/pkix-cert"
            der = r.read()
        out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject",
                              "-nameopt", "utf8"], input=der, capture_output=True, check=True)
        assert "工作人员签发CA" in out.stdout.decode()
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base + "/certs/nowhere.crt", timeout=5)
        assert info.value.code == 404
        assert info.value.headers["Content-Type"] == "application/problem+json"
        assert json.loads(info.value.read())["title"] == "unknown-ca"


@pytest.mark.hsm
def test_ceremony_on_softhsm_pin_from_env_only(tmp_path: Path, softhsm_token: dict) -> None:
    from tests import softhsm

    label = "cli-ceremony"
    softhsm.init_token(label, TEST_PIN, TEST_SO_PIN)
    module = softhsm_token["module"]
    home = tmp_path / "home"
    demo = str(ROOT / "policies" / "ceremonies" / "demo.yaml")
    env = {"CEREMONY_PIN": "wrong-pin-123", "GOVPKI_KEY_PASSPHRASE": "unused-passphrase"}
    wrong = run(home, "ca", "ceremony", demo, "--pkcs11-module", module, "--token-label", label,
                "--pin-env", "CEREMONY_PIN", env=env, check=False)
    assert_one_line_error(wrong, "PIN")
    assert "wrong-pin-123" not in wrong.stderr
    assert not (home / "govpki.toml").exists()
    env["CEREMONY_PIN"] = TEST_PIN
    out = run(home, "ca", "ceremony", demo, "--pkcs11-module", module, "--token-label", label,
              "--pin-env", "CEREMONY_PIN", env=env)
    assert "CA officials" in out.stdout
    config = (home / "govpki.toml").read_text()
    assert 'type = "pkcs11"' in config and TEST_PIN not in config
    listing = run(home, "ca", "list", env=env).stdout
    assert "pkcs11:token=cli-ceremony;object=officials-ca-1" in listing
    assert not (home / "keys").exists() or not list((home / "keys").iterdir())
    csr = openssl_csr(tmp_path, ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
    issued = run(home, "ca", "issue", "--ca", "officials", "--profile", "official-signing",
                 "--csr", str(csr), "--subject", DN, env=env)
    assert issued.stdout.startswith("-----BEGIN CERTIFICATE-----")
    assert "OK" in run(home, "audit", "verify", env=env).stdout
    raw = (home / "govpki.sqlite3").read_bytes()
    assert TEST_PIN.encode() not in raw
    again = run(home, "ca", "ceremony", demo, "--pkcs11-module", module, "--token-label", label,
                "--pin-env", "CEREMONY_PIN", env=env, check=False)
    assert_one_line_error(again, "already")


def test_ceremony_on_a_schema_db_upgrade_made_already(tmp_path: Path) -> None:
    """`govpki db upgrade` then `govpki ca ceremony`: the ceremony knows every package's
    revisions (the composition root gives ca/ them), so the order of the two is free."""
    home = tmp_path / "home"
    env = {"GOVPKI_KEY_PASSPHRASE": "a-passphrase-for-this-test"}
    run(home, "db", "upgrade", env=env)
    out = run(home, "ca", "ceremony", str(ROOT / "policies" / "ceremonies" / "demo.yaml"),
              env=env)
    assert "CA officials" in out.stdout
    assert "officials" in run(home, "ca", "list", env=env).stdout
    run(home, "db", "upgrade", env=env)  # still at head: nothing to do, no error


def test_commands_on_an_empty_home_say_what_to_do(tmp_path: Path) -> None:
    home = tmp_path / "never-initialised"
    for args in (("ca", "list"), ("audit", "verify"), ("ca", "show", "abc")):
        assert_one_line_error(run(home, *args, check=False), "govpki init")
    assert run(home, "init", "--if-empty").returncode == 0
    assert "officials" in run(home, "ca", "list").stdout
