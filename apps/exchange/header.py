"""The signed cleartext header: what routing, tracking and search need, and nothing secret.

:class:`Header` is the value; :func:`parse_header` reads one from DER that came from outside
(a department's own system, the hub's storage) and is the only way in: it refuses anything
that is not exactly the canonical DER of a valid header — trailing bytes, BER, unknown
versions, control characters, path-like file names, recipients named twice — with one
:class:`MalformedPackage` naming the field. What the values *mean* (a known urgency, an allowed
classification, an existing organisation) is the hub's check against policies/exchange.yaml.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from asn1crypto import core

from apps.exchange import asn1
from apps.exchange.errors import MalformedPackage

VERSION: Final = 1
DIGEST_BYTES: Final = 32
MAX_TEXT: Final = 1000  # the parser's own bound; policies/exchange.yaml's limits are tighter
MAX_FILES: Final = 1000
MAX_ORGS: Final = 10_000
_CONTROL: Final = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_ORG_CODE: Final = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{0,31}")
_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class OrgName:
    code: str
    name: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "name": self.name}


@dataclass(frozen=True)
class FileInfo:
    name: str
    size: int
    sha256: bytes

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256.hex()}


@dataclass(frozen=True)
class Metadata:
    """What the sender states about the document (header and encrypted content alike)."""

    number: str
    title: str
    issuer: OrgName
    date: dt.date
    urgency: str
    classification: str
    main: tuple[OrgName, ...]
    copy: tuple[OrgName, ...]

    @property
    def recipients(self) -> tuple[tuple[OrgName, str], ...]:
        """(organisation, "main" | "copy") in header order."""
        return tuple((o, "main") for o in self.main) + tuple((o, "copy") for o in self.copy)

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "title": self.title, "issuer": self.issuer.as_dict(),
                "date": self.date.isoformat(), "urgency": self.urgency,
                "classification": self.classification,
                "main": [o.as_dict() for o in self.main],
                "copy": [o.as_dict() for o in self.copy]}

    def to_asn1(self) -> asn1.DocumentMetadata:
        return asn1.DocumentMetadata({
            "document_number": self.number, "title": self.title,
            "issuer": _org_asn1(self.issuer), "document_date": self.date.isoformat(),
            "urgency": self.urgency, "classification": self.classification,
            "main_recipients": [_org_asn1(o) for o in self.main],
            "copy_recipients": [_org_asn1(o) for o in self.copy],
        })


@dataclass(frozen=True)
class Header:
    message_id: str
    metadata: Metadata
    content_digest: bytes
    envelope_digest: bytes
    sent_at: dt.datetime
    deadline: dt.datetime
    body: FileInfo
    attachments: tuple[FileInfo, ...]

    def to_der(self) -> bytes:
        return bytes(asn1.ExchangeHeader({
            "version": VERSION, "message_id": self.message_id,
            "metadata": self.metadata.to_asn1(), "content_digest": self.content_digest,
            "envelope_digest": self.envelope_digest, "sent_at": _whole(self.sent_at),
            "deadline": _whole(self.deadline), "body": _file_asn1(self.body),
            "attachments": [_file_asn1(a) for a in self.attachments],
        }).dump(force=True))

    def as_dict(self) -> dict[str, Any]:
        return {"message_id": self.message_id, **self.metadata.as_dict(),
                "content_digest": self.content_digest.hex(),
                "envelope_digest": self.envelope_digest.hex(),
                "sent_at": self.sent_at.isoformat(), "deadline": self.deadline.isoformat(),
                "body": self.body.as_dict(),
                "attachments": [a.as_dict() for a in self.attachments]}


def _whole(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("header times must be timezone-aware")
    return value.astimezone(dt.UTC).replace(microsecond=0)


def _org_asn1(org: OrgName) -> asn1.OrgRef:
    return asn1.OrgRef({"code": org.code, "name": org.name})


def _file_asn1(info: FileInfo) -> asn1.FileInfo:
    return asn1.FileInfo({"name": info.name, "size": info.size, "sha256": info.sha256})


# -- checks shared by the parsers ------------------------------------------------------------------


def check_text(value: object, field: str, *, max_chars: int = MAX_TEXT,
               empty: bool = False) -> str:
    if not isinstance(value, str):
        raise MalformedPackage(f"{field} is not a string", field=field)
    if (not value.strip() and not empty) or len(value) > max_chars:
        raise MalformedPackage(f"{field} must be 1..{max_chars} characters", field=field)
    if _CONTROL.search(value):
        raise MalformedPackage(f"{field} must not contain control characters or invalid "
                               f"Unicode", field=field)
    return value


def check_file_name(value: object, field: str) -> str:
    name = check_text(value, field, max_chars=255)
    if name in (".", "..") or any(c in name for c in "/\\:") or name != name.strip():
        raise MalformedPackage(f"{field} {name!r} must be a plain file name (no path, no "
                               f"leading or trailing blanks)", field=field)
    return name


def check_message_id(value: object, field: str = "message_id") -> str:
    text = check_text(value, field, max_chars=36)
    try:
        canonical = str(uuid.UUID(text))
    except ValueError:
        raise MalformedPackage(f"{field} must be a UUID", field=field) from None
    if canonical != text:
        raise MalformedPackage(f"{field} must be a UUID in its canonical lower-case form",
                               field=field)
    return text


def check_org_code(value: object, field: str) -> str:
    code = check_text(value, field, max_chars=32)
    if not _ORG_CODE.fullmatch(code):
        raise MalformedPackage(f"{field} {code!r} is not an organisation code", field=field)
    return code


def _digest(value: object, field: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != DIGEST_BYTES:
        raise MalformedPackage(f"{field} must be a SHA-256 digest ({DIGEST_BYTES} bytes)",
                               field=field)
    return value


def _org(value: Any, field: str) -> OrgName:
    return OrgName(check_org_code(value["code"], f"{field}.code"),
                   check_text(value["name"], f"{field}.name", max_chars=128))


def _orgs(values: Any, field: str) -> tuple[OrgName, ...]:
    if len(values) > MAX_ORGS:
        raise MalformedPackage(f"{field} lists more than {MAX_ORGS} organisations", field=field)
    return tuple(_org(v, f"{field}[{i}]") for i, v in enumerate(values))


def _file(value: Any, field: str) -> FileInfo:
    size = value["size"]
    if not isinstance(size, int) or size < 0 or size >= 2**63:
        raise MalformedPackage(f"{field}.size must be a non-negative integer", field=field)
    return FileInfo(check_file_name(value["name"], f"{field}.name"), size,
                    _digest(value["sha256"], f"{field}.sha256"))


def _time(value: object, field: str) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise MalformedPackage(f"{field} must be a UTC GeneralizedTime", field=field)
    return value.astimezone(dt.UTC)


def metadata_from_native(value: Any) -> Metadata:
    """A decoded DocumentMetadata, checked field by field."""
    raw_date = check_text(value["document_date"], "document_date", max_chars=10)
    try:
        if not _DATE.fullmatch(raw_date):
            raise ValueError
        date = dt.date.fromisoformat(raw_date)
    except ValueError:
        raise MalformedPackage("document_date must be a date YYYY-MM-DD",
                               field="document_date") from None
    metadata = Metadata(
        number=check_text(value["document_number"], "document_number"),
        title=check_text(value["title"], "title"),
        issuer=_org(value["issuer"], "issuer"),
        date=date,
        urgency=check_text(value["urgency"], "urgency", max_chars=16),
        classification=check_text(value["classification"], "classification", max_chars=16),
        main=_orgs(value["main_recipients"], "main_recipients"),
        copy=_orgs(value["copy_recipients"], "copy_recipients"))
    check_recipients(metadata.issuer, metadata.main, metadata.copy)
    return metadata


def check_recipients(issuer: OrgName, main: Sequence[OrgName], copy: Sequence[OrgName]) -> None:
    if not main:
        raise MalformedPackage("a document needs at least one main recipient (主送)",
                               field="main_recipients")
    codes = [o.code for o in (*main, *copy)]
    twice = sorted({c for c in codes if codes.count(c) > 1})
    if twice:
        raise MalformedPackage(f"recipient(s) {', '.join(twice)} named more than once",
                               field="recipients")
    if issuer.code in codes:
        raise MalformedPackage(f"the issuing organisation {issuer.code} cannot be its own "
                               f"recipient", field="recipients")


def load_canonical(structure: type[core.Asn1Value], der: bytes, what: str) -> Any:
    """Decode ``der`` as ``structure`` completely, or MalformedPackage. Only canonical DER is
    accepted: re-encoding must give the same bytes (no BER, no trailing data)."""
    if not isinstance(der, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be bytes, not {type(der).__name__}")
    raw = bytes(der)
    try:
        value = structure.load(raw, strict=True)
        native = value.native
        canonical = bytes(structure.load(raw).dump(force=True)) == raw
    except (ValueError, TypeError, KeyError, OverflowError, UnicodeError, RecursionError):
        raise MalformedPackage(f"not an exchange {what}: the bytes do not decode as one "
                               f"(garbage, truncated or damaged)") from None
    if not canonical:
        raise MalformedPackage(f"the exchange {what} is not in canonical DER")
    return native


def parse_header(der: bytes) -> Header:
    """The header in ``der`` (an ExchangeHeader, canonical DER), every field checked."""
    native = load_canonical(asn1.ExchangeHeader, der, "header")
    try:
        if native["version"] != VERSION:
            raise MalformedPackage(f"header version {native['version']} is not {VERSION}",
                                   field="version")
        attachments = native["attachments"]
        if len(attachments) > MAX_FILES:
            raise MalformedPackage(f"more than {MAX_FILES} attachments", field="attachments")
        header = Header(
            message_id=check_message_id(native["message_id"]),
            metadata=metadata_from_native(native["metadata"]),
            content_digest=_digest(native["content_digest"], "content_digest"),
            envelope_digest=_digest(native["envelope_digest"], "envelope_digest"),
            sent_at=_time(native["sent_at"], "sent_at"),
            deadline=_time(native["deadline"], "deadline"),
            body=_file(native["body"], "body"),
            attachments=tuple(_file(a, f"attachments[{i}]") for i, a in enumerate(attachments)))
    except (KeyError, TypeError):
        raise MalformedPackage("the header lacks a field") from None
    names = [a.name for a in header.attachments]
    if len(set(names)) != len(names):
        raise MalformedPackage("two attachments have the same name", field="attachments")
    if header.deadline < header.sent_at:
        raise MalformedPackage("the deadline is before the sending time", field="deadline")
    return header
