"""`govpki exchange ...`: official-document exchange from the command line (公文交换).

The acting operator is GOVPKI_ACTOR, an RA operator (an exchange clerk, 公文收发员, of the
organisation it acts for); the organisations' keys are the server's (this host's
GOVPKI_HOME). Every command calls :mod:`apps.exchange.service`, so the CLI decides nothing the
REST API and the web pages would decide differently. Errors are GovpkiError subclasses that
govpki/cli.py turns into one ``error: ...`` line and exit status 1; usage errors exit 2.
Files are written to a temporary name and renamed, never over an existing file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import click

from apps.exchange import org_keys, service
from apps.exchange.errors import ValidationError
from apps.exchange.package import DocumentFile
from apps.exchange.policy import get_policy
from apps.exchange.records import PackageSummary
from ca.cli import ca_context
from ca.context import CaContext, default_actor
from ra.operators import resolve_actor
from ra.records import Operator

#: How commands open the CA context; tests replace it with their own.
open_context: Callable[[], AbstractContextManager[CaContext]] = ca_context
#: Read limit for a file named on the command line (the policy's limits are checked after).
MAX_FILE_BYTES = 256 * 1024 * 1024


@contextmanager
def _session() -> Iterator[tuple[CaContext, Operator]]:
    with open_context() as ctx:
        yield ctx, resolve_actor(ctx.sessions, default_actor())


def _read(path: Path, what: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ValidationError(f"{what} {path.name} is {size} bytes, over "
                                  f"{MAX_FILE_BYTES}", field=what)
        return path.read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read {what} {path}: {exc.strerror or exc}",
                              field=what) from None


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file (0600 via a temporary name), never over an existing one."""
    if path.exists():
        raise ValidationError(f"{path} exists; refusing to overwrite it", field="out")
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.link(temp, path)  # fails if ``path`` appeared meanwhile
    finally:
        temp.unlink(missing_ok=True)


def _emit(as_json: bool, data: Any, lines: Sequence[str]) -> None:
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
    else:
        for line in lines:
            click.echo(line)


def _line(p: PackageSummary) -> str:
    states = ", ".join(f"{d.recipient.code}:{d.transport_state}/{d.business_state}"
                       + (" 超期" if d.overdue else "") for d in p.deliveries)
    return (f"{p.message_id}  {p.sent_at:%Y-%m-%d %H:%M}  {p.urgency}  {p.number}  {p.title}"
            f"  from {p.sender.code}  [{states}]")


@click.group("exchange")
def exchange_group() -> None:
    """Official-document exchange: send, inbox, fetch, receipts, tracking. (公文交换)"""


# -- organisations' keys ---------------------------------------------------------------------------


@exchange_group.group("org-keys")
def org_keys_group() -> None:
    """Organisations' seals and encryption keys held by this server."""


@org_keys_group.command("init")
@click.argument("org")
@click.option("--purpose", "purposes", multiple=True, type=click.Choice(["seal", "encryption"]),
              help="Only this key (default: both).")
def org_keys_init_cmd(org: str, purposes: tuple[str, ...]) -> None:
    """Make ORG's seal (department-seal) and encryption key (org-encryption, held by the KMC:
    escrowed and installed on the HSM, or a file key on the embedded store)."""
    with open_context() as ctx:
        made = org_keys.provision(ctx, org, policy=get_policy(), actor=default_actor(),
                                  purposes=purposes or ("seal", "encryption"))
    for key in made:
        click.echo(f"{key.org_code} {key.purpose}: {key.key_uri} certificate "
                   f"{key.certificate_ca}/{key.certificate_serial} ({key.protection})")


@org_keys_group.command("register")
@click.argument("org")
@click.option("--purpose", required=True, type=click.Choice(["seal", "encryption"]))
@click.option("--ca", required=True, help="The certificate's CA.")
@click.option("--serial", required=True, help="The certificate's serial (hex).")
def org_keys_register_cmd(org: str, purpose: str, ca: str, serial: str) -> None:
    """Register a certificate whose key ORG keeps on its own node."""
    with open_context() as ctx:
        key = org_keys.register_certificate(ctx, org, purpose, ca=ca, serial=serial,
                                            actor=default_actor())
    click.echo(f"{key.org_code} {key.purpose}: certificate {key.certificate_ca}/"
               f"{key.certificate_serial} registered (key on the organisation's own node)")


