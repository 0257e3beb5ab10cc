"""Several processes issuing on one PostgreSQL: distinct serials, no lost certificate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import func, select

from ca.models import Authority, Certificate
from core.audit import verify_chain
from core.db import transaction
from tests.conftest import TEST_PASSPHRASE

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _worker(pki, count: int) -> subprocess.Popen[str]:
    env = dict(os.environ, GOVPKI_HOME=str(pki.home),
               GOVPKI_DATABASE_URL=pki.ctx.config.database_url,
               GOVPKI_KEY_PASSPHRASE=TEST_PASSPHRASE.decode(), PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "tests.ca.issue_worker", str(count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)


def _issued_rows(pki) -> dict[str, Certificate]:
    with transaction(pki.ctx.sessions) as session:
        officials = session.scalar(select(Authority.id).where(Authority.name == "officials"))
        return {r.serial: r for r in session.scalars(select(Certificate).where(
            Certificate.authority_id == officials, Certificate.requested_by == "worker"))}


def test_four_processes_issue_2000_distinct(pg_file_pki) -> None:
    before = set(_issued_rows(pg_file_pki))
    procs = [_worker(pg_file_pki, 500) for _ in range(4)]
    serials: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        serials += out.split()
    assert len(serials) == 2000
    assert len(set(serials)) == 2000
    rows = {s: r for s, r in _issued_rows(pg_file_pki).items() if s not in before}
    assert set(rows) == set(serials)
    assert all(r.state == "issued" and r.certificate_der for r in rows.values())
    with transaction(pg_file_pki.ctx.sessions) as session:
        report = verify_chain(session, pg_file_pki.ctx.config.path("audit/none.jsonl"),
                              pg_file_pki.ctx.keyring.get(
                                  pg_file_pki.ctx.config.audit.key_uri).public_key())
        assert report.first_problem is None or "checkpoint" in report.first_problem
        assert not [p for p in report.problems if "checkpoint" not in p]
        dupes = session.scalar(select(func.count()).select_from(
            select(Certificate.authority_id, Certificate.serial)
            .group_by(Certificate.authority_id, Certificate.serial)
            .having(func.count() > 1).subquery()))
    assert dupes == 0


def test_killed_worker_loses_no_returned_certificate(pg_file_pki) -> None:
    proc = _worker(pg_file_pki, 100000)
    returned: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while len(returned) < 40 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        returned.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(returned) >= 40, proc.stderr.read() if proc.stderr else ""
    rows = _issued_rows(pg_file_pki)
    for serial in returned:
        row = rows[serial]
        assert row.state == "issued"
        cert = x509.load_der_x509_certificate(row.certificate_der)
        assert format(cert.serial_number, "x") == serial
    # Whatever was in flight is at worst a pending row (the record of what was about to be
    # signed), never a certificate without a row.
    assert all(r.state in ("issued", "pending") for r in rows.values())
    from ca.store import list_certificates

    with transaction(pg_file_pki.ctx.sessions) as session:
        pending = list_certificates(session, "officials", limit=10, state="pending")
    assert all(p.certificate_der is None for p in pending)
