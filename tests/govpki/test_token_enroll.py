"""`govpki token enroll/list/renew` end to end: a SoftHSM2 token stands in for the official's
USB key, the RA is the real app on a loopback HTTP server, operators act through ra/ services.

Each refusal — wrong PIN, a used or expired code, a token without room, a rejected request —
must give one clear line and leave nothing half-written on the token or in the database.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select, update

from core.db import transaction
from govpki.cli import cli
from govpki.wsgi import create_app
from hsm.token import LABEL_PREFIX, open_token
from ra import enrollment, models, requests
from ra.officials import OfficialInput, create_official
from tests import softhsm
from tests.browser import serve
from tests.ra.conftest import make_operator, unique

PIN = "usb-pin-2718281"
SO_PIN = "usb-so-pin-3141592"


@pytest.fixture(scope="module")
def ra_url(ra_file_pki_module) -> Iterator[str]:
    with serve(create_app(ctx=ra_file_pki_module.ctx)) as url:
        yield url


@pytest.fixture(scope="module")
def ra_file_pki_module(request):
    from tests.ra.conftest import ra_ready

    return ra_ready(request.getfixturevalue("file_pki"))


@pytest.fixture
def usb(tmp_path_factory) -> str:
    softhsm.require_softhsm()
    softhsm.init_softhsm(tmp_path_factory.mktemp("softhsm"))
    label = f"usb-{secrets.token_hex(4)}"
    softhsm.init_token(label, PIN, SO_PIN)
    return label


def _people(pki):
    clerk = make_operator(pki, "632800", "ra-operator")
    approver = make_operator(pki, "632800", "ra-operator")
    official = create_official(pki.ctx.sessions, clerk, OfficialInput(
        unique("EN"), "央金", "632800-BGS", "科员"))
    return clerk, approver, official


def _token(ra_url: str, label: str, *args: str, code: str = "", pin: str = PIN):
    env = {"GOVPKI_TOKEN_PIN": pin, "GOVPKI_ENROLLMENT_CODE": code,
           "GOVPKI_PKCS11_MODULE": softhsm.SOFTHSM_MODULE, "GOVPKI_RA_URL": ra_url}
    return CliRunner().invoke(cli, ["token", *args, "--token", label], env=env)


def _objects(label: str) -> list:
    with open_token(softhsm.SOFTHSM_MODULE, label, PIN) as usb:
        return usb.list_objects()


def _requests(pki) -> int:
    with transaction(pki.ctx.sessions) as session:
        return session.scalar(select(func.count()).select_from(models.Request)) or 0


def _when_submitted(pki, operator, official, act) -> threading.Thread:
    """In the background, as an RA operator would: once the official's request shows up in
    the queue, ``act(request_id)`` on it."""
    def work() -> None:
        for _ in range(300):
            page = requests.list_requests(pki.ctx, operator, state="submitted",
                                          org_code=official.organisation.code)
            mine = [r for r in page.items if r.official.id == official.id]
            if mine:
                act(mine[0].id)
                return
            time.sleep(0.1)
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def _approve_when_submitted(pki, approver, official) -> threading.Thread:
    def approve(request_id: int) -> None:
        requests.approve(pki.ctx, approver, request_id, "核对无误")
        requests.execute(pki.ctx, approver, request_id)
    return _when_submitted(pki, approver, official, approve)


def test_enroll_writes_key_certificate_and_chain_and_openssl_verifies(
        ra_file_pki_module, ra_url, usb, tmp_path) -> None:
    pki = ra_file_pki_module
    clerk, approver, official = _people(pki)
    code, _ = enrollment.create_enrollment_code(pki.ctx, clerk, official.identifier)
    approving = _approve_when_submitted(pki, approver, official)
    result = _token(ra_url, usb, "enroll", "--wait", "60", "--poll", "0.2", code=code)
    approving.join(10)
    assert result.exit_code == 0, result.output
    assert PIN not in result.output and code not in result.output
    objects = _objects(usb)
    # The signing key (an encryption key may sit beside it when the KMC is initialised on
    # this shared database: the dual-certificate test below covers that half).
    keys = [o for o in objects if o.kind == "private-key" and o.label.startswith(LABEL_PREFIX)]
    certs = [o for o in objects if o.kind == "certificate"]
    assert len(keys) == 1 and keys[0].extractable is False and keys[0].sensitive is True
    mine = [c for c in certs if c.id_hex == keys[0].id_hex]
    assert len(mine) == 1 and mine[0].label == keys[0].label and "央金" in (mine[0].subject or "")
    assert any(c.category == "authority" for c in certs)
    listed = _token(ra_url, usb, "list")
    assert listed.exit_code == 0 and f"id:{keys[0].id_hex}" in listed.output
    assert "non-extractable" in listed.output

    # openssl verifies the certificate read back from the token against the chain on it.
    der_by_id = _cert_ders(usb)
    leaf = der_by_id.pop(keys[0].id_hex)
    chain = [x509.load_der_x509_certificate(d) for d in der_by_id.values()]
    roots = [c for c in chain if c.subject == c.issuer]
    middle = [c for c in chain if c.subject != c.issuer]
    (tmp_path / "leaf.pem").write_bytes(
        x509.load_der_x509_certificate(leaf).public_bytes(Encoding.PEM))
    (tmp_path / "root.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in roots))
    (tmp_path / "mid.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in middle))
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "root.pem"),
                             "-untrusted", str(tmp_path / "mid.pem"), str(tmp_path / "leaf.pem")],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _cert_ders(label: str) -> dict[str, bytes]:
    """id → DER of every certificate object, read straight through python-pkcs11."""
    from pkcs11 import Attribute, ObjectClass

    from tests.hsm.test_token import UsbKey, raw_session

    out = {}
    with raw_session(UsbKey(softhsm.SOFTHSM_MODULE, label, PIN)) as session:
        for obj in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}):
            out[bytes(obj[Attribute.ID]).hex()] = bytes(obj[Attribute.VALUE])
    return out


def test_pending_then_resume_and_renew_replaces_the_key(ra_file_pki_module, ra_url, usb
                                                         ) -> None:
    pki = ra_file_pki_module
    clerk, approver, official = _people(pki)
    code, _ = enrollment.create_enrollment_code(pki.ctx, clerk, official.identifier)
    pending = _token(ra_url, usb, "enroll", "--wait", "0", code=code)
    assert pending.exit_code == 75, pending.output
    found = re.search(r"--resume (\d+) --key (id:[0-9a-f]+)", pending.output)
    assert found, pending.output
    request_id, key_ref = int(found.group(1)), found.group(2)
    requests.approve(pki.ctx, approver, request_id)
    requests.execute(pki.ctx, approver, request_id)
    resumed = _token(ra_url, usb, "enroll", "--resume", str(request_id), "--key", key_ref,
                     "--wait", "5", code=code)
    assert resumed.exit_code == 0, resumed.output
    first_key = key_ref.removeprefix("id:")

    renew_code, _ = enrollment.create_enrollment_code(pki.ctx, clerk, official.identifier,
                                                      kind="renewal")
    approving = _approve_when_submitted(pki, approver, official)
    renewed = _token(ra_url, usb, "renew", "--wait", "60", "--poll", "0.2", code=renew_code)
    approving.join(10)
    assert renewed.exit_code == 0, renewed.output
    assert f"removed the replaced key id:{first_key}" in renewed.output
    keys = [o for o in _objects(usb)
            if o.kind == "private-key" and o.label.startswith(LABEL_PREFIX)]
    assert len(keys) == 1 and keys[0].id_hex != first_key


def test_rejection_found_on_resume_removes_the_waiting_key(ra_file_pki_module, ra_url, usb
                                                            ) -> None:
    pki = ra_file_pki_module
    clerk, approver, official = _people(pki)
    code, _ = enrollment.create_enrollment_code(pki.ctx, clerk, official.identifier)
    pending = _token(ra_url, usb, "enroll", "--wait", "0", code=code)
    assert pending.exit_code == 75, pending.output
    found = re.search(r"--resume (\d+) --key (id:[0-9a-f]+)", pending.output)
    assert found, pending.output
    assert any(o.kind == "private-key" for o in _objects(usb))  # kept while waiting
    requests.reject(pki.ctx, approver, int(found.group(1)), "单位信息有误")
    resumed = _token(ra_url, usb, "enroll", "--resume", found.group(1), "--key", found.group(2),
                     "--wait", "5", code=code)
    assert resumed.exit_code == 1 and "rejected: 单位信息有误" in resumed.output
    assert [o for o in _objects(usb) if o.kind != "certificate" or o.category != "authority"] \
        == []


@pytest.mark.parametrize("case", ["wrong-pin", "used-code", "expired-code", "rejected",
                                  "no-room", "unknown-code"])
def test_refusals_leave_nothing_behind(ra_file_pki_module, ra_url, usb, case: str) -> None:
    pki = ra_file_pki_module
    clerk, approver, official = _people(pki)
    code, record = enrollment.create_enrollment_code(pki.ctx, clerk, official.identifier)
    pin = PIN
    expect = {"wrong-pin": "PIN", "used-code": "already used", "expired-code": "expired",
              "rejected": "rejected: 照片不符", "no-room": "could not store",
              "unknown-code": "unknown "
              "enrollment code"}[case]
    if case == "wrong-pin":
        pin = "not-the-pin"
    elif case == "used-code":
        from tests.ca.helpers import make_csr, new_key
        enrollment.redeem_enrollment_code(pki.ctx, code, make_csr(new_key("ec-p256")))
    elif case == "expired-code":
        with transaction(pki.ctx.sessions) as session:
            session.execute(update(models.EnrollmentCode).where(
                models.EnrollmentCode.id == record.id).values(
                expires_at=record.created_at - dt.timedelta(seconds=1)))
    elif case == "unknown-code":
        code = "AAAAA-AAAAA-AAAAA-AAAAA-AAAAA"
    before = _requests(pki)
    directory = _token_dir(usb)
    if case == "no-room":
        subprocess.run(["chattr", "+i", str(directory)], check=True)
    rejecting = None
    if case == "rejected":
        rejecting = _when_submitted(pki, approver, official, lambda request_id: requests.reject(
            pki.ctx, approver, request_id, "照片不符"))
    try:
        result = _token(ra_url, usb, "enroll", "--wait", "60", "--poll", "0.2", code=code,
                        pin=pin)
    finally:
        if case == "no-room":
            subprocess.run(["chattr", "-i", str(directory)], check=True)
    if rejecting is not None:
        rejecting.join(10)
    assert result.exit_code == 1, result.output
    assert expect.lower() in str(result.exception or result.output).lower() or \
        expect.lower() in result.output.lower()
    assert "Traceback" not in result.output and pin not in result.output
    assert code not in result.output
    assert [o for o in _objects(usb) if o.kind != "certificate" or o.category != "authority"] \
        == []  # neither signing nor encryption key, nor any certificate of the official
    assert _requests(pki) == before + (1 if case == "rejected" else 0)


def _token_dir(label: str) -> Path:
    base = softhsm.softhsm_token_dir()
    assert base is not None
    padded = label.encode().ljust(32, b" ")
    for candidate in base.iterdir():
        if (candidate / "token.object").is_file() and padded in (
                candidate / "token.object").read_bytes():
            return candidate
    raise AssertionError(label)


def test_dual_certificate_enrollment_puts_the_escrowed_encryption_key_on_the_token(
        ra_file_pki_module, ra_url, usb, tmp_path) -> None:
    """With the key management centre plugged in, one enrollment leaves both halves of the
    dual-certificate model on the USB key: the signing key born there, and the encryption
    key escrowed by the KMC and unwrapped inside the token. A message `openssl cms -encrypt`
    encrypts to the encryption certificate opens with the token's key."""
    from govpki.kmc_wiring import install_kmc
    from tests.hsm.test_token import UsbKey
    from tests.kmc.conftest import decrypt_on_token, kmc_ready, openssl_encrypt

    pki = kmc_ready(ra_file_pki_module)
    install_kmc()
    clerk, approver, official = _people(pki)
    code, _ = enrollment.create_enrollment_code(pki.ctx, clerk, official.identifier)
    approving = _approve_when_submitted(pki, approver, official)
    result = _token(ra_url, usb, "enroll", "--wait", "60", "--poll", "0.2", code=code)
    approving.join(10)
    assert result.exit_code == 0, result.output
    assert "encryption key pair delivered" in result.output
    objects = _objects(usb)
    keys = {o.id_hex: o for o in objects if o.kind == "private-key"}
    assert len(keys) == 2 and all(k.extractable is False for k in keys.values())
    user_certs = [o for o in objects if o.kind == "certificate" and o.category != "authority"]
    assert {c.id_hex for c in user_certs} == set(keys)
    ders = _cert_ders(usb)
    encryption = [x509.load_der_x509_certificate(ders[c.id_hex]) for c in user_certs
                  if x509.load_der_x509_certificate(ders[c.id_hex]).extensions
                  .get_extension_for_class(x509.KeyUsage).value.key_encipherment]
    assert len(encryption) == 1
    cert = encryption[0]
    enc_id = next(c.id_hex for c in user_certs
                  if ders[c.id_hex] == cert.public_bytes(Encoding.DER))
    message = "关于印发年度工作要点的通知".encode()
    envelope = openssl_encrypt(cert, message, tmp_path)
    with UsbKey(softhsm.SOFTHSM_MODULE, usb, PIN).open() as token:
        assert decrypt_on_token(token, f"id:{enc_id}", envelope) == message
