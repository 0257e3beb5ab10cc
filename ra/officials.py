"""Officials (证书用户): registration, editing, search, the subject DN, bulk import from CSV.

An official's certificate subject is built here from the RA's own records — never from a CSR
(DESIGN.md, issuance step 3): C=CN, ST from the province, L from the prefecture when the
organisation lies under one, O the organisation's Chinese name, OU the optional unit, CN the
official's name, checked with policies.names against the official-signing profile's rules. A
record whose subject would be refused is refused when it is registered, not months later at
issuance.

The internal identifier is the RA's key for a person. It must never be a resident identity
number (身份证号): it appears in audit logs and exports, and policies.names'
``contains_national_id`` refuses anything that looks like one, in every text field.

Bulk import is all or nothing: every row is validated first (against the database and against
the other rows), and either all rows are written in one transaction or — if any row has a
problem — none, with a per-row report. A half-imported roster would leave the operator to work
out which half; a refused one is fixed and re-sent whole.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Final

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.db import transaction, utcnow
from policies.errors import SubjectRuleViolation
from policies.names import check_subject, contains_national_id, format_subject
from policies.profiles import get_profile
from ra import models
from ra.authz import authorize, permits, visible_path
from ra.errors import Duplicate, ImportRefused, NotFound, RowProblem, ValidationError
from ra.orgs import ancestors, get_organisation, organisation_by_id
from ra.records import Official, Operator, Organisation, Page
from ra.roster_xlsx import XlsxUnreadable, is_xlsx, xlsx_rows

SUBJECT_PROFILE: Final = "official-signing"
ROSTER_COLUMNS: Final = ("identifier", "name", "org_code", "position", "contact", "unit")
REQUIRED_COLUMNS: Final = ("identifier", "name", "org_code")
MAX_ROSTER_BYTES: Final = 8 * 1024 * 1024
MAX_ROSTER_ROWS: Final = 20000
_IDENTIFIER: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_GOV_SUFFIX: Final = "人民政府"


@dataclass(frozen=True)
class OfficialInput:
    """What an operator types (or a roster row says) about an official."""

    identifier: str
    name: str
    org_code: str
    position: str = ""
    contact: str = ""
    unit: str | None = None


def _to_record(row: models.Official, org: Organisation) -> Official:
    return Official(row.id, row.identifier, row.name, org, row.position, row.unit, row.contact,
                    row.status)


def _place_name(org: Organisation) -> str:
    """"西宁市人民政府" → "西宁市": the place, for ST and L."""
    name = org.name
    return name[: -len(_GOV_SUFFIX)] if name.endswith(_GOV_SUFFIX) and name != _GOV_SUFFIX \
        else name


def subject_pairs(chain: Sequence[Organisation], name: str, unit: str | None
                  ) -> list[tuple[str, str]]:
    """(attribute, value) pairs for an official of the last organisation of ``chain``."""
    org = chain[-1]
    pairs = [("C", "CN")]
    province = next((o for o in chain if o.kind == "province"), None)
    if province is not None:
        pairs.append(("ST", _place_name(province)))
    prefecture = next((o for o in chain if o.kind == "prefecture"), None)
    if prefecture is not None:
        pairs.append(("L", _place_name(prefecture)))
    pairs.append(("O", org.name))
    if unit:
        pairs.append(("OU", unit))
    pairs.append(("CN", name))
    return pairs


_SUBJECT_FIELDS: Final = {"CN": "name", "OU": "unit", "O": "org_code", "L": "org_code",
                          "ST": "org_code", "C": "org_code"}


def subject_for(session: Session, official: Official) -> str:
    """The RFC 4514 subject ca/ is to certify, checked against the profile's rules."""
    pairs = subject_pairs(ancestors(session, official.organisation), official.name,
                          official.unit)
    return format_subject(check_subject(pairs, get_profile(SUBJECT_PROFILE).subject_rules))


