"""The Global Terrorism Database (START, University of Maryland), as distributed: the CSV (latin-1,
see reading.decode_text) or the XLSX workbook (first sheet), one row per incident.

Mapping to the canonical record:
- id "gtd-<eventid>"; dataset "gtd"; release from the file name ("globalterrorismdb_0522dist"
  -> "2022-05 (GTD 0522dist)", the distribution of May 2022), else the newest incident date.
- date from iyear/imonth/iday: iday 0 (day unknown) -> month "YYYY-MM"; imonth 0 (month unknown)
  -> range YYYY-01-01..YYYY-12-31. `approxdate` (free text GTD fills when the date is not exact)
  is read when it is a day, a span of days or a month ("July 29-30, 2014", "July 30 - August 2,
  2014", "July 2014"): the record keeps that span. Either way the record is flagged with it.
- location = city (provstate when the city is blank); lon/lat as given; district_reported = the
  city when it names a KP district (GTD has no district column; its city is often the district's
  seat or, for incidents outside towns, the district itself).
- geo_precision from specificity, honestly: 1 (the town, its own coordinates) -> 1, or 2 with
  vicinity 1 (near, not in, the town); 2 (in a named town whose coordinates GTD could not find:
  the point is the centroid of the smallest region it identified) -> 3; 3 (not in a town: the
  centroid of the smallest region identified) -> 3; 4 (only the province) and 5 (no province:
  coordinates unknown) are refused.
- category "militant attack": every GTD incident is an attack by a perpetrator. actor = gname
  (through data/actors.toml; "Unknown" -> "unknown", a name the table lacks -> "other", listed
  in the report); parties = gname, gname2, gname3 (side "a"); claimed: 1 -> true, 0 -> false,
  -9 (unknown) or blank -> null.
- doubtterr 1 (GTD doubts the incident is terrorism: insurgency, crime, ...) -> a flag.
- event_type from attacktype1_txt (ATTACK_TYPES); a bombing with suicide = 1 is a suicide bombing.
- target from targtype1_txt (TARGET_TYPES), made more precise by targsubtype1_txt (politicians and
  parties -> political party) and by "polio" in target1 or targsubtype1_txt (-> polio workers).
- killed_best = nkill (killed_low/high null); injured_low = injured_high = nwound; deaths by side:
  side_a (the perpetrators) = nkillter, unknown = nkill - nkillter, when both are known.
- description = summary (often blank before 1997); sources = [{GTD, scite1 (else scite2, scite3),
  <date>, ""}].
"""

import calendar
import re
from datetime import date, timedelta
from pathlib import Path

from geo.dates import period
from geo.importers.common import (
    RowError,
    RowRefused,
    code,
    count,
    first_text,
    identifier,
    point,
    record,
)
from geo.importers.layouts import Layout
from geo.importers.parties import actor_of, party
from geo.importers.places import Names, Unplaced, reported_districts

NAME = "GTD"
ORIGIN = "gtd"
DATASET = "gtd"
ID_COLUMN, ID_PREFIX = "eventid", "gtd"
LON, LAT = "longitude", "latitude"
REQUIRED = (
    "eventid", "iyear", "imonth", "iday", "provstate", "city", "latitude", "longitude",
    "specificity", "summary", "attacktype1_txt", "targtype1_txt", "target1", "gname", "claimed",
    "nkill", "nwound", "scite1",
)  # fmt: skip
LAYOUTS = (
    Layout(
        "GTD columns", REQUIRED, noted=("approxdate", "doubtterr", "vicinity", "gname2", "nkillter")
    ),
)

