"""What the three importers share: reading a CSV or XLSX file into numbered rows, parsing one cell
(number, count, date, point) or raising RowError with a reason, the KP province test, and building
one canonical record.

Every parser takes the row (a dict of column name -> text, "" for an empty cell) and the column
name, so a reason names the column and quotes the value: "latitude 'abc' is not a number".
"""

import csv
import io
import math
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from geo.districts import normalise_name
from geo.errors import SchemaError
from geo.events import MILITANT_ATTACK, canonical_actor, event_fields

InKp = Callable[[float, float], str | None]
Row = dict[str, str]

DESCRIPTION_CHARS = 300
TITLE_CHARS = 200
# Characters that make a spreadsheet treat a cell as a formula (OWASP's CSV-injection list).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# KP and the names its parts had before 2010 (NWFP) and 2018 (FATA), normalised.
KP_NAMES = frozenset(
    normalise_name(name)
    for name in (
        "Khyber Pakhtunkhwa",
        "Khyber Pakhtoonkhwa",
        "Khyber Pukhtunkhwa",
        "Khyber Pakhtunkhawa",
        "KPK",
        "KP",
        "NWFP",
        "North-West Frontier",
        "North West Frontier Province",
        "FATA",
        "Federally Administered Tribal Areas",
        "Federally Administered Tribal Area",
    )
)
UNKNOWN_ADMIN1 = frozenset({"", "unknown", "not applicable", "na", "n a"})


@dataclass(frozen=True)
class Rejected:
    """A row not imported: its 1-based line in the file (the header is line 1; for XLSX the sheet
    row number) and why."""

    line: int
    reason: str


@dataclass
class ImportResult:
    records: list[dict[str, Any]]
    rejected: list[Rejected]


class RowError(ValueError):
    """One row cannot be imported; the message is the reason reported for it."""


# --- reading files -------------------------------------------------------------------------------


def read_rows(path: Path, fmt: str, required: Sequence[str]) -> Iterator[tuple[int, Row | str]]:
    """The file's data rows as (line number, {column: text}), header names lower-cased.

    CSV or XLSX (told apart by content, not by the file name). Raises SchemaError, before yielding
    anything, when the file cannot be read or lacks a required column. A CSV record that spans
    several lines (a quoted newline in a summary) gets the number of its first line. A row that
    cannot be read (more or fewer cells than the header) is yielded as (line, reason).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise SchemaError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head.startswith(b"PK\x03\x04"):
        header, rows = _xlsx_rows(path, fmt)
    elif head.startswith(b"\xd0\xcf\x11\xe0"):
        raise SchemaError(f"{path} is an old binary Excel (.xls) file; save it as XLSX or CSV")
    else:
        header, rows = _csv_rows(path)
    missing = [c for c in required if c not in header]
    if missing:
        raise SchemaError(
            f"{path} is not a {fmt} file as its provider distributes it: it lacks the column(s) "
            f"{', '.join(missing)}; {fmt} files have a header row with at least: "
            f"{', '.join(required)}"
        )
    width = len(header)
    for line, cells in rows:
        if isinstance(cells, str):
            yield line, cells
        elif not any(c.strip() for c in cells):
            continue  # blank lines and empty spreadsheet rows are not rows
        elif len(cells) != width:
            yield line, f"the row has {len(cells)} cells, the header has {width}"
        else:
            yield line, dict(zip(header, cells, strict=True))


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


# A source's rows: (line, cells), or (line, reason) for a record that cannot be split into cells.
Cells = Iterator[tuple[int, list[str] | str]]


def _csv_rows(path: Path) -> tuple[list[str], Cells]:
    text = decode_text(path.read_bytes())
    if "\x00" in text:
        raise SchemaError(f"{path} is neither CSV nor XLSX (it holds NUL bytes)")
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [name.strip().lower() for name in next(reader)]
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

    return header, rows()


def _xlsx_rows(path: Path, fmt: str) -> tuple[list[str], Cells]:
    """The first sheet of an XLSX workbook; the header is its first row."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        with warnings.catch_warnings():
            # openpyxl warns about workbook features it ignores (styles, data validation):
            # nothing a user of the import can act on.
            warnings.simplefilter("ignore", UserWarning)
            # A file object, not the path: openpyxl would refuse a workbook not named *.xlsx
            stream = io.BytesIO(path.read_bytes())
            book = load_workbook(stream, read_only=True, data_only=True)
    except (OSError, zipfile.BadZipFile, InvalidFileException, KeyError, ValueError) as exc:
        raise SchemaError(f"{path} is not a readable XLSX workbook: {exc}") from None
    sheet = book.worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    try:
        header = [_cell_text(v).strip().lower() for v in next(rows)]
    except StopIteration:
        book.close()
        raise SchemaError(
            f"{path}: the first sheet is empty; expected a {fmt} header row"
        ) from None
    while header and not header[-1]:  # trailing empty header cells
        header.pop()

    def numbered() -> Cells:
        try:
            # read-only sheets yield every row, empty ones included, so numbering stays true
            for number, values in enumerate(rows, start=2):
                cells = [_cell_text(v) for v in values]
                # a sheet stores no trailing empty cells: pad or trim those to the header's width
                if len(cells) > len(header) and not any(cells[len(header) :]):
                    cells = cells[: len(header)]
                yield number, cells + [""] * (len(header) - len(cells))
        finally:
            book.close()

    return header, numbered()


