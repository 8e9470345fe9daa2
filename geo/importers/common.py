"""What the three importers share: a row's outcome, parsing one cell (number, count, code, date,
point) or raising RowError with a reason, and building one canonical record.

Every parser takes the row (a dict of column name -> text, "" for an empty cell) and the column
name, so a reason names the column and its detail quotes the value: reason "latitude is not a
number", detail "latitude 'abc'". Reasons group rows in the import report; details tell them
apart.
"""

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from geo.errors import KpmapError
from geo.vocab import MILITANT_ATTACK, event_fields

Row = dict[str, str]

DESCRIPTION_CHARS = 300
TITLE_CHARS = 200

TAKEN, REFUSED, FAILED = "taken", "refused", "failed"


class RowError(ValueError):
    """A row that cannot be read (a bad date, a number that is not one, ...): it counts towards
    a file that mostly fails. `reason` groups rows in the report, `detail` names this row's
    values."""

    status = FAILED

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class RowRefused(RowError):
    """A row read correctly that this map does not take: outside KP, an event type not
    imported, a place known only to the province."""

    status = REFUSED


@dataclass(frozen=True)
class Outcome:
    """What became of one data row: its 1-based line in the file (the header is line 1; for
    XLSX the sheet row, for JSON the event's position), the record id when there is one, and
    for a row not taken whether it was refused or failed, why (`reason`) and its `detail`."""

    line: int
    status: str
    id: str | None = None
    reason: str = ""
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass
class Notice:
    """Something a taken row's names say that its point does not (see geo.importers.places)."""

    line: int
    id: str
    kind: str
    text: str


@dataclass
class ImportResult:
    """A file read: the layout recognised, the dataset and its release, the records taken (in
    file order), one Outcome per data row, the notices on taken rows and the perpetrator names
    no entry of data/actors.toml matches (name -> rows)."""

    path: str
    layout: str
    dataset: str
    release: str | None
    records: list[dict[str, Any]]
    outcomes: list[Outcome]
    notices: list[Notice] = field(default_factory=list)
    unmapped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> list[Outcome]:
        """The rows not taken, refused or failed, in file order."""
        return [o for o in self.outcomes if o.status != TAKEN]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == FAILED]


class ImportFailed(KpmapError):
    """A file that mostly fails (more than half its rows cannot be read) or yields nothing to
    import: nothing of it is imported. `result` holds every row's outcome for the report."""

    status = 422
    code = "import-failed"

    def __init__(self, message: str, result: ImportResult):
        super().__init__(message)
        self.result = result


# --- cells ---------------------------------------------------------------------------------------


def number(row: Row, column: str) -> float:
    """A finite number; RowError otherwise."""
    text = row[column].strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise RowError(f"{column} is not a number", f"{column} {text!r}")
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
        value = math.nan
    if not value.is_integer() or value < 0:
        raise RowError(f"{column} is not a whole number >= 0", f"{column} {text!r}")
    return int(value)


def optional_count(row: Row, column: str) -> int | None:
    """count() of a column the file may lack (None then)."""
    return count(row, column) if column in row else None


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
        raise RowError(f"{column} is not {expected}", f"{column} {text!r}")
    return int(value)


# 07/30/2023, 7/30/2023 00:00:00, 7/30/2023 12:00 AM: month first
US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AP]M)?)?$")
DATE_FORMATS = ("%d %B %Y", "%d-%B-%Y", "%d %b %Y", "%d-%b-%Y", "%B %d, %Y")


def parse_day(row: Row, column: str) -> date:
    """A calendar day: ISO "2023-07-30" (a time after it is ignored, as in UCDP's
    "2023-07-30 00:00:00.000"), ACLED's "30 July 2023" (also "30-July-2023", "30 Jul 2023"), or
    a US date "07/30/2023" with or without a time ("07/30/2023 00:00:00", "7/30/2023 12:00 AM"),
    as a spreadsheet in a US locale saves a file it opened.

    A slash date is always month first: "30/07/2023" is refused rather than guessed, so a file
    written day first fails loudly instead of swapping days and months where both are <= 12.
    """
    text = row[column].strip()
    day = date_of_text(text)
    if day is None:
        raise RowError("bad date", f"{column} {text!r}")
    return day


@lru_cache(maxsize=65536)  # a file has far fewer distinct dates than rows
def date_of_text(text: str) -> date | None:
    """parse_day() of a text, None when it is no date."""
    iso = re.match(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T][\d:.]*)?$", text)
    us = US_DATE.match(text)
    try:
        if iso:
            return date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
        if us:
            return date(int(us.group(3)), int(us.group(1)), int(us.group(2)))
    except ValueError:
        return None
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    return None


def point(row: Row, lon_column: str, lat_column: str) -> tuple[float, float]:
    """(lon, lat) of a row; RowError for missing, 0,0 or out-of-range coordinates.

    Swapped coordinates can only be told from context, so geo.importers.places checks them.
    """
    if not row[lon_column].strip() or not row[lat_column].strip():
        raise RowError("missing coordinates")
    lon = number(row, lon_column)
    lat = number(row, lat_column)
    if lon == 0 and lat == 0:
        raise RowError("coordinates are 0,0 (a placeholder, not a place)")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise RowError("coordinates out of range", f"latitude {lat:g}, longitude {lon:g}")
    return lon, lat


def figures(
    low: int | None, best: int | None, high: int | None, flags: list[str], what: str
) -> tuple[int | None, int | None, int | None]:
    """(low, best, high) in order. Figures out of order (it happens in real UCDP rows) keep best
    and widen low and high to cover all three, with a flag saying so: an event is never lost
    for its figures.

    >>> figures(10, 5, 20, [], "UCDP")
    (5, 5, 20)
    """
    present = [v for v in (low, best, high) if v is not None]
    if present == sorted(present):
        return low, best, high
    flags.append(
        f"{what} low {low}, best {best}, high {high} were out of order: low and high widened "
        "to cover all three"
    )
    return min(present), best, max(present)


# --- text ----------------------------------------------------------------------------------------


def safe_text(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    """Provider text as the provider wrote it, whitespace collapsed and cut at a word to at most
    `limit` characters (with "…").

    Text that a spreadsheet would run as a formula ("=HYPERLINK(...)") is stored as written: every
    reader of the API, tiles and popups sees the source's words. Only the CSV writers, whose files
    open in spreadsheets, neutralise it (geo.export.neutralise).

    >>> safe_text("  =HYPERLINK(...)  ")
    '=HYPERLINK(...)'
    """
    text = " ".join(text.split())
    if len(text) > limit:
        cut = text[: limit - 1]
        if " " in cut[limit // 2 :]:
            cut = cut.rsplit(" ", 1)[0]
        text = cut.rstrip(" ,;:") + "…"
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
    dataset: str,
    publication: str,
    source_title: str,
    date: str,
    date_precision: str,
    date_end: str | None,
    location: str,
    geo_precision: int,
    actor: str | None,
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
    """One canonical record (district left None for placement to fill, release for read_file
    once the whole file is read), with lon and lat."""
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
        **event_fields(
            category, parties, deaths, district_reported or None, flags, dataset=dataset
        ),
        "lon": lon,
        "lat": lat,
    }
