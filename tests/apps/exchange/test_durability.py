"""Durability with real processes: the hub is `govpki serve` (granian) on a home of its own,
the sender and recipient are client processes speaking the REST API, and processes die by
SIGKILL mid-transfer:

1. the hub, while a large package is half uploaded — after a restart the sender resends the
   same package (same message id and digest): one package stored, one delivery per
   recipient; a further resend stores nothing;
2. the hub, while a recipient is half way through fetching it — after a restart the fetch
   gives the same bytes, again and again (idempotent), and nothing was duplicated;
3. a recipient client, half way through its fetch — the hub carries on and the next fetch
   gives the same bytes;
then the recipient opens the package (verify + decrypt: nothing lost) and signs for it.

On SQLite (the embedded default) and on a fresh PostgreSQL database (dropped afterwards).
Every wait is bounded; nothing depends on how fast the machine is, only on the order of
events (a client reports "half way" before the test kills anything).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from apps.exchange import hub, models, org_keys
from apps.exchange.header import OrgName
from apps.exchange.package import DocumentFile, Draft, build_package
from apps.exchange.policy import get_policy
from core.db import transaction
from ra import api_tokens, orgs
from tests.apps.exchange.conftest import HAIBEI, PROVINCE, XINING, document_number, pdf
from tests.conftest import TEST_PASSPHRASE, Pki, build_pki
from tests.govpki.test_cli import GOVPKI, ROOT
from tests.ra.conftest import make_operator

pytestmark = [pytest.mark.slow]

#: The body's size: large enough that neither an upload nor a download fits in the socket
#: buffers, so a transfer is really in flight when a process dies.
BODY_BYTES = 24 * 1024 * 1024
CHUNK = 1024 * 1024
PACKAGE_TYPE = "application/vnd.govpki.exchange-package"
START_SECONDS = 90

#: The client processes: `upload URL TOKEN FILE` sends the package in 1 MiB chunks and, half
#: way, says "half" and waits for a line on stdin before sending the rest; `fetch URL TOKEN
#: OUT` reads the first chunk of the answer, says "started" and waits likewise. Each prints
#: one JSON line with what happened and exits 0 (complete) or 3 (the connection broke).
CLIENT = r"""
import http.client, json, sys, urllib.parse
mode, url, token, path = sys.argv[1:5]
parts = urllib.parse.urlsplit(url)
conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
auth = {"Authorization": "Bearer " + token}
try:
    if mode == "upload":
        data = open(path, "rb").read()
        conn.putrequest("POST", parts.path)
        for k, v in {**auth, "Content-Type": "application/vnd.govpki.exchange-package",
                     "Content-Length": str(len(data))}.items():
            conn.putheader(k, v)
        conn.endheaders()
        half = len(data) // 2
        for start in range(0, half, 1 << 20):
            conn.send(data[start:min(start + (1 << 20), half)])
        print("half", flush=True)
        sys.stdin.readline()
        for start in range(half, len(data), 1 << 20):
            conn.send(data[start:start + (1 << 20)])
        reply = conn.getresponse()
        body = reply.read()
        print(json.dumps({"status": reply.status, "body": body.decode()}), flush=True)
    else:
        conn.request("GET", parts.path + "?" + parts.query, headers=auth)
        reply = conn.getresponse()
        got = reply.read(1 << 20)
        print("started", flush=True)
        sys.stdin.readline()
        rest = reply.read()
        if reply.status == 200:
            open(path, "wb").write(got + rest)
        print(json.dumps({"status": reply.status, "bytes": len(got) + len(rest),
                          "length": int(reply.headers.get("Content-Length") or -1)}),
              flush=True)
        if reply.status == 200 and len(got) + len(rest) != int(reply.headers["Content-Length"]):
            sys.exit(3)