ATTACK_TYPES = {
    "assassination": "targeted killing",
    "armed assault": "armed assault",
    "bombing/explosion": "bombing / IED",
    "hostage taking (kidnapping)": "kidnapping",
    "hostage taking (barricade incident)": "kidnapping",
    "hijacking": "other",
    "facility/infrastructure attack": "other",
    "unarmed assault": "other",
    "unknown": "unknown",
}
TARGET_TYPES = {
    "police": "police / CTD",
    "military": "security forces",
    "government (general)": "government",
    "government (diplomatic)": "government",
    "religious figures/institutions": "religious leaders",
    "private citizens & property": "civilians",
    "educational institution": "civilians",
    "business": "civilians",
    "tourists": "civilians",
    "unknown": "unknown",
}
CLAIMED = {"1": True, "0": False, "-9": None, "": None}
# specificity -> geo_precision; 4 and 5 are refused (see the module docstring)
SPECIFICITY = {1: 1, 2: 3, 3: 3}
DIST_NAME = re.compile(r"(?<!\d)(\d{2})(\d{2})dist", re.I)
MONTHS = {
    name.lower(): number
    for number in range(1, 13)
    for name in (calendar.month_name[number], calendar.month_abbr[number])
}
_M = r"([a-z]+)\.?"
APPROX_SPAN = re.compile(rf"^{_M}\s+(\d{{1,2}})\s*-\s*(?:{_M}\s+)?(\d{{1,2}}),?\s+(\d{{4}})$")
APPROX_DAY = re.compile(rf"^{_M}\s+(\d{{1,2}}),?\s+(\d{{4}})$")
APPROX_TWO = re.compile(APPROX_DAY.pattern[:-1] + r"\s*-\s*" + APPROX_DAY.pattern[1:])
APPROX_MONTH = re.compile(rf"^{_M},?\s+(\d{{4}})$")


def dataset_of(path: Path) -> str:
    return DATASET


def release_key(row: dict[str, str]) -> str | None:
    """The incident's date as far as it is known (ISO year-month-day, zeros kept as 00)."""
    try:
        return f"{int(row['iyear']):04d}-{int(row['imonth']):02d}-{int(row['iday']):02d}"
    except ValueError:
        return None


def release_of(path: Path, newest: str | None) -> str | None:
    """ "2022-05 (GTD 0522dist)" from the file name, else the newest incident "(newest event)"."""
    if match := DIST_NAME.search(Path(path).name):
        month, year = match.groups()
        return f"20{year}-{month} (GTD {month}{year}dist)"
    return f"{newest} (newest event)" if newest else None


def convert(row: dict[str, str], dataset: str) -> Unplaced:
    """One GTD row as a canonical record, to be placed in its district; RowError (or
    RowRefused) with the reason when it cannot be taken."""
    rec_id = identifier(row, "eventid", ID_PREFIX)
    # before the point: specificity 5 rows have no coordinates, and that is not an error
    specificity = code(row, "specificity", (1, 2, 3, 4, 5))
    if specificity == 4:
        raise RowRefused("place known only to the province (GTD specificity 4)")
    if specificity == 5:
        raise RowRefused("place unknown (GTD specificity 5)")
    lon, lat = point(row, LON, LAT)
    flags: list[str] = []
    day, date_precision, date_end = _date(row, flags)
    precision = SPECIFICITY[specificity]
    if precision == 1 and row.get("vicinity", "").strip() == "1":
        precision = 2
    if specificity == 2:
        flags.append(
            f"GTD specificity 2: the town ({row['city'].strip() or '?'}) is named but the point "
            "is the centroid of the smallest region GTD identified"
        )
    claimed = row["claimed"].strip()
    if claimed not in CLAIMED:
        raise RowError("claimed is not one of 1, 0, -9", f"claimed {claimed!r}")
    if row.get("doubtterr", "").strip() == "1":
        alternative = row.get("alternative_txt", "").strip()
        flags.append(
            "GTD doubtterr 1: GTD doubts this incident is terrorism"
            + (f" (alternative: {alternative})" if alternative else "")
        )
    nkill, nwound = count(row, "nkill"), count(row, "nwound")
    city = row["city"].strip()
    city_district = city if city and reported_districts(city) else ""
    rec = record(
        id=rec_id,
        origin=ORIGIN,
        dataset=dataset,
        publication=NAME,
        source_title=first_text(row, "scite1", "scite2", "scite3"),
        date=day,
        date_precision=date_precision,
        date_end=date_end,
        location=first_text(row, "city", "provstate"),
        geo_precision=precision,
        actor=actor_of(row["gname"]),
        claimed=CLAIMED[claimed],
        event_type=_event_type(row),
        target=_target(row),
        killed=(None, nkill, None),
        injured=(nwound, nwound),
        description=row["summary"],
        lon=lon,
        lat=lat,
        parties=[
            party(row[c], "a") for c in ("gname", "gname2", "gname3") if row.get(c, "").strip()
        ],
        deaths=_deaths(row, nkill),
        district_reported=city_district,
        flags=flags,
    )
    return Unplaced(rec, Names("provstate", row["provstate"], "city", city_district))


