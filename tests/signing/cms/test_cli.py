"""`govpki sign file` / `govpki verify file` through govpki's own CLI edge (GovpkiGroup): one-line
errors, exit status 1 on an invalid signature, secrets only from the environment or a prompt."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.issuance import CertificateRequest, issue_certificate
from ca.store import chain_der
from core.db import transaction
from govpki.cli import GovpkiGroup
from hsm.file_store import FileKeyStore
from signing.cms_cli import sign_file_command, verify_file_command
from tests.conftest import TEST_PASSPHRASE
from tests.signing.cms.conftest import KEY_PASSPHRASE, TOKEN_PIN, CmsPki, UsbSigner
from tests.signing.cms.helpers import flip, openssl_verify
from tests.signing.conftest import TsaServer

# The lead mounts the commands as `govpki sign file` and `govpki verify file`; the same
# two-level shape here, under govpki's error-mapping group.
cli = GovpkiGroup("govpki")
sign_group = click.Group("sign")
verify_group = click.Group("verify")
sign_group.add_command(sign_file_command)
verify_group.add_command(verify_file_command)
cli.add_command(sign_group)
cli.add_command(verify_group)

ENV_CLEAR = {"GOVPKI_KEY_PASSPHRASE": None, "GOVPKI_TOKEN_PIN": None, "GOVPKI_DEBUG": None,
             "GOVPKI_PKCS11_MODULE": None, "GOVPKI_DATABASE_URL": None}


def run(*argv: object, env: Mapping[str, str | None] | None = None,
        stdin: str | None = None) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in argv], env={**ENV_CLEAR, **(env or {})},
                                input=stdin)
    assert "Traceback" not in result.output
    return result


def sign_args(cms_pki: CmsPki, document: Path, out: Path) -> list[str | Path]:
    return ["sign", "file", document, out, "--cert", cms_pki.ec.cert_pem, "--chain",
            cms_pki.chain_pem, "--key-file", cms_pki.ec.key_pem]


def test_sign_and_verify_detached(cms_pki: CmsPki, document: Path, tmp_path: Path) -> None:
    out = tmp_path / "公文.txt.p7s"
    signed = run(*sign_args(cms_pki, document, out), env={"GOVPKI_KEY_PASSPHRASE":
                                                          KEY_PASSPHRASE})
    assert signed.exit_code == 0, signed.output
    assert "detached CMS signature" in signed.stderr
    assert openssl_verify(out, cms_pki.root_pem, document).returncode == 0

    verified = run("verify", "file", out, "--data", document, "--trust", cms_pki.root_pem)
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith("valid: 1 signer(s), detached")
    assert "signer: CN=张三" in verified.stdout
    assert "chain: CN=张三" in verified.stdout

    as_json = run("verify", "file", out, "--data", document, "--trust", cms_pki.root_pem,
                  "--json")
    report = json.loads(as_json.stdout)
    assert report["valid"] is True and report["signers"][0]["integrity"] is True

    changed = tmp_path / "changed.txt"
    changed.write_bytes(flip(document.read_bytes(), 10))
    invalid = run("verify", "file", out, "--data", changed, "--trust", cms_pki.root_pem)
    assert invalid.exit_code == 1
    assert invalid.stdout.startswith("INVALID")
    assert "message digest differs" in invalid.stdout


def test_attached_pem_and_extract(cms_pki: CmsPki, document: Path, tmp_path: Path) -> None:
    out = tmp_path / "attached.pem"
    signed = run(*sign_args(cms_pki, document, out), "--attached", "--pem",
                 env={"GOVPKI_KEY_PASSPHRASE": KEY_PASSPHRASE})
    assert signed.exit_code == 0, signed.output
    assert out.read_bytes().startswith(b"-----BEGIN CMS-----\n")
    extracted = tmp_path / "extracted.txt"
    verified = run("verify", "file", out, "--trust", cms_pki.root_pem, "--extract", extracted)
    assert verified.exit_code == 0, verified.output
    assert extracted.read_bytes() == document.read_bytes()


def test_passphrase_prompt_is_hidden(cms_pki: CmsPki, document: Path, tmp_path: Path) -> None:
    out = tmp_path / "prompted.p7s"
    signed = run(*sign_args(cms_pki, document, out), stdin=KEY_PASSPHRASE + "\n")
    assert signed.exit_code == 0, signed.output
    assert "passphrase for" in signed.output and KEY_PASSPHRASE not in signed.output


def test_errors_are_one_line(cms_pki: CmsPki, document: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.p7s"
    wrong = run(*sign_args(cms_pki, document, out), env={"GOVPKI_KEY_PASSPHRASE": "wrong"})
    assert wrong.exit_code == 1
    assert wrong.stderr.strip() == f"error: cannot decrypt {cms_pki.ec.key_pem}: wrong passphrase"
    assert not out.exists()

    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    refused = run(*sign_args(cms_pki, empty, out), env={"GOVPKI_KEY_PASSPHRASE":
                                                        KEY_PASSPHRASE})
    assert refused.exit_code == 1
    assert refused.stderr.strip() == \
        "error: empty.txt is empty (0 bytes): there is nothing to sign"
    assert not out.exists() and not list(tmp_path.glob(".out.p7s.*"))

    garbage = tmp_path / "garbage.p7s"
    garbage.write_bytes(b"this is not a signature")
    bad = run("verify", "file", garbage, "--data", document, "--trust", cms_pki.root_pem)
    assert bad.exit_code == 1
    assert len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith("error: not a CMS SignedData")

    mismatched = run("sign", "file", document, out, "--cert", cms_pki.ec.cert_pem,
                     "--key-file", cms_pki.rsa.plain_key_pem)
    assert mismatched.exit_code == 1 and "does not belong to the certificate" in mismatched.stderr

    not_a_key = run("sign", "file", document, out, "--cert", cms_pki.ec.cert_pem,
                    "--key-file", cms_pki.ec.cert_pem)
    assert not_a_key.exit_code == 1 and "is not a PEM or DER private key" in not_a_key.stderr

    detached_without_data = tmp_path / "d.p7s"
    run(*sign_args(cms_pki, document, detached_without_data),
        env={"GOVPKI_KEY_PASSPHRASE": KEY_PASSPHRASE})
    missing = run("verify", "file", detached_without_data, "--trust", cms_pki.root_pem)
    assert missing.exit_code == 1 and "the signature is detached" in missing.stderr


def test_usage_errors(cms_pki: CmsPki, document: Path, tmp_path: Path) -> None:
    no_key = run("sign", "file", document, tmp_path / "o", "--cert", cms_pki.ec.cert_pem)
    assert no_key.exit_code == 2 and "exactly one of --key" in no_key.output
    same = run("sign", "file", document, document, "--cert", cms_pki.ec.cert_pem,
               "--key-file", cms_pki.ec.key_pem)
    assert same.exit_code == 2 and "OUT must not be IN" in same.output
    no_module = run("sign", "file", document, tmp_path / "o", "--cert", cms_pki.ec.cert_pem,
                    "--key", "pkcs11:token=x;object=y")
    assert no_module.exit_code == 2 and "--module" in no_module.output
    bad_at = run("verify", "file", document, "--trust", cms_pki.root_pem, "--at", "yesterday")
    assert bad_at.exit_code == 2


@pytest.mark.hsm
def test_sign_with_the_usb_key(cms_pki: CmsPki, usb_signer: UsbSigner, document: Path,
                               tmp_path: Path) -> None:
    out = tmp_path / "usb.p7s"
    argv = ["sign", "file", document, out, "--cert", usb_signer.cert_pem, "--chain",
            cms_pki.chain_pem, "--key", usb_signer.key_uri, "--module", usb_signer.module]
    signed = run(*argv, env={"GOVPKI_TOKEN_PIN": TOKEN_PIN})
    assert signed.exit_code == 0, signed.output
    assert TOKEN_PIN not in signed.output
    assert openssl_verify(out, cms_pki.root_pem, document).returncode == 0
    wrong_pin = run(*argv, env={"GOVPKI_TOKEN_PIN": "000000"})
    assert wrong_pin.exit_code == 1 and wrong_pin.stderr.startswith("error: ")
    assert "000000" not in wrong_pin.output


def test_server_held_seal_key_and_store_revocation(cms_pki: CmsPki, document: Path,
                                                   tmp_path: Path) -> None:
    """``--key file:<name>`` signs with a key in GOVPKI_HOME's store; ``--check-revocation``
    asks the same home's CA store."""
    home = cms_pki.pki.home
    store = FileKeyStore(home / "keys", passphrase=TEST_PASSPHRASE)
    seal = store.generate("file:cms-cli-seal", "ec-p256")
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
           .sign(seal.as_private_key(), hashes.SHA256()))  # type: ignore[arg-type]
    issued = issue_certificate(cms_pki.pki.ctx, CertificateRequest(
        ca="officials", profile="department-seal",
        csr=csr.public_bytes(serialization.Encoding.PEM),
        subject="CN=青海省人民政府办公厅,O=青海省人民政府办公厅,ST=青海省,C=CN",
        requested_by="cms-tests"))
    cert_pem = tmp_path / "seal.pem"
    cert_pem.write_bytes(issued.certificate().public_bytes(serialization.Encoding.PEM))
    out = tmp_path / "sealed.p7s"
    env = {"GOVPKI_HOME": str(home), "GOVPKI_KEY_PASSPHRASE": TEST_PASSPHRASE.decode()}
    signed = run("sign", "file", document, out, "--cert", cert_pem, "--chain",
                 cms_pki.chain_pem, "--key", "file:cms-cli-seal", env=env)
    assert signed.exit_code == 0, signed.output
    verified = run("verify", "file", out, "--data", document, "--trust", cms_pki.root_pem,
                   "--check-revocation", env={"GOVPKI_HOME": str(home)})
    assert verified.exit_code == 0, verified.output
    assert "revocation: good" in verified.stdout


