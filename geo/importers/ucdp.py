"""UCDP's Georeferenced Event Dataset (GED) and Candidate Events (ucdp.uu.se), one row per event,
in every layout UCDP and HDX distribute:

- the GED CSV (GEDEvent_v25_1.csv, ged251.csv): 49 columns, figures `best`, `low`, `high`;
- older GED releases: figures `best_est`, `low_est`, `high_est`, `active_year` as True/False,
  no `gwnoa`/`gwnob` (read as the same columns);
- HDX's per-country CSV: the same columns with an HXL hashtag row as its second line (skipped by
  read_file as metadata);
- UCDP Candidate Events (monthly GEDEvent_v25_0_9.csv, quarterly GEDEvent_v24_01_24_03.csv): the
  GED's columns; some monthly files come without a header row (their first line is an event in
  the standard column order) and are read so. A candidate event not yet verified
  (code_status other than "Clear") is taken and flagged.
Rows may carry one more (empty) cell than the header, CRLF or LF line ends, quoted fields with
line breaks and tabs, tripled quotes, and US dates ("07/30/2023 00:00:00").

Mapping to the canonical record:
- id "ucdp-<id>"; dataset "ucdp-candidate" when the file name is a Candidate release's, else
  "ucdp-ged"; release from the file name (see release_of), else the newest date_end read.
- date from date_start and date_end, keeping the span UCDP gives: the same day -> day; exactly
  one calendar month -> month; else a range date_start..date_end (date_prec is checked, 1-5).
- location = where_coordinates (adm_2 when blank); lon/lat as given; district_reported = adm_2.
- geo_precision from where_prec: 1 -> 1; 2 (within 25 km) -> 2; 3 (the district, ADM2) -> 3;
  4 (the province) is refused; 5 (a road, river, border stretch or area) is kept when the area
  lies in one district: 2 when where_coordinates names a tehsil of the point's district, 3 when
  adm_2 names exactly the point's district; refused when adm_2 names no district, several, or
  another than the point's (the area spans districts). 6 (the country) and 7 (international
  waters or airspace) are refused.
- category and actor by type_of_violence. 1 (state-based: side_a is a government, side_b the
  group it fights) -> "armed clash", or "air/drone strike" when side_a is a foreign state and
  side_b a group (the United States in the drone campaign); UCDP does not say who attacked, so
  the actor is None. 2 (non-state: two groups) -> "violence between groups", actor None.
  3 (one-sided: side_a kills civilians) -> "violence against civilians", actor = side_a.
- parties: side_a and side_b as written with their groups (geo.importers.parties); deaths by
  side: deaths_a, deaths_b, deaths_civilians, deaths_unknown.
- UCDP does not code the kind of attack: event_type "unknown"; target "civilians" for type 3,
  else "unknown". No injury figures, no claims (null).
- killed_low/best/high = low/best/high; out of order, best is kept and low/high widened (flagged).
- description = source_headline; sources = [{UCDP GED, source_article, <date>, ""}].
"""

import re
from pathlib import Path
from typing import Any

from geo.dates import period
from geo.importers.common import (
    RowError,
    RowRefused,
    code,
    count,
    date_of_text,
    figures,
    first_text,
    identifier,
    optional_count,
    parse_day,
    point,
    record,
)
from geo.importers.layouts import Layout
from geo.importers.parties import actor_of, is_foreign_state, is_state, party
from geo.importers.places import KpPlaces, Names, Unplaced, reported_districts

