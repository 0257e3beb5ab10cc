"""`govpki sign pdf` / `govpki verify pdf` end to end, under the root group's error handling
(one line, exit 1): a remote signer over HTTP, the CA host with a server-held seal key, a USB
key, and every kind of bad input — each leaving no output file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization

from ca.revocation import revoke
from signing.pdf_cli import sign_group, verify_group
from tests.signing.pdf.conftest import USB_LABEL, USB_PIN, PdfPki
from tests.signing.pdf.helpers import add_annotation, make_encrypted_pdf

KEY_PASSPHRASE = "开发用口令-1"


@pytest.fixture(scope="module")
def cli() -> click.Group:
    """The groups mounted under the composition root's error handling, as govpki/cli.py will."""
    from govpki.cli import GovpkiGroup

    @click.group(cls=GovpkiGroup)
    def root() -> None:
        pass

    root.add_command(sign_group)
    root.add_command(verify_group)
    return root


@pytest.fixture(scope="module")
def dev_key(pdf_pki: PdfPki, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert+chain PEM, encrypted key PEM) of a development file key."""
    directory = tmp_path_factory.mktemp("dev-key")
    key, cert = pdf_pki.issue()
    key_path = directory / "key.pem"
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(KEY_PASSPHRASE.encode())))
    cert_path = directory / "cert.pem"
    cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                   for c in (cert, *pdf_pki.chain)))
    return cert_path, key_path


def _run(cli: click.Group, args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


@pytest.fixture
def remote_env(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """A machine without a CA: GOVPKI_HOME is empty, everything goes over HTTP."""
    empty = tmp_path / "empty-home"
    empty.mkdir()
    return {"GOVPKI_HOME": str(empty), "GOVPKI_KEY_FILE_PASSPHRASE": KEY_PASSPHRASE}


def test_remote_signer_and_offline_verification(cli: click.Group, pdf_pki: PdfPki, dev_key,
                                                remote_env, three_pages,
                                                tmp_path: Path) -> None:
    cert, key = dev_key
    source, out = tmp_path / "in.pdf", tmp_path / "out.pdf"
    source.write_bytes(three_pages)
    result = _run(cli, ["sign", "pdf", str(source), str(out), "--cert", str(cert),
                        "--key-file", str(key), "--reason", "同意", "--seal-org",
                        "青海省人民政府办公厅", "--page", "1", "--box", "300,100,420,220"],
                  remote_env)
    assert result.exit_code == 0, result.output
    assert "B-LT" in result.output
    verified = _run(cli, ["verify", "pdf", str(out), "--json", "--offline", "--trust",
                          str(pdf_pki.root_pem)], remote_env)
    assert verified.exit_code == 0, verified.output
    report = json.loads(verified.stdout)
    assert report["valid"] and report["signatures"][0]["signer_name"] == "张三"
    assert report["signatures"][0]["level"] == "B-LT"
    text = _run(cli, ["verify", "pdf", str(out), "--offline", "--trust",
                      str(pdf_pki.root_pem)], remote_env)
    assert "VALID (有效)" in text.stdout and "张三 (青海省人民政府办公厅)" in text.stdout
    altered = tmp_path / "altered.pdf"
    altered.write_bytes(add_annotation(out.read_bytes()))
    failed = _run(cli, ["verify", "pdf", str(altered), "--offline", "--trust",
                        str(pdf_pki.root_pem)], remote_env)
    assert failed.exit_code == 1
    assert "NOT VALID (无效)" in failed.stdout and "(FORBIDDEN)" in failed.stdout


def test_ca_host_seal_key_cross_page(cli: click.Group, pdf_pki: PdfPki, seal_key, clean_env,
                                     three_pages, tmp_path: Path) -> None:
    """On the CA host (GOVPKI_HOME initialised): the seal key from the server's key store,
    TSA and CRLs in-process, verification trusting the local roots."""
    env = {"GOVPKI_HOME": str(pdf_pki.home)}
    source, out = tmp_path / "in.pdf", tmp_path / "sealed.pdf"
    source.write_bytes(three_pages)
    result = _run(cli, ["sign", "pdf", str(source), str(out), "--cert",
                        str(pdf_pki.home / "seal.pem"), "--key", "file:seal-qh-office",
                        "--seal-org", "青海省人民政府办公厅", "--cross-page", "--level", "B-LTA",
                        "--certify"], env)
    assert result.exit_code == 0, result.output
    verified = _run(cli, ["verify", "pdf", str(out), "--json"], env)
    assert verified.exit_code == 0, verified.output
    kinds = [s["kind"] for s in json.loads(verified.stdout)["signatures"]]
    assert kinds == ["signature", "document-timestamp"]


@pytest.mark.hsm
def test_usb_key_by_uri_with_pin_from_environment(cli: click.Group, pdf_pki: PdfPki, usb_key,
                                                  remote_env, one_page,
                                                  tmp_path: Path) -> None:
    source, out = tmp_path / "in.pdf", tmp_path / "out.pdf"
    source.write_bytes(one_page)
    env = {**remote_env, "GOVPKI_TOKEN_PIN": USB_PIN}
    result = _run(cli, ["sign", "pdf", str(source), str(out), "--cert", str(usb_key.cert_pem),
                        "--key", usb_key.token_key.key_uri, "--module", usb_key.module,
                        "--level", "B-T"], env)
    assert result.exit_code == 0, result.output
    by_label = _run(cli, ["sign", "pdf", str(source), str(tmp_path / "o2.pdf"), "--cert",
                          str(usb_key.cert_pem), "--key", f"label:{usb_key.token_key.label}",
                          "--token", USB_LABEL, "--module", usb_key.module, "--level", "B-B"],
                    env)
    assert by_label.exit_code == 0, by_label.output


def _refused(cli: click.Group, args: list[str], env: dict[str, str], out: Path,
             expect: str) -> None:
    result = _run(cli, args, env)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and expect in lines[0], result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))


@pytest.mark.hsm
def test_wrong_pin_and_missing_token(cli: click.Group, usb_key, remote_env, one_page,
                                     tmp_path: Path) -> None:
    source, out = tmp_path / "in.pdf", tmp_path / "out.pdf"
    source.write_bytes(one_page)
    base = ["sign", "pdf", str(source), str(out), "--cert", str(usb_key.cert_pem),
            "--module", usb_key.module]
    _refused(cli, [*base, "--key", usb_key.token_key.key_uri],
             {**remote_env, "GOVPKI_TOKEN_PIN": "wrong-pin-0000"}, out, "wrong user PIN")
    _refused(cli, [*base, "--key", "label:x", "--token", "没有这个Key"],
             {**remote_env, "GOVPKI_TOKEN_PIN": USB_PIN}, out, "no token labelled")


def test_bad_inputs_each_one_line_and_no_output(cli: click.Group, pdf_pki: PdfPki, dev_key,
                                                remote_env, one_page, tmp_path: Path) -> None:
    cert, key = dev_key
    out = tmp_path / "out.pdf"
    cases = {
        "empty.pdf": (b"", "is empty (0 bytes)"),
        "word.pdf": (b"\xd0\xcf\x11\xe0 a .doc file", "is not a PDF"),
        "corrupt.pdf": (one_page[:200] + b"garbage" * 50, "damaged"),
        "encrypted.pdf": (make_encrypted_pdf("口令"), "is encrypted"),
    }
    for name, (data, expect) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        _refused(cli, ["sign", "pdf", str(path), str(out), "--cert", str(cert), "--key-file",
                       str(key)], remote_env, out, expect)
    huge = tmp_path / "huge.pdf"
    with open(huge, "wb") as fh:  # sparse: refused from its size before it is read
        fh.write(b"%PDF-1.7\n")
        fh.truncate(65 * 1024 * 1024)
    _refused(cli, ["sign", "pdf", str(huge), str(out), "--cert", str(cert), "--key-file",
                   str(key)], remote_env, out, "over the limit")
    source = tmp_path / "in.pdf"
    source.write_bytes(one_page)
    _refused(cli, ["sign", "pdf", str(source), str(out), "--cert", str(cert), "--key-file",
                   str(key)], {**remote_env, "GOVPKI_KEY_FILE_PASSPHRASE": "nope"}, out,
             "passphrase does not decrypt")


def test_revoked_signer_via_cli(cli: click.Group, pdf_pki: PdfPki, remote_env, one_page,
                                tmp_path: Path) -> None:
    key, cert = pdf_pki.issue()
    revoke(pdf_pki.ctx, format(cert.serial_number, "x"), "keyCompromise", ca="officials",
           actor="test")
    key_path, cert_path = tmp_path / "k.pem", tmp_path / "c.pem"
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(KEY_PASSPHRASE.encode())))
    cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                   for c in (cert, *pdf_pki.chain)))
    source, out = tmp_path / "in.pdf", tmp_path / "out.pdf"
    source.write_bytes(one_page)
    _refused(cli, ["sign", "pdf", str(source), str(out), "--cert", str(cert_path),
                   "--key-file", str(key_path), "--level", "B-B"], remote_env, out,
             "was revoked")


def test_no_secret_on_the_command_line(cli: click.Group) -> None:
    help_text = _run(cli, ["sign", "pdf", "--help"]).output
    assert "--pin" not in help_text and "--passphrase" not in help_text
    assert "GOVPKI_KEY_FILE_PASSPHRASE" in help_text


def test_existing_output_is_not_overwritten(cli: click.Group, dev_key, remote_env, one_page,
                                            tmp_path: Path) -> None:
    cert, key = dev_key
    source, out = tmp_path / "in.pdf", tmp_path / "out.pdf"
    source.write_bytes(one_page)
    out.write_bytes(b"keep me")
    result = _run(cli, ["sign", "pdf", str(source), str(out), "--cert", str(cert),
                        "--key-file", str(key)], remote_env)
    assert result.exit_code == 2 and "--force" in result.output
    assert out.read_bytes() == b"keep me"
    assert os.environ.get("GOVPKI_TOKEN_PIN") is None


def test_field_option_uses_an_existing_field_or_names_a_new_one(
        cli: click.Group, dev_key, remote_env, tmp_path: Path) -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader

    from tests.signing.pdf.helpers import make_pdf_with_field

    cert, key = dev_key
    source = tmp_path / "form.pdf"
    source.write_bytes(make_pdf_with_field("领导签发", (300, 300, 420, 420)))
    out = tmp_path / "out.pdf"
    result = _run(cli, ["sign", "pdf", str(source), str(out), "--cert", str(cert), "--key-file",
                        str(key), "--field", "领导签发", "--seal-org", "青海省人民政府办公厅",
                        "--level", "B-T"], remote_env)
    assert result.exit_code == 0, result.output
    out2 = tmp_path / "out2.pdf"
    result = _run(cli, ["sign", "pdf", str(out), str(out2), "--cert", str(cert), "--key-file",
                        str(key), "--field", "办公室核稿", "--seal-org", "办公室",
                        "--page", "1", "--box", "60,60,160,160", "--level", "B-T"], remote_env)
    assert result.exit_code == 0, result.output
    with open(out2, "rb") as fh:
        names = [s.field_name for s in PdfFileReader(fh).embedded_signatures]
    assert names == ["领导签发", "办公室核稿"]
