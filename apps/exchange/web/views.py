"""The exchange pages: inbox (收件箱), outbox (发件箱), compose (发送公文), a received document
with its seal verification and downloads, business receipts (签收 / 退回 / 办结), tracking per
recipient (跟踪) and search (检索).

Views are thin: every decision — who may act for which organisation, what may travel, what a
receipt may follow — is :mod:`apps.exchange.service`'s, whose typed errors become the error
page (base.py) with their status and message. Views only choose what to show.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.x509.oid import NameOID
from flask import redirect, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response

from apps.exchange import service
from apps.exchange.errors import ValidationError
from apps.exchange.header import check_message_id
from apps.exchange.package import DocumentFile
from apps.exchange.records import DeliveryStatus, PackageSummary
from apps.exchange.web import forms
from apps.exchange.web.base import (
    actor,
    bp,
    ca_context,
    file_size,
    page_number,
    policy,
    render,
    see_other,
)
from core.errors import GovpkiError

PER_PAGE = 20
INBOX_FILTERS = ("none", "signed-for", "returned", "completed")
#: Which business receipts a delivery in a state may take next (hub.BUSINESS_STEPS; the
#: service decides, this only chooses the buttons).
NEXT_STEPS = {"none": ("signed-for", "returned"), "signed-for": ("completed",)}


def _message_id(value: str) -> str:
    try:
        return check_message_id(value)
    except GovpkiError:
        raise NotFound() from None


@bp.get("/")
def index() -> ResponseReturnValue:
    return redirect(url_for("exchange_web.inbox"), 303)


# -- lists -----------------------------------------------------------------------------------------


@bp.get("/inbox")
def inbox() -> ResponseReturnValue:
    business = request.args.get("business") or None
    if business not in (None, *INBOX_FILTERS):
        business = None
    found = service.inbox(ca_context(), actor(), business_state=business, page=page_number(),
                          per_page=PER_PAGE)
    return render("inbox.html", section="inbox", page=found, business=business,
                  filters=INBOX_FILTERS, mine=_own_delivery)


@bp.get("/outbox")
def outbox() -> ResponseReturnValue:
    found = service.outbox(ca_context(), actor(), page=page_number(), per_page=PER_PAGE)
    return render("outbox.html", section="outbox", page=found)


def _date_arg(name: str) -> dt.date | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{value!r} is not a date YYYY-MM-DD", field=name) from None


@bp.get("/search")
def search() -> ResponseReturnValue:
    args = {k: request.args.get(k, "").strip()[:200]
            for k in ("number", "title", "date_from", "date_to")}
    searched = any(args.values()) or "q" in request.args
    found = None
    error: GovpkiError | None = None
    if searched:
        try:
            found = service.search(ca_context(), actor(), number=args["number"] or None,
                                   title=args["title"] or None,
                                   date_from=_date_arg("date_from"),
                                   date_to=_date_arg("date_to"), page=page_number(),
                                   per_page=PER_PAGE)
        except ValidationError as exc:
            error = exc
    return render("search.html", 400 if error else 200, section="search", args=args,
                  page=found, error=error, link=_link_of)


def _own_delivery(summary: PackageSummary) -> DeliveryStatus | None:
    code = actor().organisation.code
    return next((d for d in summary.deliveries if d.recipient.code == code), None)


def _link_of(summary: PackageSummary) -> str:
    """A received document opens; one's own sent document shows its tracking."""
    if summary.sender.code == actor().organisation.code:
        return url_for("exchange_web.tracking", message_id=summary.message_id)
    return url_for("exchange_web.document", message_id=summary.message_id)


# -- compose ---------------------------------------------------------------------------------------


def _compose_page(values: forms.ComposeValues, status: int = 200,
                  error: GovpkiError | None = None) -> tuple[str, int]:
    me = actor()
    limits = policy().limits
    directory = [c for c in service.recipient_directory(ca_context(), me)
                 if c.organisation.code != me.organisation.code]
    return render("compose.html", status, section="compose", values=values, error=error,
                  directory=directory, policy=policy(),
                  limits_text={"body": file_size(limits.max_body_bytes),
                               "attachment": file_size(limits.max_attachment_bytes),
                               "count": limits.max_attachments,
                               "total": file_size(limits.max_package_bytes)},
                  today=dt.date.today().isoformat())  # noqa: DTZ011 (a civil date)


@bp.get("/compose")
def compose() -> ResponseReturnValue:
    rules = policy()
    least_urgent = max(rules.urgencies.values(), key=lambda u: u.hours).name
    allowed = next((c.name for c in rules.classifications.values() if c.allowed), "")
    return _compose_page(forms.ComposeValues(urgency=least_urgent, classification=allowed))


