"""Revocation state and the status-change event that the OCSP responder will listen to."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ca.errors import AmbiguousSerial, CertificateNotFound, InvalidStatusChange
from ca.issuance import CertificateRequest, issue_certificate
from ca.models import Authority, Certificate
from ca.revocation import release, revoke, status_of, suspend
from core import events
from core.audit import AuditEvent
from core.db import transaction
from tests.ca.helpers import OFFICIAL_DN, make_csr, new_key


def _issue(pki) -> str:
    return issue_certificate(pki.ctx, CertificateRequest(
        ca="officials", profile="official-signing", csr=make_csr(new_key("ec-p256")),
        subject=OFFICIAL_DN)).serial


def test_suspend_release_revoke_cycle_with_events(pki) -> None:
    received: list[dict] = []
    events.subscribe(received.append)
    try:
        serial = _issue(pki)
        suspend(pki.ctx, serial, actor="op")
        assert status_of(pki.ctx, serial).status == "hold"
        release(pki.ctx, serial, actor="op")
        record = status_of(pki.ctx, serial)
        assert record.status == "good" and record.revoked_at is None
        change = revoke(pki.ctx, serial, "keyCompromise", actor="op")
        record = status_of(pki.ctx, serial)
        assert record.status == "revoked"
        assert record.revocation_reason == "keyCompromise"
        assert record.revoked_at == change.at
    finally:
        events.unsubscribe(received.append)
    mine = [e for e in received if e["serial"] == serial]
    assert [e["status"] for e in mine] == ["hold", "good", "revoked"]
    assert mine[-1]["reason"] == "keyCompromise" and mine[-1]["ca"] == "officials"
    with transaction(pki.ctx.sessions) as session:
        actions = session.scalars(select(AuditEvent.action).where(
            AuditEvent.object_id == f"officials/{serial}").order_by(AuditEvent.seq)).all()
    assert actions[-3:] == ["ca.suspend", "ca.release", "ca.revoke"]


def test_held_certificate_can_be_revoked(pki) -> None:
    serial = _issue(pki)
    suspend(pki.ctx, serial, actor="op")
    revoke(pki.ctx, serial, "superseded", actor="op")
    assert status_of(pki.ctx, serial).status == "revoked"


@pytest.mark.parametrize("steps, bad", [
    (["revoke"], "revoke"), (["revoke"], "suspend"), (["revoke"], "release"),
    ([], "release"), (["suspend"], "suspend"),
])
def test_invalid_transitions_refused_without_event(pki, steps, bad) -> None:
    serial = _issue(pki)
    actions = {"revoke": lambda: revoke(pki.ctx, serial, "unspecified", actor="op"),
               "suspend": lambda: suspend(pki.ctx, serial, actor="op"),
               "release": lambda: release(pki.ctx, serial, actor="op")}
    for step in steps:
        actions[step]()
    before = status_of(pki.ctx, serial)
    received: list[dict] = []
    events.subscribe(received.append)
    try:
        with pytest.raises(InvalidStatusChange):
            actions[bad]()
    finally:
        events.unsubscribe(received.append)
    assert received == []
    assert status_of(pki.ctx, serial) == before


def test_unknown_reason_and_unknown_serial(file_pki) -> None:
    serial = _issue(file_pki)
    with pytest.raises(InvalidStatusChange, match="unknown revocation reason"):
        revoke(file_pki.ctx, serial, "certificateHold", actor="op")
    with pytest.raises(CertificateNotFound):
        revoke(file_pki.ctx, "deadbeef", "unspecified", actor="op")
    with pytest.raises(CertificateNotFound, match="hexadecimal"):
        revoke(file_pki.ctx, "not-hex", "unspecified", actor="op")


def test_ambiguous_serial_needs_ca(file_pki) -> None:
    serial = _issue(file_pki)
    with transaction(file_pki.ctx.sessions) as session:
        row = session.scalar(select(Certificate).where(Certificate.serial == serial))
        devices = session.scalar(select(Authority).where(Authority.name == "devices"))
        clone = {c.name: getattr(row, c.name) for c in Certificate.__table__.columns
                 if c.name not in ("id", "authority_id")}
        session.add(Certificate(authority_id=devices.id, **clone))
    with pytest.raises(AmbiguousSerial, match="--ca"):
        suspend(file_pki.ctx, serial, actor="op")
    suspend(file_pki.ctx, serial, ca="officials", actor="op")
    assert status_of(file_pki.ctx, serial, "officials").status == "hold"
    assert status_of(file_pki.ctx, serial, "devices").status == "good"


def test_rolled_back_change_publishes_nothing(file_pki) -> None:
    received: list[dict] = []
    events.subscribe(received.append)
    try:
        with pytest.raises(RuntimeError), transaction(file_pki.ctx.sessions) as session:
            events.publish(session, {"type": "certificate-status", "serial": "1"})
            raise RuntimeError("abort")
    finally:
        events.unsubscribe(received.append)
    assert received == []


@pytest.mark.postgres
def test_status_change_reaches_other_processes_by_notify(pg_file_pki) -> None:
    """The OCSP responder in another process hears of a change through LISTEN/NOTIFY, after
    commit only."""
    import json

    import psycopg

    from core.events import STATUS_CHANNEL

    url = pg_file_pki.ctx.config.database_url.replace("postgresql+psycopg://", "postgresql://")
    serial = _issue(pg_file_pki)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {STATUS_CHANNEL}")
        suspend(pg_file_pki.ctx, serial, actor="op")
        with pytest.raises(InvalidStatusChange):
            suspend(pg_file_pki.ctx, serial, actor="op")  # refused: must not notify
        received = [json.loads(n.payload) for n in listener.notifies(timeout=2.0, stop_after=2)]
    mine = [p for p in received if p["serial"] == serial]
    assert [p["status"] for p in mine] == ["hold"]
    assert mine[0]["ca"] == "officials" and mine[0]["reason"] == "certificateHold"
