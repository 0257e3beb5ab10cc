"""The organisation tree from ra/data/orgs.csv."""

from __future__ import annotations

import csv

import pytest
from sqlalchemy import select

from core.db import transaction
from ra import models, orgs
from ra.errors import ValidationError


def test_tree_loads_with_parents_and_is_idempotent(ra_file_pki) -> None:
    sessions = ra_file_pki.ctx.sessions
    rows = list(csv.DictReader(orgs.DEFAULT_ORGS_CSV.open(encoding="utf-8")))
    assert len(rows) == 38
    assert orgs.load_organisations(sessions, actor="test") == (0, 0)  # loaded by the fixture
    with transaction(sessions) as session:
        assert orgs.count_organisations(session) == 38
        by_code = {o.code: o for o in orgs.list_organisations(session)}
        for row in rows:
            org = by_code[row["code"]]
            assert org.parent_code == (row["parent_code"] or None)
            assert org.name == row["name"] and org.kind == row["kind"]
        assert by_code["630121"].path == "/630000/630100/630121/"
        assert [o.code for o in orgs.subtree(session, "630100")] == [
            "630100", "630100-BGT", "630121"]
        root_ids = session.scalars(select(models.Organisation.id).where(
            models.Organisation.parent_id.is_(None))).all()
        assert len(root_ids) == 1


def test_renamed_organisation_is_updated_not_duplicated(ra_file_pki) -> None:
    sessions = ra_file_pki.ctx.sessions
    text = orgs.DEFAULT_ORGS_CSV.read_text(encoding="utf-8")
    try:
        changed = text.replace("青海省审计厅", "青海省审计厅（新）")
        assert orgs.load_organisations(sessions, changed, actor="test") == (0, 1)
    finally:
        orgs.load_organisations(sessions, text, actor="test")
    with transaction(sessions) as session:
        assert orgs.get_organisation(session, "630000-SJT").name == "青海省审计厅"


@pytest.mark.parametrize("text,field", [
    ("code,parent\n", "header"),
    ("code,parent_code,name,kind\nX,,某单位,planet\n", "kind"),
    ("code,parent_code,name,kind\nX,Y,某单位,county\n", "parent_code"),
    ("code,parent_code,name,kind\nX,,甲,province\nX,,乙,province\n", "code"),
])
def test_bad_tree_files_are_refused_whole(text: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        orgs.parse_orgs_csv(text)
    assert info.value.field == field
