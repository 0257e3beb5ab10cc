"""Read the first sheet of an XLSX roster as rows of text cells, the way the CSV reader does.

Offices keep rosters in spreadsheets; asking them to "save as CSV UTF-8" loses leading zeros
and mangles Chinese in older Excel versions, so the RA reads .xlsx directly. An XLSX file is a
zip archive from outside: before openpyxl sees it, the archive's declared uncompressed size and
compression ratio are checked, so a zip bomb is refused instead of filling memory. Cells are
turned into text as a person reads them: whole numbers without ".0" (identifiers typed into
numeric cells), dates as ISO dates.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Iterator
from typing import Final

XLSX_MAGIC: Final = b"PK\x03\x04"
MAX_UNCOMPRESSED: Final = 64 * 1024 * 1024
MAX_RATIO: Final = 200


class XlsxUnreadable(ValueError):
    """The file is not an XLSX workbook this reader accepts; the message says why."""


def is_xlsx(content: bytes) -> bool:
    return content.startswith(XLSX_MAGIC)


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _check_archive(content: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise XlsxUnreadable("not a readable XLSX workbook (a damaged zip archive)") from None
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos) or 1
    if total > MAX_UNCOMPRESSED or total / packed > MAX_RATIO:
        raise XlsxUnreadable("the workbook expands to more than the RA accepts "
                             f"({MAX_UNCOMPRESSED // (1024 * 1024)} MiB or {MAX_RATIO}:1)")
    if "xl/workbook.xml" not in {i.filename for i in infos}:
        raise XlsxUnreadable("not an XLSX workbook (no xl/workbook.xml; .xls and .ods are "
                             "not read: save as .xlsx or CSV UTF-8)")


def xlsx_rows(content: bytes, max_rows: int) -> Iterator[tuple[int, list[str]]]:
    """(spreadsheet row number, cells as text) for the first sheet, header first."""
    _check_archive(content)
    from openpyxl import load_workbook  # imported here: only roster imports need it

    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception:  # openpyxl raises many types for malformed parts; all mean the same
        raise XlsxUnreadable("not a readable XLSX workbook") from None
    try:
        sheet = workbook.worksheets[0] if workbook.worksheets else None
        if sheet is None:
            raise XlsxUnreadable("the workbook has no sheet")
        width: int | None = None
        for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
            if number > max_rows + 1:
                raise XlsxUnreadable(f"the roster has more than {max_rows} rows")
            cells = [_cell_text(v) for v in row]
            if width is None:  # the header row decides the width; blank columns after it go
                while cells and not cells[-1].strip():
                    cells.pop()
                width = len(cells)
            elif len(cells) > width and not any(c.strip() for c in cells[width:]):
                cells = cells[:width]
            elif len(cells) < width:  # a sheet stores no trailing empty cells
                cells += [""] * (width - len(cells))
            yield number, cells
    except XlsxUnreadable:
        raise
    except Exception:
        raise XlsxUnreadable("not a readable XLSX workbook") from None
    finally:
        workbook.close()