NAME = "UCDP GED"
ORIGIN = "ucdp"
ID_COLUMN, ID_PREFIX = "id", "ucdp"
LON, LAT = "longitude", "latitude"
REQUIRED = (
    "id", "year", "type_of_violence", "side_a", "side_b", "source_article", "where_prec",
    "where_coordinates", "adm_1", "adm_2", "latitude", "longitude", "date_prec", "date_start",
    "date_end", "best", "low", "high",
)  # fmt: skip
# The GED's columns in UCDP's order (GED 25.1, Candidate 25.0.x): a file without a header row
# has these.
GED_COLUMNS = (
    "id", "relid", "year", "active_year", "code_status", "type_of_violence", "conflict_dset_id",
    "conflict_new_id", "conflict_name", "dyad_dset_id", "dyad_new_id", "dyad_name",
    "side_a_dset_id", "side_a_new_id", "side_a", "side_b_dset_id", "side_b_new_id", "side_b",
    "number_of_sources", "source_article", "source_office", "source_date", "source_headline",
    "source_original", "where_prec", "where_coordinates", "where_description", "adm_1", "adm_2",
    "latitude", "longitude", "geom_wkt", "priogrid_gid", "country", "country_id", "region",
    "event_clarity", "date_prec", "date_start", "date_end", "deaths_a", "deaths_b",
    "deaths_civilians", "deaths_unknown", "best", "high", "low", "gwnoa", "gwnob",
)  # fmt: skip
NOTED = ("code_status", "deaths_a", "gwnoa", "gwnob")
LAYOUTS = (
    Layout("UCDP GED columns", REQUIRED, noted=NOTED, headerless=GED_COLUMNS),
    Layout(
        "UCDP GED columns of an older release (best_est, low_est, high_est)",
        REQUIRED,
        renames={"best_est": "best", "low_est": "low", "high_est": "high"},
        noted=NOTED,
    ),
)
# GEDEvent_v25_1 / ged251: GED 25.1. GEDEvent_v25_0_9: Candidate 25.0.9 (September 2025).
# GEDEvent_v24_01_24_03: Candidate, January to March 2024.
GED_NAME = re.compile(r"(?:gedevent_v(\d{2})_([1-9])(?!\d|_)|\bged(\d{2})([1-9])\b)", re.I)
CANDIDATE_MONTH = re.compile(r"gedevent_v(\d{2})_0_(\d{1,2})(?!\d)", re.I)
CANDIDATE_SPAN = re.compile(r"gedevent_v(\d{2})_(\d{2})_(\d{2})_(\d{2})", re.I)
TEHSIL_PRECISION, DISTRICT_PRECISION = 2, 3


def dataset_of(path: Path) -> str:
    """ "ucdp-candidate-<period>" for a Candidate release's file name, else "ucdp-ged".

    A Candidate file holds the events of its month (or months), not everything before: each
    period is a dataset of its own, so that importing October's file does not replace
    September's (a newer release of one dataset replaces the older, geo.build.datasets), while a
    re-issued file for the same period does replace the earlier issue."""
    name = Path(path).name
    if match := CANDIDATE_SPAN.search(name):
        start_year, start_month, end_year, end_month = match.groups()
        return f"ucdp-candidate-20{start_year}-{start_month}-20{end_year}-{end_month}"
    if match := CANDIDATE_MONTH.search(name):
        return f"ucdp-candidate-20{match.group(1)}-{int(match.group(2)):02d}"
    return "ucdp-ged"