def _problems(session: Session, data: OfficialInput, *, existing_id: int | None = None
              ) -> tuple[list[tuple[str, str]], Organisation | None]:
    """Every (field, message) wrong with ``data``; the organisation when it exists."""
    problems: list[tuple[str, str]] = []
    if not _IDENTIFIER.fullmatch(data.identifier):
        problems.append(("identifier", "must be 1-64 characters: letters, digits, '.', '_' "
                                       "or '-', starting with a letter or digit"))
    if contains_national_id(data.identifier):
        problems.append(("identifier", "looks like a resident identity number; use the "
                                       "internal staff identifier instead"))
    elif _IDENTIFIER.fullmatch(data.identifier):
        taken = session.scalar(select(models.Official.id).where(
            models.Official.identifier == data.identifier))
        if taken is not None and taken != existing_id:
            problems.append(("identifier", f"{data.identifier} is already registered"))
    for field, value, limit in (("position", data.position, 64),
                                ("contact", data.contact, 128)):
        if len(value) > limit or not value.isprintable():
            problems.append((field, f"must be at most {limit} printable characters"))
        elif contains_national_id(value):
            problems.append((field, "contains what looks like a resident identity number"))
    org: Organisation | None = None
    try:
        org = get_organisation(session, data.org_code)
    except NotFound:
        problems.append(("org_code", f"no organisation with code {data.org_code!r}"))
    chain = ancestors(session, org) if org is not None else [
        Organisation(0, "?", None, "未知单位", "department", "/?/")]
    try:
        check_subject(subject_pairs(chain, data.name, data.unit or None),
                      get_profile(SUBJECT_PROFILE).subject_rules)
    except SubjectRuleViolation as exc:
        field = _SUBJECT_FIELDS.get(exc.attribute or "", "name")
        if org is not None or field != "org_code":
            problems.append((field, exc.message))
    return problems, org


def _raise_first(problems: list[tuple[str, str]]) -> None:
    if problems:
        field, message = problems[0]
        raise ValidationError(f"{field}: {message}", field=field)


def _row_by_identifier(session: Session, identifier: str) -> models.Official:
    row = session.scalar(select(models.Official).where(
        models.Official.identifier == identifier))
    if row is None:
        raise NotFound(f"no official with identifier {identifier!r}", identifier=identifier)
    return row


def load_official(session: Session, official_id: int) -> Official:
    row = session.get(models.Official, official_id)
    if row is None:
        raise NotFound(f"no official with id {official_id}")
    return _to_record(row, organisation_by_id(session, row.organisation_id))


def get_official(sessions: sessionmaker[Session], actor: Operator, identifier: str
                 ) -> Official:
    """One official, if ``actor`` may see them (an out-of-scope look-up is refused, audited)."""
    with transaction(sessions) as session:
        row = _row_by_identifier(session, identifier)
        official = _to_record(row, organisation_by_id(session, row.organisation_id))
    authorize(sessions, actor, "official.view", official.organisation, official=official,
              object_type="official", object_id=identifier)
    return official


def create_official(sessions: sessionmaker[Session], actor: Operator, data: OfficialInput
                    ) -> Official:
    data = _normalise(data)
    with transaction(sessions) as session:
        org = get_organisation(session, data.org_code)
    authorize(sessions, actor, "official.create", org, object_type="official",
              object_id=data.identifier)
    with transaction(sessions) as session:
        problems, org_found = _problems(session, data)
        if any(m.endswith("already registered") for _, m in problems):
            raise Duplicate(f"official {data.identifier} is already registered",
                            field="identifier")
        _raise_first(problems)
        assert org_found is not None
        now = utcnow()
        row = models.Official(identifier=data.identifier, name=data.name,
                              organisation_id=org_found.id, position=data.position,
                              unit=data.unit or None, contact=data.contact, status="active",
                              created_at=now, updated_at=now)
        session.add(row)
        session.flush()
        audit.record_event(session, actor=actor.username, action="ra.official.create",
                           object_type="official", object_id=data.identifier,
                           outcome="success", details={"organisation": org_found.code})
        return _to_record(row, org_found)


_EDITABLE: Final = ("name", "org_code", "position", "contact", "unit", "status")


def edit_official(sessions: sessionmaker[Session], actor: Operator, identifier: str,
                  **changes: str | None) -> Official:
    """Change some of name, org_code, position, contact, unit, status (active/left).

    Moving an official to another organisation needs official.edit on both.
    """
    unknown = set(changes) - set(_EDITABLE)
    if unknown:
        raise ValidationError(f"cannot edit {', '.join(sorted(unknown))}", field=min(unknown))
    current = get_official(sessions, actor, identifier)
    authorize(sessions, actor, "official.edit", current.organisation, official=current,
              object_type="official", object_id=identifier)
    status = changes.pop("status", None) or current.status
    if status not in models.OFFICIAL_STATUSES:
        raise ValidationError(f"status must be one of {', '.join(models.OFFICIAL_STATUSES)}",
                              field="status")
    data = OfficialInput(identifier, current.name, current.organisation.code, current.position,
                         current.contact, current.unit)
    data = _normalise(replace(data, **{k: v if v is not None else "" for k, v in
                                       changes.items()}))
    if data.org_code != current.organisation.code:
        with transaction(sessions) as session:
            new_org = get_organisation(session, data.org_code)
        authorize(sessions, actor, "official.edit", new_org, object_type="official",
                  object_id=identifier)
    with transaction(sessions) as session:
        problems, org = _problems(session, data, existing_id=current.id)
        _raise_first(problems)
        assert org is not None
        row = _row_by_identifier(session, identifier)
        before = {"name": row.name, "organisation": current.organisation.code,
                  "position": row.position, "unit": row.unit, "status": row.status}
        row.name, row.organisation_id, row.position = data.name, org.id, data.position
        row.contact, row.unit, row.status = data.contact, data.unit or None, status
        row.updated_at = utcnow()
        session.flush()
        after = {"name": row.name, "organisation": org.code, "position": row.position,
                 "unit": row.unit, "status": row.status}
        audit.record_event(session, actor=actor.username, action="ra.official.edit",
                           object_type="official", object_id=identifier, outcome="success",
                           details={"changed": sorted(k for k in after
                                                      if after[k] != before[k])})
        return _to_record(row, org)


