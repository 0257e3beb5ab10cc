"""The organisation tree (省 → 州/市 → 县, and the departments of each), loaded from CSV.

The tree is reference data the province office maintains as a file (ra/data/orgs.csv:
``code,parent_code,name,kind``), so loading is idempotent: rows are matched by code, changed
names, kinds and parents are updated, nothing is deleted (officials and operators point at
organisations; removing one is a deliberate act, not a side effect of a shorter file).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Final

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.db import transaction
from ra import models
from ra.errors import NotFound, ValidationError
from ra.records import Organisation

DEFAULT_ORGS_CSV: Final = Path(__file__).resolve().parent / "data" / "orgs.csv"
ORG_COLUMNS: Final = ("code", "parent_code", "name", "kind")


def to_record(row: models.Organisation, parent_code: str | None) -> Organisation:
    return Organisation(row.id, row.code, parent_code, row.name, row.kind, row.path)


def parse_orgs_csv(text: str) -> list[tuple[str, str | None, str, str]]:
    """(code, parent code, name, kind) rows, parents before children; every problem named."""
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise ValidationError(f"organisation CSV does not parse: {exc}", field="file") from None
    if not rows or tuple(c.strip() for c in rows[0]) != ORG_COLUMNS:
        raise ValidationError(f"organisation CSV must start with the header "
                              f"{','.join(ORG_COLUMNS)}", field="header")
    out: dict[str, tuple[str, str | None, str, str]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(ORG_COLUMNS):
            raise ValidationError(f"line {line}: expected {len(ORG_COLUMNS)} columns, "
                                  f"got {len(row)}", field="row", line=line)
        code, parent, name, kind = (c.strip() for c in row)
        if not code or len(code) > 32 or not name or len(name) > 64:
            raise ValidationError(f"line {line}: code (1-32) and name (1-64 characters) are "
                                  "required", field="code", line=line)
        if kind not in models.ORG_KINDS:
            raise ValidationError(f"line {line}: kind must be one of "
                                  f"{', '.join(models.ORG_KINDS)}, got {kind!r}",
                                  field="kind", line=line)
        if code in out:
            raise ValidationError(f"line {line}: code {code} appears twice", field="code",
                                  line=line)
        out[code] = (code, parent or None, name, kind)
    ordered: list[tuple[str, str | None, str, str]] = []
    placed: set[str] = set()
    pending = list(out.values())
    while pending:
        ready = [r for r in pending if r[1] is None or r[1] in placed]
        if not ready:
            bad = pending[0]
            raise ValidationError(f"organisation {bad[0]}: parent {bad[1]} is unknown or part "
                                  "of a cycle", field="parent_code")
        for r in ready:
            ordered.append(r)
            placed.add(r[0])
        pending = [r for r in pending if r[0] not in placed]
    return ordered


def load_organisations(sessions: sessionmaker[Session], text: str | None = None, *,
                       actor: str) -> tuple[int, int]:
    """Insert or update the tree from CSV text (default: the packaged file).

    Returns (created, updated). Authorisation (org.load, or bootstrap) is the caller's: the
    tree must exist before the first operator, who belongs to an organisation.
    """
    if text is None:
        text = DEFAULT_ORGS_CSV.read_text(encoding="utf-8")
    rows = parse_orgs_csv(text)
    created = updated = 0
    with transaction(sessions) as session:
        existing = {o.code: o for o in session.scalars(select(models.Organisation))}
        for code, parent_code, name, kind in rows:
            parent = existing.get(parent_code) if parent_code else None
            if parent_code and parent is None:
                raise ValidationError(f"organisation {code}: parent {parent_code} is unknown",
                                      field="parent_code")
            path = (parent.path if parent else "/") + code + "/"
            row = existing.get(code)
            if row is None:
                row = models.Organisation(code=code, name=name, kind=kind, path=path,
                                          parent_id=parent.id if parent else None)
                session.add(row)
                session.flush()
                existing[code] = row
                created += 1
            elif (row.name, row.kind, row.path, row.parent_id) != (
                    name, kind, path, parent.id if parent else None):
                row.name, row.kind, row.path = name, kind, path
                row.parent_id = parent.id if parent else None
                updated += 1
        if created or updated:
            audit.record_event(session, actor=actor, action="ra.org.load",
                               object_type="organisation-tree", object_id="",
                               outcome="success",
                               details={"created": created, "updated": updated})
    return created, updated


def _query_with_parent() -> Select[models.Organisation, str]:
    parent = models.Organisation.__table__.alias("parent")
    return select(models.Organisation, parent.c.code).outerjoin(
        parent, parent.c.id == models.Organisation.parent_id)


def get_organisation(session: Session, code: str) -> Organisation:
    found = session.execute(_query_with_parent().where(models.Organisation.code == code)).first()
    if found is None:
        raise NotFound(f"no organisation with code {code!r}", code=code)
    return to_record(found[0], found[1])


def organisation_by_id(session: Session, org_id: int) -> Organisation:
    found = session.execute(_query_with_parent().where(models.Organisation.id == org_id)).one()
    return to_record(found[0], found[1])


def list_organisations(session: Session, under: str = "") -> list[Organisation]:
    """Every organisation whose path starts with ``under`` ("" for all), tree order."""
    query = _query_with_parent().order_by(models.Organisation.path)
    if under:
        query = query.where(models.Organisation.path.startswith(under, autoescape=True))
    return [to_record(row, parent) for row, parent in session.execute(query)]


def subtree(session: Session, code: str) -> list[Organisation]:
    """The organisation ``code`` and everything below it."""
    return list_organisations(session, get_organisation(session, code).path)


def count_organisations(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(models.Organisation)) or 0


def ancestors(session: Session, org: Organisation) -> list[Organisation]:
    """From the root down to ``org`` itself (for the subject's ST and L)."""
    codes = [c for c in org.path.split("/") if c]
    rows = session.execute(
        _query_with_parent().where(models.Organisation.code.in_(codes))).all()
    found = {row.code: to_record(row, parent) for row, parent in rows}
    return [found[c] for c in codes if c in found]