def release_of(path: Path, newest: str | None) -> str | None:
    """The release, as text that sorts oldest to newest within a dataset:
    "2025 (GED 25.1)" (released 2025), "2025-09 (Candidate 25.0.9)" (events of September 2025),
    "2024-03 (Candidate 24.01.24.03)"; for a file whose name gives no version, the newest
    date_end in it, "2024-12-31 (newest event)"."""
    name = Path(path).name
    if match := CANDIDATE_SPAN.search(name):
        year, month = match.group(3), match.group(4)
        version = ".".join(match.groups())
        return f"20{year}-{month} (Candidate {version})"
    if match := CANDIDATE_MONTH.search(name):
        year, month = match.group(1), int(match.group(2))
        return f"20{year}-{month:02d} (Candidate {year}.0.{month})"
    if match := GED_NAME.search(name):
        year, minor = (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
        return f"20{year} (GED {year}.{minor})"
    return f"{newest} (newest event)" if newest else None


def release_key(row: dict[str, str]) -> str | None:
    """The row's date_end (ISO) for the newest-event release; None when it is not a date."""
    day = date_of_text(row["date_end"].strip())
    return day.isoformat() if day else None


def convert(row: dict[str, str], dataset: str) -> Unplaced:
    """One UCDP row as a canonical record, to be placed in its district (a where_prec 5 area is
    checked once it is); RowError (or RowRefused) with the reason when it cannot be taken."""
    rec_id = identifier(row, "id", ID_PREFIX)
    where_prec = code(row, "where_prec", range(1, 8))
    if where_prec == 4:
        raise RowRefused("place known only to the province (where_prec 4)")
    if where_prec >= 6:
        raise RowRefused(f"place known only to the country or beyond (where_prec {where_prec})")
    lon, lat = point(row, LON, LAT)
    day, date_precision, date_end = _date(row)
    violence = code(row, "type_of_violence", (1, 2, 3))
    flags: list[str] = []
    killed = figures(count(row, "low"), count(row, "best"), count(row, "high"), flags, "UCDP")
    status = row.get("code_status", "").strip()
    if status and status.lower() != "clear":
        flags.append(f"UCDP code_status {status!r}: a candidate event UCDP has not yet verified")
    side_a, side_b = row["side_a"].strip(), row["side_b"].strip()
    category, actor = _category(violence, side_a, side_b)
    rec = record(
        id=rec_id,
        origin=ORIGIN,
        dataset=dataset,
        publication=NAME,
        source_title=row["source_article"],
        date=day,
        date_precision=date_precision,
        date_end=date_end,
        location=first_text(row, "where_coordinates", "adm_2"),
        geo_precision=min(where_prec, DISTRICT_PRECISION),
        actor=actor,
        claimed=None,
        event_type="unknown",
        target="civilians" if violence == 3 else "unknown",
        killed=killed,
        injured=(None, None),
        description=row.get("source_headline", ""),
        lon=lon,
        lat=lat,
        category=category,
        parties=[party(side_a, "a"), party(side_b, "b")],
        deaths=_deaths(row),
        district_reported=row["adm_2"].strip(),
        flags=flags,
    )
    names = Names("adm_1", row["adm_1"], "adm_2", row["adm_2"])
    if where_prec != 5:
        return Unplaced(rec, names)

    def check(rec: dict[str, Any], places: KpPlaces) -> None:
        rec["geo_precision"] = _area_precision(row, rec["district"], places)

    return Unplaced(rec, names, check)


def _category(violence: int, side_a: str, side_b: str) -> tuple[str, str | None]:
    """(category, actor) from type_of_violence and the sides (see the module docstring)."""
    if violence == 1:
        if is_foreign_state(side_a) and not is_state(side_b):
            return "air/drone strike", None
        return "armed clash", None
    if violence == 2:
        return "violence between groups", None
    return "violence against civilians", actor_of(side_a)


def _deaths(row: dict[str, str]) -> dict[str, int | None] | None:
    if "deaths_a" not in row:
        return None
    return {
        "side_a": optional_count(row, "deaths_a"),
        "side_b": optional_count(row, "deaths_b"),
        "civilians": optional_count(row, "deaths_civilians"),
        "unknown": optional_count(row, "deaths_unknown"),
    }


def _area_precision(row: dict[str, str], district: str, places: KpPlaces) -> int:
    """The precision of a where_prec 5 area in `district`, or RowRefused when it is not known
    to lie in that one district."""
    area, adm_2 = row["where_coordinates"].strip(), row["adm_2"].strip()
    if area and places.tehsil_district(area) == district:
        return TEHSIL_PRECISION
    ids = reported_districts(adm_2) if adm_2 else None
    if ids is None:
        raise RowRefused(
            "where_prec 5: the area is not known to lie in one district",
            f"where_coordinates {area!r}, adm_2 {adm_2!r}",
        )
    if ids != (district,):
        raise RowRefused(
            "where_prec 5: the area spans districts",
            f"where_coordinates {area!r}, adm_2 {adm_2!r} is {' / '.join(ids)}, "
            f"the point lies in {district}",
        )
    return DISTRICT_PRECISION


def _date(row: dict[str, str]) -> tuple[str, str, str | None]:
    """(date, date_precision, date_end) from date_start and date_end (date_prec checked)."""
    code(row, "date_prec", range(1, 6))
    start = parse_day(row, "date_start")
    end = parse_day(row, "date_end") if row["date_end"].strip() else start
    if end < start:
        raise RowError("bad date: date_end before date_start", f"{start} .. {end}")
    if end == start:
        return start.isoformat(), "day", None
    if start.day == 1 and end == period(f"{start:%Y-%m}").last:
        return f"{start:%Y-%m}", "month", None
    return start.isoformat(), "range", end.isoformat()
