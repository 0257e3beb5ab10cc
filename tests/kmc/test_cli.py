"""`govpki kmc ...` on the shared PKI (context injected), operators resolved by the RA as the
composition root wires them; the released file is unwrapped on a SoftHSM2 USB key."""

from __future__ import annotations

import json
import stat
from contextlib import contextmanager

import pytest
from click.testing import CliRunner

from ca.revocation import status_of
from kmc import cli
from kmc.errors import Forbidden, InvalidTransition, KmcAlreadyInitialised, TwoPersonRuleViolation
from kmc.provider import KmcEncryptionProvider
from ra import operators as ra_operators
from ra import requests
from tests.ca.helpers import make_csr, new_key
from tests.kmc.conftest import decrypt_on_token, make_official, openssl_encrypt, operators
from tests.ra.conftest import make_operator

pytestmark = pytest.mark.hsm


@pytest.fixture
def run(kmc_file_pki, monkeypatch):
    @contextmanager
    def context():
        yield kmc_file_pki.ctx

    monkeypatch.setattr(cli, "open_context", context)
    group = cli.kmc_group_with(ra_operators.resolve_actor)

    def invoke(actor: str, *args: str):
        return CliRunner().invoke(group, list(args), env={"GOVPKI_ACTOR": actor})
    return invoke


def test_recover_user_through_the_cli(run, kmc_file_pki, new_usb, tmp_path) -> None:
    pki = kmc_file_pki
    clerk, approver = operators(pki)
    official = make_official(pki, clerk)
    request = requests.submit(pki.ctx, clerk, official.identifier, "new-pair",
                              csr=make_csr(new_key("ec-p256")))
    requests.approve(pki.ctx, approver, request.id)
    done = requests.execute(pki.ctx, approver, request.id,
                            encryption=KmcEncryptionProvider.duck_typed())  # type: ignore[arg-type]
    encryption = done.issued[1]

    listed = run(clerk.username, "escrow-list", "--owner", official.subscriber_ref, "--json")
    assert listed.exit_code == 0, listed.output
    [item] = json.loads(listed.output.splitlines()[0])["items"]
    assert item["certificate"] == f"{encryption.ca}/{encryption.serial}"
    assert item["state"] == "escrowed" and "wrapped" not in json.dumps(item)
    auditor = make_operator(pki, "630000", "auditor")
    assert isinstance(run(auditor.username, "escrow-list").exception, Forbidden)
    assert isinstance(run(clerk.username, "init").exception, KmcAlreadyInitialised)

    usb = new_usb()
    key_file = tmp_path / "transport.pem"
    made = _official_side("transport-key", usb, "--out", str(key_file))
    assert made.exit_code == 0, made.output
    assert b"BEGIN PUBLIC KEY" in key_file.read_bytes()
    submitted = run(clerk.username, "recover-user", "--certificate", encryption.serial,
                    "--ca", encryption.ca, "--transport-key", str(key_file),
                    "--reason", "USB key broken")
    assert submitted.exit_code == 0, submitted.output
    recovery_id = submitted.output.split()[1]
    out = tmp_path / "released.json"
    early = run(clerk.username, "release", recovery_id, "--out", str(out))
    assert isinstance(early.exception, InvalidTransition) and not out.exists()
    assert isinstance(run(clerk.username, "approve", recovery_id).exception,
                      TwoPersonRuleViolation)
    approved = run(approver.username, "approve", recovery_id, "--comment", "核实")
    assert "approved (1 of 1 approvals)" in approved.output
    shown = run(approver.username, "recoveries", "--state", "approved")
    assert f"escrow {item['id']}" in shown.output
    released = run(clerk.username, "release", recovery_id, "--out", str(out))
    assert released.exit_code == 0, released.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "wrapped_key" in json.loads(out.read_text())

    cert = status_of(pki.ctx, encryption.serial, encryption.ca).certificate()
    envelope = openssl_encrypt(cert, b"old minutes", tmp_path)
    received = _official_side("receive-key", usb, str(out))
    assert received.exit_code == 0, received.output
    key_ref = received.output.strip().split()[-1]
    with usb.open() as token:
        assert decrypt_on_token(token, key_ref, envelope) == b"old minutes"
    again = _official_side("receive-key", usb, str(out))  # the transport key is gone now
    assert again.exit_code != 0 and "Traceback" not in again.output


def _official_side(command: str, usb, *args: str):
    """`govpki token ...` on the official's (or recovery officer's) machine."""
    from hsm.token_cli import token_group
    from tests.kmc.conftest import USB_PIN

    return CliRunner().invoke(token_group, [command, *args, "--module", usb.module,
                                            "--token", usb.label],
                              env={"GOVPKI_TOKEN_PIN": USB_PIN})