except (OSError, http.client.HTTPException) as exc:
    print(json.dumps({"error": type(exc).__name__}), flush=True)
    sys.exit(3)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Hub:
    """`govpki serve` in a process group of its own, so SIGKILL reaches every worker."""

    def __init__(self, pki: Pki, logs: Path) -> None:
        self.pki = pki
        self.logs = logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""
        self.starts = 0

    def start(self) -> None:
        port = _free_port()
        env = {k: v for k, v in os.environ.items()
               if k not in ("GOVPKI_DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR")}
        env.update(GOVPKI_HOME=str(self.pki.home), GOVPKI_SCHEDULER="off",
                   GOVPKI_KEY_PASSPHRASE=TEST_PASSPHRASE.decode())
        if self.pki.db == "postgres":
            env["GOVPKI_DATABASE_URL"] = self.pki.ctx.config.database_url
        self.starts += 1
        with open(self.logs / f"hub-{self.starts}.log", "wb") as log:
            self.proc = subprocess.Popen(
                [GOVPKI, "serve", "--host", "127.0.0.1", "--port", str(port), "--threads", "4"],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.logs / f"hub-{self.starts}.log").read_text()
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=2) as ready:
                    if ready.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        raise AssertionError(f"the hub did not become ready in {START_SECONDS} s")

    def kill(self) -> None:
        """kill -9 of the whole hub (granian's main process and its workers)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.kill()


@dataclass
class Client:
    proc: subprocess.Popen[str]

    def wait_for(self, word: str) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == word, (line, self.proc.stderr.read() if self.proc.stderr else "")

    def go_on(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        out = self.proc.stdout.readline()
        self.proc.wait(timeout=120)
        return json.loads(out) if out.strip() else {}


def client(mode: str, url: str, token: str, path: Path) -> Client:
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, mode, url, token, str(path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    return Client(proc)


def request(base: str, token: str, method: str, path: str, body: bytes | None = None,
            content_type: str = PACKAGE_TYPE) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"}
    if body:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def counts(pki: Pki, message_id: str) -> tuple[int, dict[str, int], int]:
    """(packages with this id, deliveries per recipient, receipts)."""
    with transaction(pki.ctx.sessions) as session:
        packages = session.scalars(select(models.Package).where(
            models.Package.message_id == message_id)).all()
        if not packages:
            return 0, {}, 0
        ids = [p.id for p in packages]
        deliveries = session.execute(
            select(models.Delivery.recipient_org, func.count()).where(
                models.Delivery.package_id.in_(ids)).group_by(models.Delivery.recipient_org)
        ).all()
        delivery_ids = session.scalars(select(models.Delivery.id).where(
            models.Delivery.package_id.in_(ids))).all()
        receipts = session.scalar(select(func.count()).select_from(models.Receipt).where(
            models.Receipt.delivery_id.in_(delivery_ids))) or 0
        return len(packages), {org: n for org, n in deliveries}, receipts


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def hub_pki(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Pki]:
    """A home of its own (the hub gets killed): the demo hierarchy, the organisation tree,
    the keys of the province, Xining and Haibei."""
    home = tmp_path_factory.mktemp(f"exchange-hub-{request.param}")
    if request.param == "postgres":
        url = request.getfixturevalue("pg_databases").create()  # dropped after the session
    else:
        url = f"sqlite:///{home / 'govpki.sqlite3'}"
    pki = build_pki(home, url, "file", None)
    pki.db = request.param
    orgs.load_organisations(pki.ctx.sessions, actor="test")
    for code in (PROVINCE, XINING, HAIBEI):
        org_keys.provision(pki.ctx, code, policy=get_policy(), actor="test-setup")
    yield pki
    pki.ctx.close()


def _token(pki: Pki, org: str) -> str:
    clerk = make_operator(pki, org, "exchange-clerk")
    token, _ = api_tokens.create_api_token(pki.ctx, clerk, clerk.username,
                                           f"{org} document system", days=1)
    return token


def _package(pki: Pki) -> tuple[str, bytes]:
    """The province's document system builds and seals a large package (its own node)."""
    policy = get_policy()
    with transaction(pki.ctx.sessions) as session:
        def name(code: str) -> OrgName:
            return org_keys.org_name(session, code)

        draft = Draft(number=document_number(), title="关于印发全省电子政务建设规划的通知",
                      issuer=name(PROVINCE), date=dt.date(2024, 6, 1), urgency="平急",
                      classification="非密", main=(name(XINING),), copy=(name(HAIBEI),),
                      body=DocumentFile("规划.pdf", pdf() + os.urandom(BODY_BYTES)),
                      attachments=(DocumentFile("附件.txt", "附件".encode()),))
    built = build_package(draft, policy, org_keys.seal_key(pki.ctx, PROVINCE, policy),
                          org_keys.encryption_certificates(pki.ctx, [XINING, HAIBEI]),
                          receipts_to=hub.receipts_to(pki.ctx))
    return built.message_id, built.package