@org_keys_group.command("list")
@click.argument("org", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def org_keys_list_cmd(org: str | None, as_json: bool) -> None:
    """Registered keys (all organisations, or ORG's)."""
    with open_context() as ctx:
        keys = org_keys.list_keys(ctx, org)
    _emit(as_json, {"items": [k.as_dict() for k in keys]},
          [f"{k.org_code:12} {k.purpose:10} {k.state:7} {k.certificate_ca}/"
           f"{k.certificate_serial} {k.key_uri or '(own node)'}" for k in keys])


# -- sending ---------------------------------------------------------------------------------------


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date YYYY-MM-DD") from None


@exchange_group.command("send")
@click.option("--from", "issuer", default=None,
              help="Issuing organisation's code (default: the actor's organisation).")
@click.option("--number", required=True, help="Document number (文号).")
@click.option("--title", required=True, help="Title (标题).")
@click.option("--date", "date_text", default=None,
              help="Document date YYYY-MM-DD (成文日期; default today).")
@click.option("--urgency", required=True, help="紧急程度: 特急, 加急 or 平急.")
@click.option("--classification", default="非密", show_default=True, help="密级.")
@click.option("--to", "main", multiple=True, required=True,
              help="Main recipient's organisation code (主送); repeat for several.")
@click.option("--cc", "copy", multiple=True, help="Copy recipient's code (抄送); repeatable.")
@click.option("--body", "body", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The document's PDF (正文).")
@click.option("--attach", "attachments", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An attachment (附件); repeatable.")
@click.option("--message-id", default=None,
              help="Resend: the message id of the earlier attempt (same content).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def send_cmd(issuer: str | None, number: str, title: str, date_text: str | None, urgency: str,
             classification: str, main: tuple[str, ...], copy: tuple[str, ...], body: Path,
             attachments: tuple[Path, ...], message_id: str | None, as_json: bool) -> None:
    """Seal, encrypt and send a document (发送)."""
    date = _date(date_text) if date_text else dt.date.today()  # noqa: DTZ011 (a civil date)
    files = tuple(DocumentFile(p.name, _read(p, "attachment")) for p in attachments)
    with _session() as (ctx, actor):
        request = service.SendRequest(
            issuer=issuer or actor.organisation.code, number=number, title=title, date=date,
            urgency=urgency, classification=classification, main=main, copy=copy,
            body=DocumentFile(body.name, _read(body, "body")), attachments=files,
            message_id=message_id)
        result = service.send(ctx, actor, request)
    verb = "sent" if result.created else "already accepted (resend: nothing new stored)"
    to = ", ".join(d.recipient.code for d in result.package.deliveries)
    _emit(as_json, result.as_dict(), [f"{result.message_id} {verb}: {number} to {to}"])


# -- receiving -------------------------------------------------------------------------------------


@exchange_group.command("inbox")
@click.option("--org", default=None, help="Organisation (default: the actor's).")
@click.option("--state", type=click.Choice(["pending", "fetched", "delivered"]), default=None)
@click.option("--business", type=click.Choice(["none", "signed-for", "returned", "completed"]),
              default=None)
@click.option("--page", type=click.IntRange(1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inbox_cmd(org: str | None, state: str | None, business: str | None, page: int,
              as_json: bool) -> None:
    """Documents addressed to the organisation (收件箱), newest first."""
    with _session() as (ctx, actor):
        found = service.inbox(ctx, actor, org=org, state=state, business_state=business,
                              page=page)
    _emit(as_json, {"items": [p.as_dict() for p in found.items], "total": found.total,
                    "page": found.page, "pages": found.pages},
          [*(_line(p) for p in found.items), f"{found.total} documents (page {found.page} of "
                                             f"{found.pages})"])


@exchange_group.command("fetch")
@click.argument("message_id")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="A new directory for the body, the attachments and verification.json.")
@click.option("--org", default=None, help="Recipient organisation (default: the actor's).")
@click.option("--raw", is_flag=True,
              help="Only save the package as received (package.der), for an organisation "
                   "that opens it on its own node; no receipt is sent.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def fetch_cmd(message_id: str, out: Path, org: str | None, raw: bool, as_json: bool) -> None:
    """Fetch a document, verify and decrypt it, and send the technical receipt (接收)."""
    if out.exists():
        raise ValidationError(f"{out} exists; give a new directory", field="out")
    with _session() as (ctx, actor):
        if raw:
            fetched = service.fetch(ctx, actor, message_id, org=org)
            out.mkdir(parents=True, mode=0o700)
            _write_new(out / "package.der", fetched.package)
            _emit(as_json, fetched.header.as_dict(), [f"{message_id} saved to {out}/package.der"])
            return
        opened = service.open_document(ctx, actor, message_id, org=org)
    document = opened.document
    out.mkdir(parents=True, mode=0o700)
    for f in (document.body, *document.attachments):
        _write_new(out / f.name, f.content)
    report = {"header": document.header.as_dict(), "verification": opened.verification(),
              "receipt": opened.receipt.as_dict()}
    _write_new(out / "verification.json",
               json.dumps(report, ensure_ascii=False, indent=2).encode())
    seal = report["verification"]["seal"] or {}
    _emit(as_json, report, [f"{message_id} {document.header.metadata.number}: seal valid "
                            f"({seal.get('subject')}); {1 + len(document.attachments)} files "
                            f"in {out}; technical receipt sent"])


@exchange_group.command("receipt")
@click.argument("message_id")
@click.argument("kind", type=click.Choice(["signed-for", "returned", "completed"]))
@click.option("--reason", default="", help="Why the document is returned (退回, required).")
@click.option("--org", default=None, help="Recipient organisation (default: the actor's).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def receipt_cmd(message_id: str, kind: str, reason: str, org: str | None,
                as_json: bool) -> None:
    """Sign for (签收), return (退回) or complete (办结) a received document."""
    with _session() as (ctx, actor):
        record = service.receipt(ctx, actor, message_id, kind, reason=reason, org=org)
    _emit(as_json, record.as_dict(),
          [f"{message_id} {kind} by {record.recipient.code} ({record.created_at:%Y-%m-%d %H:%M})"])


# -- tracking --------------------------------------------------------------------------------------


@exchange_group.command("status")
@click.argument("message_id")
@click.option("--receipts", "receipts_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Also save every receipt into this new directory "
                                 "(<org>-<kind>.rct.der: RFC 2634, for openssl cms "
                                 "-verify_receipt; <org>-<kind>.statement.der; header.der).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(message_id: str, receipts_dir: Path | None, as_json: bool) -> None:
    """A document's state at every recipient, receipts and overdue flags (跟踪)."""
    if receipts_dir is not None and receipts_dir.exists():
        raise ValidationError(f"{receipts_dir} exists; give a new directory", field="receipts")
    with _session() as (ctx, actor):
        summary = service.status(ctx, actor, message_id)
        found = service.receipts(ctx, actor, message_id)
        signed_header = service.signed_header(ctx, actor, message_id) if receipts_dir else b""
    if receipts_dir is not None:
        receipts_dir.mkdir(parents=True, mode=0o700)
        _write_new(receipts_dir / "header.der", signed_header)
        for r in found:
            _write_new(receipts_dir / f"{r.recipient.code}-{r.kind}.rct.der", r.ess_receipt)
            _write_new(receipts_dir / f"{r.recipient.code}-{r.kind}.statement.der",
                       r.statement)
    data = {**summary.as_dict(), "receipts": [r.as_dict() for r in found]}
    lines = [f"{summary.number}  {summary.title}  ({summary.urgency}, {summary.classification},"
             f" deadline {summary.deadline:%Y-%m-%d %H:%M})"]
    for d in summary.deliveries:
        lines.append(f"  {d.recipient.code:12} {d.role:4} {d.transport_state:9} "
                     f"{d.business_state:10}" + (" 超期 overdue" if d.overdue else "")
                     + (f" reason: {d.return_reason}" if d.return_reason else ""))
    lines += [f"  receipt {r.recipient.code} {r.kind} {r.created_at:%Y-%m-%d %H:%M}"
              for r in found]
    _emit(as_json, data, lines)


@exchange_group.command("search")
@click.option("--number", default=None, help="Document number contains.")
@click.option("--title", default=None, help="Title contains.")
@click.option("--from-date", default=None, help="Document date from (YYYY-MM-DD).")
@click.option("--to-date", default=None, help="Document date to (YYYY-MM-DD).")
@click.option("--org", default=None, help="Only documents of this organisation.")
@click.option("--page", type=click.IntRange(1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def search_cmd(number: str | None, title: str | None, from_date: str | None,
               to_date: str | None, org: str | None, page: int, as_json: bool) -> None:
    """Search sent and received documents by number, title and date (检索)."""
    with _session() as (ctx, actor):
        found = service.search(ctx, actor, org=org, number=number, title=title,
                               date_from=_date(from_date) if from_date else None,
                               date_to=_date(to_date) if to_date else None, page=page)
    _emit(as_json, {"items": [p.as_dict() for p in found.items], "total": found.total},
          [*(_line(p) for p in found.items), f"{found.total} documents"])
