"""`govpki exchange ...` under the composition root's error handling (GovpkiGroup: one-line
errors, exit codes), on the shared PKI with the context injected: Yushu (632700) sends to
Haixi (632800), Haixi fetches, signs for and completes; the receipts the CLI saves pass
`openssl cms -verify_receipt`."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
from click.testing import CliRunner

from apps.exchange import cli as exchange_cli
from govpki.cli import GovpkiGroup
from tests.apps.exchange.conftest import document_number, pdf
from tests.apps.exchange.helpers import root_pem, verify_receipt
from tests.ra.conftest import make_operator

YUSHU, HAIXI = "632700", "632800"


@pytest.fixture
def run(exchange_file_pki, monkeypatch):
    @contextmanager
    def context():
        yield exchange_file_pki.ctx

    monkeypatch.setattr(exchange_cli, "open_context", context)
    root = GovpkiGroup("govpki")
    root.add_command(exchange_cli.exchange_group)

    def invoke(actor: str, *args: str):
        return CliRunner().invoke(root, ["exchange", *args], env={"GOVPKI_ACTOR": actor})
    return invoke


def one_line_error(result, words: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert words in lines[0]


def test_send_fetch_sign_for_and_track(run, exchange_file_pki, tmp_path) -> None:
    pki = exchange_file_pki
    sender = make_operator(pki, YUSHU, "exchange-clerk")
    receiver = make_operator(pki, HAIXI, "exchange-clerk")
    body = tmp_path / "正文.pdf"
    body.write_bytes(pdf("关于召开全州电子政务工作会议的通知"))
    extra = tmp_path / "会议议程.txt"
    extra.write_bytes("一、开幕\n二、讲话\n".encode())
    number = document_number("玉政办")

    listed = run(sender.username, "org-keys", "list", YUSHU, "--json")
    assert {k["purpose"] for k in json.loads(listed.output)["items"]} == {"seal", "encryption"}

    sent = run(sender.username, "send", "--number", number, "--title", "会议通知",
               "--date", "2024-06-01", "--urgency", "特急", "--to", HAIXI, "--body", str(body),
               "--attach", str(extra), "--json")
    assert sent.exit_code == 0, sent.output
    message_id = json.loads(sent.output)["message_id"]

    inbox = run(receiver.username, "inbox", "--state", "pending")
    assert message_id in inbox.output and number in inbox.output

    out = tmp_path / "received"
    fetched = run(receiver.username, "fetch", message_id, "--out", str(out))
    assert fetched.exit_code == 0, fetched.output
    assert (out / "正文.pdf").read_bytes() == body.read_bytes()
    assert (out / "会议议程.txt").read_bytes() == extra.read_bytes()
    report = json.loads((out / "verification.json").read_text(encoding="utf-8"))
    assert report["verification"]["valid"] is True
    assert report["receipt"]["kind"] == "delivered"
    assert "玉树" in report["verification"]["seal"]["subject"]

    assert run(receiver.username, "receipt", message_id, "signed-for").exit_code == 0
    assert run(receiver.username, "receipt", message_id, "completed").exit_code == 0

    saved = tmp_path / "receipts"
    tracked = run(sender.username, "status", message_id, "--receipts", str(saved), "--json")
    assert tracked.exit_code == 0, tracked.output
    data = json.loads(tracked.output)
    assert data["deliveries"][0]["business_state"] == "completed"
    assert [r["kind"] for r in data["receipts"]] == ["delivered", "signed-for", "completed"]
    root = root_pem(pki, tmp_path)
    for kind in ("delivered", "signed-for", "completed"):
        checked = verify_receipt(saved / f"{HAIXI}-{kind}.rct.der", saved / "header.der", root)
        assert checked.returncode == 0, checked.stderr

    found = run(sender.username, "search", "--number", number)
    assert message_id in found.output and "1 documents" in found.output

    raw = tmp_path / "raw"
    assert run(receiver.username, "fetch", message_id, "--out", str(raw), "--raw").exit_code == 0
    assert (raw / "package.der").stat().st_size > body.stat().st_size


def test_errors_are_one_line(run, exchange_file_pki, tmp_path) -> None:
    pki = exchange_file_pki
    sender = make_operator(pki, YUSHU, "exchange-clerk")
    body = tmp_path / "正文.pdf"
    body.write_bytes(pdf())
    one_line_error(run(sender.username, "send", "--number", document_number(), "--title", "t",
                       "--urgency", "加急", "--classification", "秘密", "--to", HAIXI,
                       "--body", str(body)), "秘密")
    one_line_error(run(sender.username, "receipt", "00000000-0000-4000-8000-000000000000",
                       "signed-for"), "has not received")
    one_line_error(run(sender.username, "status", "00000000-0000-4000-8000-000000000000"),
                   "no package")
    one_line_error(run("nobody-at-all", "inbox"), "not an RA operator")
    one_line_error(run(sender.username, "inbox", "--org", HAIXI), "forbidden")
    usage = run(sender.username, "send", "--number", "x")
    assert usage.exit_code == 2