def test_nothing_is_lost_or_duplicated_when_processes_die(hub_pki: Pki, tmp_path: Path
                                                          ) -> None:
    pki = hub_pki
    sender, xining, haibei = (_token(pki, PROVINCE), _token(pki, XINING), _token(pki, HAIBEI))
    message_id, package = _package(pki)
    digest = hashlib.sha256(package).hexdigest()
    package_file = tmp_path / "package.der"
    package_file.write_bytes(package)
    submit_path = "/api/v1/exchange/packages"
    fetch_path = f"/api/v1/exchange/packages/{message_id}/package"
    hub_process = Hub(pki, tmp_path)
    try:
        hub_process.start()

        # 1. kill -9 the hub while the package is half uploaded.
        upload = client("upload", hub_process.base + submit_path, sender, package_file)
        upload.wait_for("half")
        hub_process.kill()
        assert upload.go_on().get("error"), "the upload cannot have completed"
        assert counts(pki, message_id) == (0, {}, 0)  # nothing stored half-way
        hub_process.start()
        status, body = request(hub_process.base, sender, "POST", submit_path, package)
        assert status == 201, body[:500]
        assert json.loads(body)["package"]["message_id"] == message_id
        status, body = request(hub_process.base, sender, "POST", submit_path, package)
        assert status == 200 and json.loads(body)["created"] is False
        assert counts(pki, message_id) == (1, {XINING: 1, HAIBEI: 1}, 0)

        # 2. kill -9 the hub while Xining is half way through fetching.
        fetching = client("fetch", hub_process.base + fetch_path, xining, tmp_path / "f1")
        fetching.wait_for("started")
        hub_process.kill()
        broken = fetching.go_on()
        assert fetching.proc.returncode == 3 and broken.get("bytes", 0) < len(package), broken
        hub_process.start()
        for _ in range(2):  # the same bytes, every time
            status, fetched = request(hub_process.base, xining, "GET", fetch_path)
            assert status == 200 and hashlib.sha256(fetched).hexdigest() == digest

        # 3. kill -9 Haibei's client half way through its fetch; the hub carries on.
        fetching = client("fetch", hub_process.base + fetch_path, haibei, tmp_path / "f2")
        fetching.wait_for("started")
        os.killpg(fetching.proc.pid, signal.SIGKILL)
        fetching.proc.wait(timeout=30)
        again = client("fetch", hub_process.base + fetch_path, haibei, tmp_path / "f3")
        again.wait_for("started")
        assert again.go_on()["bytes"] == len(package) and again.proc.returncode == 0
        assert hashlib.sha256((tmp_path / "f3").read_bytes()).hexdigest() == digest
        assert counts(pki, message_id) == (1, {XINING: 1, HAIBEI: 1}, 0)

        # Nothing lost: Xining opens it (seal verified, body decrypted) and signs for it.
        status, body = request(hub_process.base, xining, "POST",
                               f"/api/v1/exchange/packages/{message_id}/open", b"")
        assert status == 200, body[:500]
        opened = json.loads(body)
        assert opened["verification"]["valid"] is True
        assert base64.b64decode(opened["body"]["content"])[:8] == b"%PDF-1.7"
        assert len(base64.b64decode(opened["body"]["content"])) == len(pdf()) + BODY_BYTES
        status, body = request(hub_process.base, xining, "POST",
                               f"/api/v1/exchange/packages/{message_id}/receipts",
                               json.dumps({"kind": "signed-for"}).encode(),
                               "application/json")
        assert status in (200, 201), body[:500]
        assert counts(pki, message_id) == (1, {XINING: 1, HAIBEI: 1}, 2)
        with transaction(pki.ctx.sessions) as session:
            states = dict(session.execute(select(
                models.Delivery.recipient_org, models.Delivery.transport_state).join(
                models.Package, models.Package.id == models.Delivery.package_id).where(
                models.Package.message_id == message_id)).all())
        assert states == {XINING: "delivered", HAIBEI: "fetched"}
    finally:
        hub_process.stop()
