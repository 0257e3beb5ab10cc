"""The compose form (发送公文) read into a :class:`apps.exchange.service.SendRequest`.

Uploads are read with a bound one byte over the policy's limit, so an oversized file is
refused by name without being held whole; every other rule (number and title lengths,
urgency, classification, recipients, file names, the package total) is the service's, which
refuses before any key is used. A refused form stores nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from werkzeug.datastructures import FileStorage, MultiDict

from apps.exchange.errors import PackageTooLarge, ValidationError
from apps.exchange.package import DocumentFile
from apps.exchange.policy import ExchangePolicy
from apps.exchange.service import SendRequest


@dataclass(frozen=True)
class ComposeValues:
    """What the form showed or the sender typed, to show the form again after a refusal
    (files cannot be put back into a file input: the sender chooses them again)."""

    number: str = ""
    title: str = ""
    date: str = ""
    urgency: str = ""
    classification: str = ""
    main: tuple[str, ...] = ()
    copy: tuple[str, ...] = ()
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def values_from(form: MultiDict[str, str]) -> ComposeValues:
    message_id = form.get("message_id", "").strip()
    try:
        message_id = str(uuid.UUID(message_id))
    except ValueError:
        message_id = str(uuid.uuid4())
    return ComposeValues(
        number=form.get("number", "").strip(), title=form.get("title", "").strip(),
        date=form.get("date", "").strip(), urgency=form.get("urgency", ""),
        classification=form.get("classification", ""),
        main=tuple(dict.fromkeys(form.getlist("main"))),
        copy=tuple(dict.fromkeys(form.getlist("copy"))), message_id=message_id)


def _read(upload: FileStorage, limit: int, what: str) -> DocumentFile:
    name = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    content = upload.stream.read(limit + 1)
    if len(content) > limit:
        raise PackageTooLarge(f"{what} {name!r} is over the limit of {limit} bytes",
                              field="attachments" if what == "attachment" else "body",
                              limit=limit)
    return DocumentFile(name, content)


def _uploads(files: Mapping[str, Sequence[FileStorage]], name: str) -> list[FileStorage]:
    return [f for f in files.get(name, ()) if f.filename]


def send_request(values: ComposeValues, files: Mapping[str, Sequence[FileStorage]],
                 issuer: str, policy: ExchangePolicy) -> SendRequest:
    """The document the form describes, or ValidationError / PackageTooLarge naming the
    field."""
    if not values.date:
        raise ValidationError("the document date (成文日期) is required", field="date")
    try:
        date = dt.date.fromisoformat(values.date)
    except ValueError:
        raise ValidationError(f"{values.date!r} is not a date YYYY-MM-DD",
                              field="date") from None
    both = set(values.main) & set(values.copy)
    if both:
        raise ValidationError(f"an organisation is either a main or a copy recipient, not "
                              f"both: {', '.join(sorted(both))}", field="recipients")
    if not values.main:
        raise ValidationError("choose at least one main recipient (主送)", field="main")
    limits = policy.limits
    bodies = _uploads(files, "body")
    if len(bodies) != 1:
        raise ValidationError("attach the body PDF (正文), exactly one file", field="body")
    body = _read(bodies[0], limits.max_body_bytes, "body")
    attached = _uploads(files, "attachments")
    if len(attached) > limits.max_attachments:
        raise ValidationError(f"at most {limits.max_attachments} attachments, not "
                              f"{len(attached)}", field="attachments")
    attachments = tuple(_read(f, limits.max_attachment_bytes, "attachment") for f in attached)
    return SendRequest(issuer=issuer, number=values.number, title=values.title, date=date,
                       urgency=values.urgency, classification=values.classification,
                       main=values.main, copy=values.copy, body=body,
                       attachments=attachments, message_id=values.message_id)
