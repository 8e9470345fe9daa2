"""The Global Terrorism Database (START, University of Maryland), as distributed: the CSV (latin-1,
see common.decode_text) or the XLSX workbook (first sheet), one row per incident.

Mapping to the canonical record:
- id "gtd-<eventid>"; date from iyear/imonth/iday: iday 0 (day unknown) -> month "YYYY-MM";
  imonth 0 (month unknown) -> range YYYY-01-01..YYYY-12-31. approxdate (free text) is not parsed.
- location = city (provstate when the city is blank); lon/lat as given.
- geo_precision from specificity: 1 (the city itself) -> 1; 2 (near the city / a smaller unit) -> 2;
  3 (the district's centroid) -> 3; 4 (only the province known) and 5 (no better than the country)
  are rejected: such a point says nothing about the district it would be drawn in.
  vicinity 1 (the attack happened near, not in, the city) lowers 1 to 2.
- actor = canonical_actor(gname); claimed: 1 -> true, 0 -> false, -9 (unknown) or blank -> null.
- event_type from attacktype1_txt (ATTACK_TYPES); a bombing with suicide = 1 is a suicide bombing.
- target from targtype1_txt (TARGET_TYPES), made more precise by targsubtype1_txt (politicians and
  parties -> political party) and by "polio" in target1 or targsubtype1_txt (-> polio workers).
- killed_best = nkill (killed_low/high null); injured_low = injured_high = nwound.
- description = summary (often blank before 1997); sources = [{GTD, scite1 (else scite2, scite3),
  <date>, ""}].
"""

import calendar
from datetime import date

from geo.importers.common import (
    RowError,
    actor_of,
    code,
    count,
    first_text,
    identifier,
    point,
    record,
)

NAME = "GTD"
ADMIN1 = "provstate"
LON, LAT = "longitude", "latitude"
REQUIRED = (
    "eventid", "iyear", "imonth", "iday", "provstate", "city", "latitude", "longitude",
    "specificity", "summary", "attacktype1_txt", "targtype1_txt", "target1", "gname", "claimed",
    "nkill", "nwound", "scite1",
)  # fmt: skip

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


def convert(row: dict[str, str]) -> dict:
    """One GTD row as a canonical record; RowError with the reason when it cannot be."""
    lon, lat = point(row, LON, LAT)
    day, date_precision, date_end = _date(row)
    precision = code(row, "specificity", (1, 2, 3, 4, 5))
    if precision > 3:
        raise RowError(f"specificity {precision}: only the province or country is known")
    if precision == 1 and row.get("vicinity", "").strip() == "1":
        precision = 2
    claimed = row["claimed"].strip()
    if claimed not in CLAIMED:
        raise RowError(f"claimed {claimed!r} is not one of 1, 0, -9")
    nwound = count(row, "nwound")
    return record(
        id=identifier(row, "eventid", "gtd"),
        origin="gtd",
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
        killed=(None, count(row, "nkill"), None),
        injured=(nwound, nwound),
        description=row["summary"],
        lon=lon,
        lat=lat,
    )


def _date(row: dict[str, str]) -> tuple[str, str, str | None]:
    """(date, date_precision, date_end) from iyear, imonth, iday (0 = not known)."""
    try:
        year = code(row, "iyear", range(1970, 2100))
        month = code(row, "imonth", range(13))
        day = code(row, "iday", range(32))
    except RowError as exc:
        raise RowError(f"bad date: {exc}") from None
    if month == 0:
        return f"{year}-01-01", "range", f"{year}-12-31"
    if day == 0:
        return f"{year}-{month:02d}", "month", None
    if day > calendar.monthrange(year, month)[1]:
        raise RowError(f"bad date: iyear/imonth/iday {year}/{month}/{day} is not a day")
    return date(year, month, day).isoformat(), "day", None


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