def list_officials(sessions: sessionmaker[Session], actor: Operator, *,
                   org_code: str | None = None, query: str | None = None, page: int = 1,
                   per_page: int = 50) -> Page[Official]:
    """Officials ``actor`` may see, newest registration last; search by name or identifier.

    With ``org_code`` the page covers that organisation's subtree (refused and audited when it
    lies outside the actor's scope); without it, everything the actor's scope covers.
    """
    if page < 1 or not 1 <= per_page <= 500:
        raise ValidationError("page must be ≥ 1 and per_page 1..500", field="page")
    if org_code is not None:
        with transaction(sessions) as session:
            org = get_organisation(session, org_code)
        authorize(sessions, actor, "official.view", org)
        prefix: str | None = org.path
    else:
        prefix = visible_path(actor, "official.view")
        if prefix is None:
            authorize(sessions, actor, "official.view", actor.organisation)
    assert prefix is not None
    with transaction(sessions) as session:
        where = [models.Organisation.path.startswith(prefix, autoescape=True)]
        if actor.roles <= {"official"}:
            where.append(models.Official.id == (actor.official_id or 0))
        if query:
            where.append(or_(models.Official.name.contains(query, autoescape=True),
                             models.Official.identifier.startswith(query, autoescape=True)))
        base = select(models.Official).join(
            models.Organisation, models.Organisation.id == models.Official.organisation_id
        ).where(*where)
        total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = session.scalars(base.order_by(models.Official.id)
                               .offset((page - 1) * per_page).limit(per_page)).all()
        orgs: dict[int, Organisation] = {}
        items = []
        for row in rows:
            if row.organisation_id not in orgs:
                orgs[row.organisation_id] = organisation_by_id(session, row.organisation_id)
            items.append(_to_record(row, orgs[row.organisation_id]))
    return Page(items, total, page, per_page)


def _normalise(data: OfficialInput) -> OfficialInput:
    """Trim surrounding spaces (spreadsheets add them); never change what is inside."""
    return OfficialInput(data.identifier.strip(), data.name.strip(), data.org_code.strip(),
                         data.position.strip(), data.contact.strip(),
                         (data.unit or "").strip() or None)


# ---------------------------------------------------------------------------------------------
# Bulk import


@dataclass(frozen=True)
class RosterRow:
    line: int
    data: OfficialInput


def parse_roster(content: bytes | str) -> list[RosterRow]:
    """Parse a roster: CSV (UTF-8, BOM allowed) or an XLSX workbook (first sheet), with a
    header row naming the columns.

    Columns: identifier, name, org_code (required), position, contact, unit (optional), in any
    order. Whatever the input, the only exception is :class:`ImportRefused` (line 0 for
    problems with the file as a whole); ``line`` is the CSV line or the spreadsheet row.
    """
    if isinstance(content, bytes) and len(content) > MAX_ROSTER_BYTES:
        raise _file_problem(f"the roster is larger than {MAX_ROSTER_BYTES} bytes")
    try:
        if isinstance(content, bytes) and is_xlsx(content):
            return _roster_rows(xlsx_rows(content, MAX_ROSTER_ROWS))
        return _roster_rows(_csv_rows(content))
    except XlsxUnreadable as exc:
        raise _file_problem(str(exc)) from None
    except csv.Error as exc:
        raise _file_problem(f"not valid CSV: {exc}") from None


def _csv_rows(content: bytes | str) -> Iterator[tuple[int, list[str]]]:
    if isinstance(content, bytes):
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _file_problem("the roster is not UTF-8 text (save it as CSV UTF-8, or "
                                "upload the .xlsx workbook)") from None
    else:
        text = content.removeprefix("\ufeff")
    if len(text) > MAX_ROSTER_BYTES:
        raise _file_problem(f"the roster is larger than {MAX_ROSTER_BYTES} characters")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    for cells in reader:
        yield reader.line_num, cells