def test_timestamp_over_http(cms_pki: CmsPki, file_tsa_server: TsaServer, document: Path,
                             tmp_path: Path) -> None:
    with transaction(cms_pki.pki.ctx.sessions) as session:
        devices = x509.load_der_x509_certificate(chain_der(session, "devices")[0])
    devices_pem = tmp_path / "devices.pem"
    devices_pem.write_bytes(devices.public_bytes(serialization.Encoding.PEM))
    out = tmp_path / "stamped.p7s"
    signed = run(*sign_args(cms_pki, document, out), "--chain", devices_pem,
                 "--timestamp-url", file_tsa_server.url + "/tsa",
                 env={"GOVPKI_KEY_PASSPHRASE": KEY_PASSPHRASE})
    assert signed.exit_code == 0, signed.output
    assert "timestamped" in signed.stderr
    verified = run("verify", "file", out, "--data", document, "--trust", cms_pki.root_pem)
    assert verified.exit_code == 0, verified.output
    assert "timestamp (valid):" in verified.stdout
    unreachable = run(*sign_args(cms_pki, document, tmp_path / "x.p7s"), "--timestamp-url",
                      "http://127.0.0.1:9/tsa", env={"GOVPKI_KEY_PASSPHRASE": KEY_PASSPHRASE})
    assert unreachable.exit_code == 1 and "cannot be reached" in unreachable.stderr
    assert not (tmp_path / "x.p7s").exists()
