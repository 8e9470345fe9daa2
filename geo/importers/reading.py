"""Reading a provider's file into a header and numbered rows of text cells, whatever the container:
CSV (any line ending, comma, semicolon or tab separated, UTF-8 or cp1252), an XLSX workbook (its
first sheet) or JSON as ACLED's API returns it ({"status": 200, "success": true, "data": [...]},
or the bare list of events). The container is told by content, never by the file name.

What the cells mean is not decided here: geo.importers.layouts recognises the header, and the
data rows are cleaned by `data_rows` (blank rows, the HXL hashtag row, trailing empty cells).
"""

import csv
import io
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson

from geo.errors import SchemaError

# A source's rows: (line, cells), or (line, reason) for a record that cannot be split into cells.
Cells = Iterator[tuple[int, list[str] | str]]


@dataclass
class Table:
    """A file's first line (each cell stripped, as written: the header, or for a file without
    one its first event) and the rows after it. `container` is "CSV", "XLSX" or "ACLED API JSON
    (...)"; `notes` say what was noticed while reading (for the report)."""

    header: list[str]
    rows: Cells
    container: str
    notes: list[str] = field(default_factory=list)


def read_table(path: Path) -> Table:
    """The file as a Table. Raises SchemaError, before any row is read, when the file cannot be
    read (missing, empty, binary, an old .xls workbook, JSON without a list of events)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SchemaError(f"cannot read {path}: {exc.strerror or exc}") from None
    if data.startswith(b"PK\x03\x04"):
        return _xlsx_table(path, data)
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise SchemaError(f"{path} is an old binary Excel (.xls) file; save it as XLSX or CSV")
    text = decode_text(data)
    if "\x00" in text:
        raise SchemaError(f"{path} is neither CSV, XLSX nor JSON (it holds NUL bytes)")
    if text.lstrip()[:1] in ("{", "["):
        return _json_table(path, text)
    return _csv_table(path, text)


def decode_text(data: bytes) -> str:
    """UTF-8 (a BOM is dropped); if the file is not valid UTF-8, cp1252 for the whole file, and
    latin-1 if even cp1252 fails (it leaves five bytes undefined; latin-1 decodes every byte).

    GTD's CSV is distributed in latin-1/cp1252, e.g. b"Pe\\xf1a" -> "Peña". The whole file is
    decoded one way, so a file is never half UTF-8 and half cp1252.
    """
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            pass
    return data.decode("latin-1")


def _csv_table(path: Path, text: str) -> Table:
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count)
    # newline="" keeps a quoted line break inside its cell; csv splits CRLF and LF records alike
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise SchemaError(f"{path} is empty; expected a header row") from None
    except csv.Error as exc:
        raise SchemaError(f"{path} is not a readable CSV file: {exc}") from None

    def rows() -> Cells:
        end = reader.line_num
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a quote never closed: the rest is one broken record
                yield end + 1, f"not readable as CSV from here on: {exc}"
                return
            start, end = end + 1, reader.line_num
            yield start, cells

    return Table(header, rows(), "CSV")


def _xlsx_table(path: Path, data: bytes) -> Table:
    """The first sheet of an XLSX workbook; the header is its first row."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        with warnings.catch_warnings():
            # openpyxl warns about workbook features it ignores (styles, data validation):
            # nothing a user of the import can act on.
            warnings.simplefilter("ignore", UserWarning)
            # A file object, not the path: openpyxl would refuse a workbook not named *.xlsx
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (OSError, zipfile.BadZipFile, InvalidFileException, KeyError, ValueError) as exc:
        raise SchemaError(f"{path} is not a readable XLSX workbook: {exc}") from None
    sheet = book.worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    try:
        header = [cell_text(v).strip() for v in next(rows)]
    except StopIteration:
        book.close()
        raise SchemaError(f"{path}: the first sheet is empty; expected a header row") from None

    def numbered() -> Cells:
        try:
            # read-only sheets yield every row, empty ones included, so numbering stays true
            for number, values in enumerate(rows, start=2):
                cells = [cell_text(v) for v in values]
                # a sheet stores no trailing empty cells: pad them to the header's width
                yield number, cells + [""] * (len(header) - len(cells))
        finally:
            book.close()

    return Table(header, numbered(), "XLSX")


def _json_table(path: Path, text: str) -> Table:
    """ACLED's API answer saved to a file: {"status", "success", "data": [...]} or the bare list.

    A row's number is its position in the list (1 for the first event), since JSON has no
    lines a user would look up; the report says so.
    """
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"{path} is not readable JSON: {exc}") from None
    if isinstance(document, dict):
        if document.get("success") is False or document.get("error"):
            error = document.get("error") or document.get("messages") or document.get("status")
            raise SchemaError(f"{path} holds an API error, not events: {error}")
        events = document.get("data")
        container = "ACLED API JSON ({status, data: [...]})"
    else:
        events = document
        container = "ACLED API JSON (a bare list of events)"
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise SchemaError(f"{path}: JSON without a list of events (expected data: [{{...}}, ...])")
    if not events:
        raise SchemaError(f"{path}: the JSON holds no events")
    header = list(events[0])

    def rows() -> Cells:
        for number, event in enumerate(events, start=1):
            yield number, [cell_text(event.get(name)) for name in header]

    notes = ["JSON: a row's line number is its position in the list of events"]
    return Table(header, rows(), container, notes)


def cell_text(value: Any) -> str:
    """A cell as the text a CSV export would hold (12.0 -> "12", a date -> ISO, None -> "")."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else str(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def is_hxl_row(cells: list[str]) -> bool:
    """True for an HXL hashtag row (HDX's second line: "#date+year", "#adm1+name", ...): every
    non-blank cell is a hashtag. It describes the columns; it is not an event."""
    tags = [c.strip() for c in cells if c.strip()]
    return bool(tags) and all(t.startswith("#") for t in tags)