def _deaths(row: dict[str, str], nkill: int | None) -> dict[str, int | None] | None:
    perpetrators = count(row, "nkillter") if "nkillter" in row else None
    if perpetrators is None or nkill is None or perpetrators > nkill:
        return None
    victims = nkill - perpetrators
    return {"side_a": perpetrators, "side_b": None, "civilians": None, "unknown": victims}


def _date(row: dict[str, str], flags: list[str]) -> tuple[str, str, str | None]:
    """(date, date_precision, date_end) from iyear, imonth, iday (0 = not known) and
    approxdate (see the module docstring); an approxdate is flagged."""
    try:
        year = code(row, "iyear", range(1970, 2100))
        month = code(row, "imonth", range(13))
        day = code(row, "iday", range(32))
    except RowError as exc:
        raise RowError("bad date", exc.detail) from None
    approx = " ".join(row.get("approxdate", "").split())
    span = _approx_span(approx) if approx else None
    if approx:
        kept = f"kept as {span[0]}..{span[1]}" if span else "not read: the date below is GTD's"
        flags.append(f"GTD approxdate {approx!r}: the date is approximate ({kept})")
    if span:
        return _as_span(*span)
    if month == 0:
        return f"{year}-01-01", "range", f"{year}-12-31"
    if day == 0:
        return f"{year}-{month:02d}", "month", None
    if day > period(f"{year:04d}-{month:02d}").last.day:
        raise RowError("bad date", f"iyear/imonth/iday {year}/{month}/{day} is not a day")
    return date(year, month, day).isoformat(), "day", None


def _approx_span(text: str) -> tuple[date, date] | None:
    """The first and last day approxdate names, or None when it is not in a form read here.

    >>> _approx_span("July 29-30, 2014")
    (datetime.date(2014, 7, 29), datetime.date(2014, 7, 30))
    """
    text = re.sub(r"^(between|around|approximately|circa|about)\s+", "", text.lower())
    text = re.sub(r"\s+(and|to)\s+", " - ", text).replace("–", "-")
    try:
        if m := APPROX_TWO.match(text):
            first = date(int(m[3]), MONTHS[m[1]], int(m[2]))
            last = date(int(m[6]), MONTHS[m[4]], int(m[5]))
        elif m := APPROX_SPAN.match(text):
            first = date(int(m[5]), MONTHS[m[1]], int(m[2]))
            last = date(int(m[5]), MONTHS[m[3] or m[1]], int(m[4]))
        elif m := APPROX_DAY.match(text):
            first = last = date(int(m[3]), MONTHS[m[1]], int(m[2]))
        elif m := APPROX_MONTH.match(text):
            first = date(int(m[2]), MONTHS[m[1]], 1)
            last = period(f"{first:%Y-%m}").last
        else:
            return None
    except (KeyError, ValueError):  # not a month name, or not a day of that month
        return None
    return (first, last) if first <= last else None


def _as_span(first: date, last: date) -> tuple[str, str, str | None]:
    if first == last:
        return first.isoformat(), "day", None
    if first.day == 1 and last + timedelta(days=1) == date(
        first.year + first.month // 12, first.month % 12 + 1, 1
    ):
        return f"{first:%Y-%m}", "month", None
    return first.isoformat(), "range", last.isoformat()


def _event_type(row: dict[str, str]) -> str:
    attack = row["attacktype1_txt"].strip().lower()
    explosive = attack == "bombing/explosion" or row.get("weaptype1_txt", "").startswith("Explos")
    if row.get("suicide", "").strip() == "1" and explosive:
        return "suicide bombing"
    return ATTACK_TYPES.get(attack, "other")


def _target(row: dict[str, str]) -> str:
    subtype = row.get("targsubtype1_txt", "").lower()
    if "polio" in f"{row['target1']} {subtype}".lower():
        return "polio workers"
    if "political party" in subtype or "politician" in subtype:
        return "political party"
    return TARGET_TYPES.get(row["targtype1_txt"].strip().lower(), "other")