@bp.post("/compose")
def compose_post() -> ResponseReturnValue:
    values = forms.values_from(request.form)
    me = actor()
    try:
        send = forms.send_request(values, request.files.to_dict(flat=False),
                                  me.organisation.code, policy())
        result = service.send(ca_context(), me, send, policy=policy())
    except GovpkiError as exc:
        if exc.http_status >= 500:
            raise
        return _compose_page(values, exc.http_status, exc)
    return see_other("exchange_web.tracking", message_id=result.message_id,
                     done="sent" if result.created else "resent")


# -- a received document ---------------------------------------------------------------------------


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    found = name.get_attributes_for_oid(oid)
    return str(found[0].value) if found else None


def _verification(opened: service.OpenResult) -> dict[str, Any]:
    """What the page shows of the seal's verification (signing/cms's verdict)."""
    checked = opened.document.verification
    signer = checked.signer
    cert = signer.certificate if signer is not None else None
    return {
        "valid": checked.valid, "reasons": list(checked.reasons),
        "signer_org": (_attribute(cert.subject, NameOID.ORGANIZATION_NAME)
                       or _attribute(cert.subject, NameOID.COMMON_NAME)) if cert else None,
        "signer_name": _attribute(cert.subject, NameOID.COMMON_NAME) if cert else None,
        "subject": signer.subject if signer else None,
        "serial": format(cert.serial_number, "x") if cert else None,
        "issuer": cert.issuer.rfc4514_string() if cert else None,
        "chain": [c.subject.rfc4514_string() for c in signer.chain] if signer else [],
        "chain_valid": bool(signer and signer.chain_valid),
        "revocation": signer.revocation.value if signer else "unknown",
        "integrity": checked.integrity,
        "signing_time": signer.signing_time if signer else None,
        "verified_at": opened.verified_at,
    }


@bp.get("/doc/<message_id>")
def document(message_id: str) -> ResponseReturnValue:
    """Open (fetch, verify, decrypt; the first opening sends the technical receipt)."""
    message_id = _message_id(message_id)
    ctx, me = ca_context(), actor()
    opened = service.open_document(ctx, me, message_id, policy=policy())
    summary = service.status(ctx, me, message_id)
    delivery = _own_delivery(summary)
    done = request.args.get("done", "")
    return render("document.html", section="inbox", header=opened.document.header,
                  opened=opened, check=_verification(opened), summary=summary,
                  delivery=delivery, reason_max=policy().limits.max_reason_chars,
                  steps=NEXT_STEPS.get(
                      delivery.business_state if delivery else "", ()),
                  done=done if done in NEXT_STEPS["none"] + NEXT_STEPS["signed-for"] else "")


def _download(file: DocumentFile, media_type: str) -> Response:
    ascii_name = file.name.encode("ascii", "replace").decode().replace('"', "_") or "file"
    response = Response(file.content, 200, mimetype=media_type)
    # RFC 6266 §4.3: a plain fallback and the UTF-8 name (RFC 8187) for Chinese file names.
    response.headers["Content-Disposition"] = (
        f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(file.name, safe='')}")
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


@bp.get("/doc/<message_id>/files/<int:index>")
def download(message_id: str, index: int) -> ResponseReturnValue:
    """The body (0) or an attachment (1..), decrypted again for this download."""
    message_id = _message_id(message_id)
    opened = service.open_document(ca_context(), actor(), message_id, policy=policy())
    files = (opened.document.body, *opened.document.attachments)
    if not 0 <= index < len(files):
        raise NotFound()
    return _download(files[index], "application/pdf" if index == 0
                     else "application/octet-stream")


@bp.post("/doc/<message_id>/receipt")
def receipt(message_id: str) -> ResponseReturnValue:
    message_id = _message_id(message_id)
    kind = request.form.get("kind", "")
    reason = request.form.get("reason", "").strip()
    record = service.receipt(ca_context(), actor(), message_id, kind, reason=reason,
                             policy=policy())
    return see_other("exchange_web.document", message_id=message_id, done=record.kind)


# -- tracking --------------------------------------------------------------------------------------


@bp.get("/track/<message_id>")
def tracking(message_id: str) -> ResponseReturnValue:
    message_id = _message_id(message_id)
    ctx, me = ca_context(), actor()
    summary = service.status(ctx, me, message_id)
    found = service.receipts(ctx, me, message_id)
    done = request.args.get("done", "")
    return render("tracking.html", section="outbox", summary=summary, receipts=found,
                  done=done if done in ("sent", "resent") else "")


@bp.route("/<path:rest>")
def unknown_page(rest: str) -> ResponseReturnValue:  # pragma: no cover - 404 in before_request
    raise NotFound()
