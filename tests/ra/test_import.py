"""Bulk import of officials from a CSV roster: all rows or none, with a per-row report."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ra import officials
from ra.errors import ImportRefused
from tests.ra.conftest import ensure_admin, make_operator, unique

HEADER = "identifier,name,org_code,position,contact,unit\n"


def test_bad_rows_refuse_the_whole_roster(ra_file_pki) -> None:
    pki = ra_file_pki
    clerk = make_operator(pki, "632700", "ra-operator")
    taken = officials.create_official(pki.ctx.sessions, clerk, officials.OfficialInput(
        unique("YS"), "扎西", "632700-BGS")).identifier
    good = unique("YS")
    roster = (HEADER
              + f"{good},卓玛,632700-BGS,科员,0976-123,\n"              # line 2: fine
              + f"{unique('YS')},张三630102199003071234,632700-BGS,,,\n"  # 3: ID in name
              + f"{unique('YS')},李四,999999,,,\n"                       # 4: unknown org
              + f"{taken},王五,632700-BGS,,,\n"                          # 5: duplicate
              + f"{good},赵六,632700-BGS,,,\n"                           # 6: repeats line 2
              + f"{unique('YS')},钱七,630100-BGT,,,\n"                   # 7: out of scope
              + "630102199003071234,孙八,632700-BGS,,,\n")               # 8: ID as identifier
    with pytest.raises(ImportRefused) as info:
        officials.import_officials(pki.ctx.sessions, clerk, roster.encode())
    found = {(p.line, p.field) for p in info.value.problems}
    assert found == {(3, "name"), (4, "org_code"), (5, "identifier"), (6, "identifier"),
                     (7, "org_code"), (8, "identifier")}
    assert "630102199003071234" not in info.value.report()
    assert officials.list_officials(pki.ctx.sessions, clerk, query=good).total == 0


def test_good_roster_imports_in_one_go(ra_file_pki) -> None:
    pki = ra_file_pki
    admin = ensure_admin(pki)
    ids = [unique("HX") for _ in range(3)]
    roster = "\ufeffname,identifier,org_code\n" + "".join(
        f"官员{i}, {ident} ,632800-BGS\n" for i, ident in enumerate(ids))
    created = officials.import_officials(pki.ctx.sessions, admin, roster.encode())
    assert [o.identifier for o in created] == ids


@pytest.mark.parametrize("content,needle", [
    (b"\xff\xfe garbage", "not UTF-8"),
    (b"", "empty"),
    (b"identifier,name\n", r"missing column\(s\) org_code"),
    (HEADER.encode(), "no rows"),
    (b'identifier,name,org_code\n"a,b', "not valid CSV"),
])
def test_unusable_files(content: bytes, needle: str) -> None:
    with pytest.raises(ImportRefused, match=needle):
        officials.parse_roster(content)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary(),
                 st.text(alphabet=st.sampled_from(list('identifr,name_oc\n"\r \x00张'))),
                 st.lists(st.lists(st.text(max_size=8), max_size=7), max_size=5).map(
                     lambda rows: HEADER + "\n".join(",".join(r) for r in rows))))
def test_roster_parser_raises_only_import_refused(content: str | bytes) -> None:
    try:
        rows = officials.parse_roster(content)
    except ImportRefused as exc:
        assert exc.problems
        return
    assert rows and all(r.line >= 2 for r in rows)


def _xlsx(rows: list[list[object]]) -> bytes:
    import io

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_xlsx_roster_imports_like_csv(ra_file_pki) -> None:
    pki = ra_file_pki
    clerk = make_operator(pki, "632700", "ra-operator")
    a, b = unique("XL"), unique("XL")
    content = _xlsx([["identifier", "name", "org_code", "position", "contact", "unit"],
                     [a, "卓玛", "632700-BGS", "科员", 9761234567, None],   # numeric cell
                     [], [b, "扎西", "632700-BGS"]])                      # short row
    created = officials.import_officials(pki.ctx.sessions, clerk, content)
    assert [o.identifier for o in created] == [a, b]
    assert created[0].contact == "9761234567" and created[1].position == ""


def test_xlsx_problems_name_spreadsheet_rows_and_import_nothing(ra_file_pki) -> None:
    pki = ra_file_pki
    clerk = make_operator(pki, "632700", "ra-operator")
    good = unique("XL")
    content = _xlsx([["name", "identifier", "org_code"], ["卓玛", good, "632700-BGS"],
                     ["李四", unique("XL"), "999999"]])
    with pytest.raises(ImportRefused) as info:
        officials.import_officials(pki.ctx.sessions, clerk, content)
    assert {(p.line, p.field) for p in info.value.problems} == {(3, "org_code")}
    assert officials.list_officials(pki.ctx.sessions, clerk, query=good).total == 0


def test_damaged_or_bomb_workbooks_are_refused_as_files() -> None:
    import io
    import zipfile

    with pytest.raises(ImportRefused, match="damaged zip"):
        officials.parse_roster(b"PK\x03\x04" + b"\0" * 100)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/workbook.xml", b"<a/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * (80 * 1024 * 1024))
    with pytest.raises(ImportRefused, match="expands"):
        officials.parse_roster(bomb.getvalue())
    no_book = io.BytesIO()
    with zipfile.ZipFile(no_book, "w") as archive:
        archive.writestr("content.xml", b"<a/>")
    with pytest.raises(ImportRefused, match="not an XLSX workbook"):
        officials.parse_roster(no_book.getvalue())


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_any_zip_like_bytes_give_only_import_refused(tail: bytes) -> None:
    try:
        officials.parse_roster(b"PK\x03\x04" + tail)
    except ImportRefused:
        pass