def _cell_text(value: Any) -> str:
    """A spreadsheet cell as the text a CSV export would hold (12.0 -> "12", a date -> ISO)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else str(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# --- the province and the point ------------------------------------------------------------------


@lru_cache(maxsize=1024)
def admin1_status(name: str) -> bool | None:
    """True if the province name is KP or one of its old names, False if it names another
    province, None if blank or unknown (then only the point can tell).

    >>> admin1_status("North-West Frontier Province"), admin1_status("Punjab"), admin1_status("")
    (True, False, None)

    UCDP writes "Khyber Pakhtunkhwa province"; a parenthesis is read as another name for it, as in
    "Federally Administered Tribal Areas (FATA)".
    """
    parts = [normalise_name(p) for p in re.split(r"[()]", name)]
    parts = [re.sub(r"\s*\bprovince$", "", p) for p in parts if p]
    if not parts or all(p in UNKNOWN_ADMIN1 for p in parts):
        return None
    return any(p in KP_NAMES for p in parts)


def outside_kp(admin1: str, lon: float | str, lat: float | str) -> str:
    """The reason given for a row outside KP; the point as numbers when they are numbers.

    >>> outside_kp("Punjab", "74.343600", "")
    'outside Khyber Pakhtunkhwa (admin1=Punjab, point 74.3436,?)'
    """
    return (
        f"outside Khyber Pakhtunkhwa (admin1={admin1.strip() or '?'}, "
        f"point {_coordinate(lon)},{_coordinate(lat)})"
    )


def _coordinate(value: float | str) -> str:
    try:
        return f"{float(value):g}"
    except ValueError:
        return str(value).strip() or "?"


def point(row: Row, lon_column: str, lat_column: str) -> tuple[float, float]:
    """(lon, lat) of a row; RowError for missing, 0,0 or out-of-range coordinates.

    Swapped coordinates can only be told from context, so locate() checks them, not this.
    """
    if not row[lon_column].strip() or not row[lat_column].strip():
        raise RowError("missing coordinates")
    lon = number(row, lon_column)
    lat = number(row, lat_column)
    if lon == 0 and lat == 0:
        raise RowError("coordinates are 0,0 (a placeholder, not a place)")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise RowError(f"coordinates out of range (latitude {lat:g}, longitude {lon:g})")
    return lon, lat


def locate(lon: float, lat: float, admin1: str, in_kp: InKp) -> str:
    """The KP district that holds the point; RowError when there is none.

    A point outside KP that would fall inside it with latitude and longitude exchanged (latitude
    71.5, longitude 34.0) is reported as swapped rather than silently corrected: the row's other
    columns may be just as wrong.
    """
    district = in_kp(lon, lat)
    if district:
        return district
    if -90 <= lon <= 90 and in_kp(lat, lon):
        raise RowError(f"latitude/longitude look swapped (latitude {lat:g}, longitude {lon:g})")
    raise RowError(outside_kp(admin1, lon, lat))


# --- cells ---------------------------------------------------------------------------------------


def number(row: Row, column: str) -> float:
    """A finite number; RowError otherwise."""
    text = row[column].strip()
    try:
        value = float(text)
    except ValueError:
        raise RowError(f"{column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise RowError(f"{column} {text!r} is not a number")
    return value


def count(row: Row, column: str, blank: tuple[str, ...] = ("",)) -> int | None:
    """A whole number >= 0, or None when the cell is blank (or one of `blank`, e.g. GTD's "-9").

    "12" and "12.0" (how spreadsheets write whole numbers) are 12; "2.5" and "-3" are errors.
    """
    text = row[column].strip()
    if text in blank:
        return None
    try:
        value = float(text)
    except ValueError:
        raise RowError(f"{column} {text!r} is not a whole number") from None
    if not value.is_integer() or value < 0:
        raise RowError(f"{column} {text!r} is not a whole number >= 0")
    return int(value)


def code(row: Row, column: str, allowed: Sequence[int]) -> int:
    """A small integer code such as a precision, which must be one of `allowed`."""
    text = row[column].strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer() or int(value) not in allowed:
        if isinstance(allowed, range):
            expected = f"a whole number from {allowed.start} to {allowed.stop - 1}"
        else:
            expected = "one of " + ", ".join(str(a) for a in allowed)
        raise RowError(f"{column} {text!r} is not {expected}")
    return int(value)


DATE_FORMATS = ("%d %B %Y", "%d-%B-%Y", "%d %b %Y", "%d-%b-%Y")


def parse_day(row: Row, column: str) -> date:
    """A calendar day: ISO "2023-07-30" (a time after it is ignored, as in UCDP's
    "2023-07-30 00:00:00.000") or ACLED's "30 July 2023" (also "30-July-2023", "30 Jul 2023")."""
    day = _parse_day(row[column].strip())
    if day is None:
        raise RowError(f"bad date: {column} {row[column].strip()!r}")
    return day


@lru_cache(maxsize=65536)  # a file has far fewer distinct dates than rows
def _parse_day(text: str) -> date | None:
    iso = re.match(r"^(\d{4}-\d{2}-\d{2})(?:[ T][\d:.]*)?$", text)
    if iso:
        try:
            return date.fromisoformat(iso.group(1))
        except ValueError:
            return None
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    return None


@lru_cache(maxsize=4096)
def actor_of(name: str) -> str:
    """The canonical group (a key of data/actors.toml) for a provider's name, else "unknown"."""
    return canonical_actor(name.strip())


# --- text ----------------------------------------------------------------------------------------


def safe_text(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    """Provider text, whitespace collapsed, cut at a word to at most `limit` characters (with "…"),
    and made safe to open in a spreadsheet: text beginning with =, +, - or @ gets a leading '.

    >>> safe_text("=HYPERLINK(...)")
    "'=HYPERLINK(...)"
    """
    text = " ".join(text.split())
    if len(text) > limit:
        cut = text[: limit - 1]
        if " " in cut[limit // 2 :]:
            cut = cut.rsplit(" ", 1)[0]
        text = cut.rstrip(" ,;:") + "…"
    if text.startswith(FORMULA_START):
        text = "'" + text
    return text


def identifier(row: Row, column: str, prefix: str) -> str:
    """The record id "<prefix>-<cell>"; RowError when the cell is blank."""
    value = row[column].strip()
    if not value:
        raise RowError(f"{column} is blank (every row needs its provider's id)")
    return f"{prefix}-{value}"


def first_text(row: Row, *columns: str) -> str:
    """The first non-blank of the named cells (columns the file lacks are skipped), or ""."""
    for column in columns:
        value = row.get(column, "").strip()
        if value:
            return value
    return ""


# --- records -------------------------------------------------------------------------------------


def record(
    *,
    id: str,
    origin: str,
    publication: str,
    source_title: str,
    date: str,
    date_precision: str,
    date_end: str | None,
    location: str,
    geo_precision: int,
    actor: str,
    claimed: bool | None,
    event_type: str,
    target: str,
    killed: tuple[int | None, int | None, int | None],
    injured: tuple[int | None, int | None],
    description: str,
    lon: float,
    lat: float,
    category: str = MILITANT_ATTACK,
    parties: list[dict[str, Any]] | None = None,
    deaths: dict[str, int | None] | None = None,
    district_reported: str | None = None,
    flags: list[str] | None = None,
) -> dict[str, Any]:
    """One canonical record (district left None for the caller to fill), with lon and lat."""
    return {
        "id": id,
        "date": date,
        "date_precision": date_precision,
        "date_end": date_end,
        "location": safe_text(location, TITLE_CHARS),
        "district": None,
        "geo_precision": geo_precision,
        "actor": actor,
        "claimed": claimed,
        "event_type": event_type,
        "target": target,
        "killed_low": killed[0],
        "killed_best": killed[1],
        "killed_high": killed[2],
        "injured_low": injured[0],
        "injured_high": injured[1],
        "description": safe_text(description),
        "sources": [
            {
                "publication": publication,
                "title": safe_text(source_title, TITLE_CHARS),
                "date": date,
                "url": "",
            }
        ],
        "origin": origin,
        **event_fields(category, parties, deaths, district_reported, flags),
        "lon": lon,
        "lat": lat,
    }