def _roster_rows(table: Iterator[tuple[int, list[str]]]) -> list[RosterRow]:
    first = next(table, None)
    if first is None:
        raise _file_problem("the roster is empty")
    columns = [c.strip().lower() for c in first[1]]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in ROSTER_COLUMNS]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if missing or unknown or repeated:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(repr(c)[:40] for c in unknown)}")
        if repeated:
            parts.append(f"repeated column(s) {', '.join(repeated)}")
        raise _file_problem(f"header: {'; '.join(parts)} (columns: "
                            f"{', '.join(ROSTER_COLUMNS)})")
    rows: list[RosterRow] = []
    problems: list[RowProblem] = []
    for line, cells in table:
        if not any(cell.strip() for cell in cells):
            continue
        if len(rows) + len(problems) >= MAX_ROSTER_ROWS:
            raise _file_problem(f"the roster has more than {MAX_ROSTER_ROWS} rows")
        if len(cells) != len(columns):
            problems.append(RowProblem(line, "row", f"has {len(cells)} cells, the header "
                                                    f"has {len(columns)}"))
            continue
        values = dict(zip(columns, cells, strict=True))
        rows.append(RosterRow(line, _normalise(OfficialInput(
            identifier=values["identifier"], name=values["name"],
            org_code=values["org_code"], position=values.get("position", ""),
            contact=values.get("contact", ""), unit=values.get("unit") or None))))
    if problems:
        raise ImportRefused(_summary(problems), tuple(problems))
    if not rows:
        raise _file_problem("the roster has a header but no rows")
    return rows


def _file_problem(message: str) -> ImportRefused:
    return ImportRefused(f"roster refused: {message}", (RowProblem(0, "file", message),))


def _summary(problems: Sequence[RowProblem]) -> str:
    lines = sorted({p.line for p in problems})
    return (f"roster refused, nothing imported: {len(problems)} problem(s) on "
            f"{len(lines)} row(s); first: {problems[0]}")


def validate_roster(session: Session, actor: Operator, rows: Iterable[RosterRow]
                    ) -> tuple[list[RowProblem], list[tuple[RosterRow, Organisation]]]:
    """Every problem of every row: field rules, unknown or out-of-scope organisations,
    identifiers already registered or repeated within the file."""
    problems: list[RowProblem] = []
    good: list[tuple[RosterRow, Organisation]] = []
    first_line: dict[str, int] = {}
    for row in rows:
        found, org = _problems(session, row.data)
        row_problems = [RowProblem(row.line, f, m) for f, m in found]
        ident = row.data.identifier
        if ident in first_line:
            row_problems.append(RowProblem(row.line, "identifier",
                                           f"{ident} repeats line {first_line[ident]}"))
        else:
            first_line[ident] = row.line
        if org is not None and not permits(actor, "official.import", org):
            row_problems.append(RowProblem(row.line, "org_code",
                                           f"{org.code} is outside your scope"))
        problems.extend(row_problems)
        if not row_problems and org is not None:
            good.append((row, org))
    return problems, good


def import_officials(sessions: sessionmaker[Session], actor: Operator,
                     content: bytes | str) -> list[Official]:
    """All rows or none: see the module docstring. The refusal carries the per-row report."""
    authorize(sessions, actor, "official.import",
              None if visible_path(actor, "official.import") == "" else actor.organisation,
              object_type="roster")
    try:
        rows = parse_roster(content)
        with transaction(sessions) as session:
            problems, good = validate_roster(session, actor, rows)
        if problems:
            raise ImportRefused(_summary(problems), tuple(problems))
        with transaction(sessions) as session:
            now = utcnow()
            created = []
            for row, org in good:
                d = row.data
                record = models.Official(identifier=d.identifier, name=d.name,
                                         organisation_id=org.id, position=d.position,
                                         unit=d.unit, contact=d.contact, status="active",
                                         created_at=now, updated_at=now)
                session.add(record)
                created.append((record, org))
            session.flush()
            audit.record_events(session, [audit.EventSpec(
                actor=actor.username, action="ra.official.import", object_type="official",
                object_id=record.identifier, outcome="success",
                details={"organisation": org.code}) for record, org in created])
            return [_to_record(record, org) for record, org in created]
    except ImportRefused as exc:
        audit.record_refusal(sessions, actor=actor.username, action="ra.official.import",
                             object_type="roster", object_id="",
                             details={"error": exc.kind, "problems": len(exc.problems),
                                      "report": [f"line {p.line}: {p.field}"
                                                 for p in exc.problems[:50]]})
        raise
