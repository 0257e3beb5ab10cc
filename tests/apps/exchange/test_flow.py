"""End to end on the storage × key-store matrix: the province sends a document to a
prefecture (主送) and another (抄送); the prefecture opens it (decrypt + verify, technical
receipt), signs for it and completes it; the province tracks every step."""

from __future__ import annotations

import datetime as dt

from apps.exchange import hub, service
from apps.exchange.receipts import statement_of
from tests.apps.exchange.conftest import HAIBEI, PROVINCE, XINING, clerks, request, row_counts


def test_province_to_prefecture(exchange_pki) -> None:
    pki = exchange_pki
    team = clerks(pki)
    req = request()
    sent = service.send(pki.ctx, team.province, req)
    assert sent.created
    assert [(d.recipient.code, d.role, d.transport_state) for d in sent.package.deliveries] == [
        (XINING, "main", "pending"), (HAIBEI, "copy", "pending")]

    inbox = service.inbox(pki.ctx, team.xining)
    mine = next(p for p in inbox.items if p.message_id == sent.message_id)
    assert mine.number == req.number and mine.sender.code == PROVINCE
    assert [d.recipient.code for d in mine.deliveries] == [XINING]

    opened = service.open_document(pki.ctx, team.xining, sent.message_id)
    assert opened.document.body.content == req.body.content
    assert [a.content for a in opened.document.attachments] == [a.content for a in req.attachments]
    assert opened.verification()["valid"] is True
    assert opened.receipt.kind == "delivered"
    assert statement_of(opened.receipt.statement).kind == "delivered"

    again = service.open_document(pki.ctx, team.xining, sent.message_id)
    assert again.receipt.created_at == opened.receipt.created_at

    signed = service.receipt(pki.ctx, team.xining, sent.message_id, "signed-for")
    done = service.receipt(pki.ctx, team.xining, sent.message_id, "completed")
    assert (signed.kind, done.kind) == ("signed-for", "completed")

    tracked = service.status(pki.ctx, team.province, sent.message_id)
    states = {d.recipient.code: (d.transport_state, d.business_state) for d in tracked.deliveries}
    assert states == {XINING: ("delivered", "completed"), HAIBEI: ("pending", "none")}
    kinds = [r.kind for r in service.receipts(pki.ctx, team.province, sent.message_id)]
    assert kinds == ["delivered", "signed-for", "completed"]

    late = hub.overdue(pki.ctx, now=sent.package.deadline + dt.timedelta(minutes=1))
    assert sent.message_id in {p.message_id for p in late}
    before = row_counts(pki)
    resent = service.send(pki.ctx, team.province, req.__class__(**{**req.__dict__,
                                                                   "message_id": sent.message_id}))
    assert not resent.created and row_counts(pki) == before
