"""UCDP's Georeferenced Event Dataset (GED) CSV (ucdp.uu.se), one row per event.

Mapping to the canonical record:
- id "ucdp-<id>"; date from date_prec with date_start and date_end ("2023-07-30" or
  "2023-07-30 00:00:00.000"): 1 (the day is known) -> day date_start; 2-5 (a span of days, the
  week, the month, the year) -> range date_start..date_end, or month when the span is exactly one
  calendar month (and day when the two dates are the same day).
- location = where_coordinates (adm_2 when blank); lon/lat as given.
- geo_precision from where_prec: 1 (the place itself) -> 1; 2 (within 25 km of it) -> 2;
  3 (the district) -> 3; 4 (the province), 5 (along a road or river, or a larger region),
  6 (the country) and 7 (international waters or airspace) are rejected: such a point says
  nothing about the district it would be drawn in.
- actor by type_of_violence: 1 (state-based: side_a is a government) -> side_b; 3 (one-sided:
  side_a is the perpetrator, side_b the civilians) -> side_a; 2 (non-state: two groups) -> side_a,
  or side_b when side_a is no known group. Each through canonical_actor.
- UCDP does not code the kind of attack: event_type is "unknown". target: type 3 is by definition
  violence against civilians -> "civilians"; otherwise "unknown".
- killed_low/best/high = low/best/high; UCDP has no injury figures and no claims (null).
- description = source_headline (when the file has it); sources = [{UCDP GED, source_article,
  <date>, ""}].
"""

import calendar

from geo.importers.common import (
    RowError,
    actor_of,
    code,
    count,
    first_text,
    identifier,
    parse_day,
    point,
    record,
)

NAME = "UCDP GED"
ADMIN1 = "adm_1"
LON, LAT = "longitude", "latitude"
REQUIRED = (
    "id", "year", "type_of_violence", "side_a", "side_b", "source_article", "where_prec",
    "where_coordinates", "adm_1", "adm_2", "latitude", "longitude", "date_prec", "date_start",
    "date_end", "best", "low", "high",
)  # fmt: skip


def convert(row: dict[str, str]) -> dict:
    """One GED row as a canonical record; RowError with the reason when it cannot be."""
    lon, lat = point(row, LON, LAT)
    day, date_precision, date_end = _date(row)
    violence = code(row, "type_of_violence", (1, 2, 3))
    if violence == 1:
        actor = actor_of(row["side_b"])
    else:
        actor = actor_of(row["side_a"])
        if violence == 2 and actor == "unknown":
            actor = actor_of(row["side_b"])
    killed = (count(row, "low"), count(row, "best"), count(row, "high"))
    present = [k for k in killed if k is not None]
    if present != sorted(present):
        raise RowError(f"low {killed[0]}, best {killed[1]}, high {killed[2]} are not in order")
    return record(
        id=identifier(row, "id", "ucdp"),
        origin="ucdp",
        publication=NAME,
        source_title=row["source_article"],
        date=day,
        date_precision=date_precision,
        date_end=date_end,
        location=first_text(row, "where_coordinates", "adm_2"),
        geo_precision=_precision(row),
        actor=actor,
        claimed=None,
        event_type="unknown",
        target="civilians" if violence == 3 else "unknown",
        killed=killed,
        injured=(None, None),
        description=row.get("source_headline", ""),
        lon=lon,
        lat=lat,
    )


def _date(row: dict[str, str]) -> tuple[str, str, str | None]:
    """(date, date_precision, date_end) from date_prec, date_start and date_end."""
    precision = code(row, "date_prec", range(1, 6))
    start = parse_day(row, "date_start")
    if precision == 1:
        return start.isoformat(), "day", None
    end = parse_day(row, "date_end")
    if end < start:
        raise RowError(f"bad date: date_end {end} is before date_start {start}")
    if end == start:
        return start.isoformat(), "day", None
    last = calendar.monthrange(start.year, start.month)[1]
    if start.day == 1 and (end.year, end.month, end.day) == (start.year, start.month, last):
        return f"{start:%Y-%m}", "month", None
    return start.isoformat(), "range", end.isoformat()


def _precision(row: dict[str, str]) -> int:
    where_prec = code(row, "where_prec", range(1, 8))
    if where_prec > 3:
        raise RowError(f"where_prec {where_prec}: the place is not known to the district")
    return where_prec
