"""Reading a provider's file into a header and numbered rows of text cells, whatever the container:
CSV (any line ending, comma, semicolon or tab separated, UTF-8 or cp1252), an XLSX workbook (its
first sheet) or JSON as ACLED's API returns it ({"status": 200, "success": true, "data": [...]},
or the bare list of events). The container is told by content, never by the file name.

What the cells mean is not decided here: geo.importers.layouts recognises the header, and the
data rows are cleaned by `data_rows` (blank rows, the HXL hashtag row, trailing empty cells).
"""

import csv
import io
import re
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson

from geo.errors import SchemaError


@dataclass(frozen=True)
class Unreadable:
    """A row that cannot be read: why (the report's reason) and where exactly (its detail)."""

    reason: str
    detail: str


# A source's rows: (line, cells), or (line, Unreadable) for a row that cannot be read.
Cells = Iterator[tuple[int, list[str] | Unreadable]]
# What undecodable bytes become (errors="surrogateescape": U+DC80..U+DCFF), so that the rows
# holding them are found and refused rather than decoded wrongly.
BAD_BYTE = re.compile("[\udc80-\udcff]")
# A character outside ASCII encoded as UTF-8 (2 to 4 bytes, overlongs and surrogates excluded).
UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)


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
    text, encoding = decode(data)
    if "\x00" in text:
        raise SchemaError(f"{path} is neither CSV, XLSX nor JSON (it holds NUL bytes)")
    notes = []
    if encoding != "UTF-8":
        line, offset, byte = bad_bytes(data, "utf-8")[0]
        notes.append(
            f"decoded as {encoding}: the file is not UTF-8 (byte 0x{byte:02X} at line {line}, "
            f"byte offset {offset}) and holds no UTF-8 characters"
        )
    is_json = text.lstrip()[:1] in ("{", "[")
    if BAD_BYTE.search(text.split("\n", 1)[0]) or (is_json and BAD_BYTE.search(text)):
        line, offset, byte = bad_bytes(data, _CODECS[encoding])[0]
        raise SchemaError(
            f"{path}: byte 0x{byte:02X} at line {line} (byte offset {offset}) is not valid "
            f"{encoding}, though the rest of the file is: nothing of it is imported; save the "
            "file again as UTF-8"
        )
    if is_json:
        return _json_table(path, text)
    table = _csv_table(path, text, data, encoding)
    table.notes[:0] = notes
    return table


# The codecs decode() may name, by the name it gives them.
_CODECS = {"UTF-8": "utf-8", "cp1252": "cp1252", "latin-1": "latin-1"}


def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 (a BOM is dropped) when the file is UTF-8, else cp1252 for the
    whole file, or latin-1 if even cp1252 fails (it leaves five bytes undefined).

    GTD's CSV is distributed in latin-1/cp1252, e.g. b"Pe\\xf1a" -> "Peña". The whole file is
    decoded one way, so a file is never half UTF-8 and half cp1252. A file that holds UTF-8
    characters (e.g. Urdu place names) and a byte that is not UTF-8 is UTF-8 with a bad byte,
    not cp1252 (which would turn every Urdu letter into two or three wrong ones): it is decoded
    as UTF-8 and each bad byte becomes a lone surrogate (errors="surrogateescape"), so that the
    row holding it is refused, naming the byte, its line and its offset (see bad_bytes).
    """
    try:
        return data.decode("utf-8-sig"), "UTF-8"
    except UnicodeDecodeError:
        pass
    if UTF8_SEQUENCE.search(data):
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="surrogateescape")
        return text, "UTF-8"
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def decode_text(data: bytes) -> str:
    """The file's text (see decode)."""
    return decode(data)[0]


def bad_bytes(data: bytes, codec: str, limit: int = 1) -> list[tuple[int, int, int]]:
    """(line, byte offset, byte) of the first `limit` bytes of `data` that `codec` cannot
    decode; lines count from 1, offsets from 0."""
    found: list[tuple[int, int, int]] = []
    start = 0
    while len(found) < limit:
        try:
            data[start:].decode(codec)
            break
        except UnicodeDecodeError as exc:
            offset = start + exc.start
            found.append((data.count(b"\n", 0, offset) + 1, offset, data[offset]))
            start = offset + 1
    return found


def _csv_table(path: Path, text: str, data: bytes, encoding: str) -> Table:
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count)
    # csv refuses a cell over its field size limit (131,072 characters by default) and stops
    # there: the rows after it were lost. No cell can be longer than the file, so none is cut.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    # newline="" keeps a quoted line break inside its cell; csv splits CRLF and LF records alike
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise SchemaError(f"{path} is empty; expected a header row") from None
    except csv.Error as exc:
        raise SchemaError(f"{path} is not a readable CSV file: {exc}") from None
    has_bad_bytes = BAD_BYTE.search(text) is not None
    width = len(header)
    line_starts: list[int] = []

    def bad_byte(start: int, end: int) -> Unreadable:
        """The first bad byte in lines start..end, as the row's reason."""
        if not line_starts:
            line_starts.extend([0, *(m.end() for m in re.finditer(b"\n", data))])
        first = line_starts[start - 1]
        last = line_starts[end] if end < len(line_starts) else len(data)
        (line, offset, byte), *_ = bad_bytes(data[first:last], _CODECS[encoding])
        return Unreadable(
            f"not valid {encoding}",
            f"byte 0x{byte:02X} at line {start + line - 1} (byte offset {first + offset}); the "
            f"rest of the file is {encoding}",
        )

    def rows() -> Cells:
        end = last = reader.line_num
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                # The rows after this point cannot be found: the file is refused whole rather
                # than imported up to here.
                raise SchemaError(
                    f"{path}: line {end + 1} is not readable as CSV ({exc}), and the rows after "
                    "it cannot be told apart: nothing of the file is imported"
                ) from None
            start, end = end + 1, reader.line_num
            last = start
            if has_bad_bytes and any(BAD_BYTE.search(c) for c in cells):
                yield start, bad_byte(start, end)
                continue
            trailing_comma = len(cells) == width + 1 and not cells[-1].strip()
            if end > start and len(cells) != width and not trailing_comma:
                # A quote left open joined these lines into one row (until a later quote
                # closed it): name every line, since each may have been an event of its own.
                yield (
                    start,
                    Unreadable(
                        "a quote left open joins lines into one row",
                        f"lines {start}-{end} read as one row of {len(cells)} cells (the header "
                        f"has {width}): fix the quote on line {start} to import them",
                    ),
                )
                continue
            yield start, cells
        if last > 1 and _unclosed_quote(text, last):
            raise SchemaError(
                f"{path}: a quoted cell on line {last} is never closed, so the rest of the "
                "file would be read as one cell: nothing of the file is imported"
            )

    return Table(header, rows(), "CSV")


def _unclosed_quote(text: str, line: int) -> bool:
    """True when the record starting at `line` (1-based) runs to the end of the file inside a
    quoted cell: csv then reads the rest of the file as that one cell, without an error."""
    start = 0
    for _ in range(line - 1):
        start = text.index("\n", start) + 1
    rest = text[start:]
    return "\n" in rest.rstrip("\r\n") and rest.count('"') % 2 == 1


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
