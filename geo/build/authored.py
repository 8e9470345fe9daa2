"""Authored attack records (data/events/*.csv) and cited figures (data/facts.csv).

Readers validate everything they read and collect every problem, each as
``file:line: what is wrong (what is allowed)``, before raising one SchemaError that lists them all,
so an author fixes a file in one pass. Records come back as canonical property dicts (see the
attack schema in docs/store.md); geometry, ``distance_to_border_km`` and ``former_fata`` are
added by the build after geocoding.
"""

import csv
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geo import paths
from geo.citations import read_citations
from geo.dates import Period, period
from geo.districts import alias_index, normalise_name, read_district_table
from geo.errors import SchemaError, problem_list
from geo.vocab import (
    COUNT_COLUMNS,
    DATE_PRECISIONS,
    EVENT_TYPES,
    GEO_PRECISIONS,
    MILITANT_ATTACK,
    TARGETS,
    actor_index,
    event_fields,
    lookup_actor,
    read_actors,
)

Problems = list[str]

EVENTS_DIR = paths.DATA_DIR / "events"
FACTS_CSV = paths.DATA_DIR / "facts.csv"
EVENT_COLUMNS: tuple[str, ...] = (
    "id", "date", "date_precision", "date_end", "location", "district", "geo_precision", "actor",
    "claimed", "event_type", "target", "killed_low", "killed_best", "killed_high", "injured_low",
    "injured_high", "description", "citations",
)  # fmt: skip
FACT_COLUMNS: tuple[str, ...] = (
    "id", "scope", "period_start", "period_end", "metric", "value", "qualifier", "actor", "target",
    "note", "citation",
)  # fmt: skip
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
METRIC_RE = re.compile(r"^[a-z][a-z0-9_]*$")
DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MONTH_RE = re.compile(r"^\d{4}-\d{2}$")
YEAR_RE = re.compile(r"^\d{4}$")
QUALIFIERS: tuple[str, ...] = ("", "over", "at least", "about")
PROVINCE_SCOPES: tuple[str, ...] = ("pakistan", "kp")


# --- events -----------------------------------------------------------------------------------


def read_events(
    folder: Path = EVENTS_DIR, citations: dict[str, dict[str, str]] | None = None
) -> list[dict[str, Any]]:
    """Every authored attack in the CSV files of `folder`, as canonical property dicts.

    Each dict holds the schema's properties except geometry, distance_to_border_km and
    former_fata; `district` is a district id (or None when the file leaves it blank), `sources`
    the resolved citations and `origin` "authored". Raises one SchemaError listing every problem
    in every file (file:line: problem).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SchemaError(f"{folder}: no such folder of authored event CSV files")
    citations = read_citations() if citations is None else citations
    districts = alias_index(read_district_table())
    actors = actor_index(read_actors())

    def parse(row: dict[str, str], where: str, problems: Problems) -> dict[str, Any] | None:
        return _parse_event(row, where, citations, districts, actors, problems)

    return _read_records(
        sorted(folder.glob("*.csv")), EVENT_COLUMNS, parse, "authored events have {n} problem(s)"
    )


def _read_records(
    paths: list[Path],
    columns: tuple[str, ...],
    parse: Callable[[dict[str, str], str, Problems], dict[str, Any] | None],
    title: str,
) -> list[dict[str, Any]]:
    """The rows of CSV files parsed into records, in order; one SchemaError (titled `title`,
    with {n} the count) lists every problem, a repeated id naming both lines."""
    problems: Problems = []
    records: list[dict[str, Any]] = []
    first_seen: dict[str, str] = {}
    for path in paths:
        for where, row in _read_rows(path, columns, problems):
            record = parse(row, where, problems)
            if record is None:
                continue
            if record["id"] in first_seen:
                first = first_seen[record["id"]]
                problems.append(f"{where}: duplicate id {record['id']!r} (first at {first})")
                continue
            first_seen[record["id"]] = where
            records.append(record)
    if problems:
        raise SchemaError(problem_list(title.format(n=len(problems)), problems))
    return records


def _parse_event(
    row: dict[str, str],
    where: str,
    citations: dict[str, dict[str, str]],
    districts: dict[str, str],
    actors: dict[str, str],
    problems: Problems,
) -> dict[str, Any] | None:
    """One CSV row as a canonical record; appends its problems and returns None if it has any."""
    found: Problems = []

    def bad(message: str) -> None:
        found.append(f"{where}: {message}")

    event_id = row["id"]
    if not ID_RE.match(event_id):
        bad(f"id {event_id!r} must be a lower-case slug of letters, digits and '-'")

    precision = row["date_precision"]
    date, date_end = row["date"], row["date_end"] or None
    if precision not in DATE_PRECISIONS:
        bad(f"date_precision {precision!r} is not one of {', '.join(DATE_PRECISIONS)}")
    elif precision == "month":
        if not _valid_date(date, MONTH_RE):
            bad(f"date {date!r} must be YYYY-MM for date_precision month")
        if date_end:
            bad("date_end must be blank unless date_precision is range")
    else:
        if not _valid_date(date, DAY_RE):
            bad(f"date {date!r} must be a real day, YYYY-MM-DD, for date_precision {precision}")
        if precision == "day" and date_end:
            bad("date_end must be blank unless date_precision is range")
        if precision == "range":
            if not date_end or not _valid_date(date_end, DAY_RE):
                bad(f"date_end {date_end or ''!r} must be a real day, YYYY-MM-DD, for a range")
            elif _valid_date(date, DAY_RE) and date_end < date:
                bad(f"date_end {date_end} is before date {date}")

    if not row["location"]:
        bad("location is empty (the place name as reported, or the district's name)")

    district = None
    if row["district"]:
        district = districts.get(normalise_name(row["district"]))
        if district is None:
            bad(f"district {row['district']!r} is not a name in data/districts.toml")

    geo_precision = _int(row["geo_precision"])
    if geo_precision not in GEO_PRECISIONS:
        bad(f"geo_precision {row['geo_precision']!r} is not one of 1, 2, 3")

    actor = lookup_actor(row["actor"], actors) if row["actor"] else None
    if actor is None:
        allowed = ", ".join(_keys(actors))
        bad(f"actor {row['actor']!r} is not a group of data/actors.toml ({allowed})")

    claimed = _bool(row["claimed"], "claimed", bad)

    if row["event_type"] not in EVENT_TYPES:
        bad(f"event_type {row['event_type']!r} is not one of: {'; '.join(EVENT_TYPES)}")
    if row["target"] not in TARGETS:
        bad(f"target {row['target']!r} is not one of: {'; '.join(TARGETS)}")

    counts = {col: _count(row[col], col, bad) for col in COUNT_COLUMNS}
    killed = [counts[c] for c in ("killed_low", "killed_best", "killed_high")]
    present = [k for k in killed if k is not None]
    if present != sorted(present):
        bad("killed_low <= killed_best <= killed_high does not hold: " + "/".join(map(str, killed)))
    low, high = counts["injured_low"], counts["injured_high"]
    if low is not None and high is not None and low > high:
        bad(f"injured_low {low} is more than injured_high {high}")

    if not row["description"]:
        bad("description is empty (a short summary in your own words)")

    sources = _resolve_citations(row["citations"], citations, bad)

    if found:
        problems.extend(found)
        return None
    return {
        "id": event_id,
        "date": date,
        "date_precision": precision,
        "date_end": date_end,
        "location": row["location"],
        "district": district,
        "geo_precision": geo_precision,
        "actor": actor,
        "claimed": claimed,
        "event_type": row["event_type"],
        "target": row["target"],
        **counts,
        "description": row["description"],
        "sources": sources,
        "origin": "authored",
        # authored records are the seed articles' attacks, each by the group the articles name
        **event_fields(MILITANT_ATTACK),
    }


# --- facts ------------------------------------------------------------------------------------


def read_facts(
    path: Path = FACTS_CSV, citations: dict[str, dict[str, str]] | None = None
) -> list[dict[str, Any]]:
    """The cited figures of data/facts.csv as dicts.

    Keys: id, scope ("pakistan", "kp" or a district id), period_start, period_end (None when
    blank), metric, value (int, or float when the figure has decimals), qualifier, actor
    (canonical group keys joined by ";" when a figure covers several groups, or None), target
    (None when blank), note, and citation (the resolved {publication, title, date, url}).
    Raises one SchemaError listing every problem (file:line: problem).
    """
    path = Path(path)
    citations = read_citations() if citations is None else citations
    district_ids = {d.id for d in read_district_table()}
    actors = actor_index(read_actors())

    def parse(row: dict[str, str], where: str, problems: Problems) -> dict[str, Any] | None:
        return _parse_fact(row, where, citations, district_ids, actors, problems)

    return _read_records([path], FACT_COLUMNS, parse, f"{path.name} has {{n}} problem(s)")


def _parse_fact(
    row: dict[str, str],
    where: str,
    citations: dict[str, dict[str, str]],
    district_ids: set[str],
    actors: dict[str, str],
    problems: Problems,
) -> dict[str, Any] | None:
    """One facts.csv row as a dict; appends its problems and returns None if it has any."""
    found: Problems = []

    def bad(message: str) -> None:
        found.append(f"{where}: {message}")

    if not ID_RE.match(row["id"]):
        bad(f"id {row['id']!r} must be a lower-case slug of letters, digits and '-'")
    if row["scope"] not in PROVINCE_SCOPES and row["scope"] not in district_ids:
        bad(f"scope {row['scope']!r} is not pakistan, kp or a district id of data/districts.toml")
    periods: dict[str, str | None] = {}
    for col in ("period_start", "period_end"):
        text = periods[col] = row[col] or None
        if text is not None and _period_bounds(text) is None:
            bad(f"{col} {row[col]!r} must be YYYY, YYYY-MM or YYYY-MM-DD (or blank if open)")
    start, end = (_period_bounds(p) if p else None for p in periods.values())
    if start and end and end.last < start.first:
        bad(f"period_end {periods['period_end']} is before period_start {periods['period_start']}")
    if not METRIC_RE.match(row["metric"]):
        bad(f"metric {row['metric']!r} must be a snake_case name such as attacks or deaths")
    value = _number(row["value"])
    if value is None:
        bad(f"value {row['value']!r} must be a non-negative number")
    if row["qualifier"] not in QUALIFIERS:
        bad(f"qualifier {row['qualifier']!r} is not one of: blank, over, at least, about")
    actor = None
    if row["actor"]:
        keys = []
        for part in row["actor"].split(";"):
            key = lookup_actor(part.strip(), actors) if part.strip() else None
            if key is None:
                bad(f"actor {part.strip()!r} is not a group of data/actors.toml")
            keys.append(key)
        actor = ";".join(k for k in keys if k)
    if row["target"] and row["target"] not in TARGETS:
        bad(f"target {row['target']!r} is not blank or one of: {'; '.join(TARGETS)}")
    sources = _resolve_citations(row["citation"], citations, bad, single=True)
    if found:
        problems.extend(found)
        return None
    return {
        "id": row["id"],
        "scope": row["scope"],
        **periods,
        "metric": row["metric"],
        "value": value,
        "qualifier": row["qualifier"],
        "actor": actor,
        "target": row["target"] or None,
        "note": row["note"],
        "citation": sources[0],
    }


# --- shared helpers ---------------------------------------------------------------------------


def _read_rows(path: Path, columns: tuple[str, ...], problems: Problems):
    """(where, row) for every non-blank data row of a UTF-8 CSV with exactly `columns`.

    Header problems (missing or unknown columns) and unreadable files are appended to
    `problems`; a file missing a column yields no rows. Cells are stripped of outer spaces.
    """
    name = path.name
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(f"{name}: is not UTF-8 ({exc.reason} at byte {exc.start})")
        return
    except OSError as exc:
        problems.append(f"{name}: cannot be read: {exc}")
        return
    reader = csv.reader(text.splitlines(keepends=True))
    header = next(reader, None)
    if header is None:
        problems.append(f"{name}:1: empty file; expected the header {','.join(columns)}")
        return
    header = [h.strip() for h in header]
    missing = [c for c in columns if c not in header]
    unknown = [h for h in header if h not in columns]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if missing:
        problems.append(f"{name}:1: missing column(s) {', '.join(missing)}")
    if unknown:
        problems.append(
            f"{name}:1: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(columns)}"
        )
    if dupes:
        problems.append(f"{name}:1: repeated column(s) {', '.join(dupes)}")
    if missing or dupes:
        return
    line = reader.line_num + 1
    for cells in reader:
        where = f"{name}:{line}"
        line = reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            problems.append(f"{where}: has {len(cells)} cells, the header has {len(header)}")
            continue
        yield where, {h: c.strip() for h, c in zip(header, cells, strict=True) if h in columns}


def _resolve_citations(
    cell: str,
    citations: dict[str, dict[str, str]],
    bad: Callable[[str], None],
    single: bool = False,
) -> list[dict[str, str]]:
    """The citation dicts for a ";"-separated list of keys; reports empty and unknown keys."""
    keys = [k.strip() for k in cell.split(";") if k.strip()]
    column = "citation" if single else "citations"
    if not keys:
        bad(f"{column} is empty (key(s) of data/citations.toml)")
    if single and len(keys) > 1:
        bad("citation must be one key of data/citations.toml")
    sources = []
    for key in keys:
        if key in citations:
            sources.append(dict(citations[key]))
        else:
            bad(f"unknown citation {key!r}; known: {', '.join(citations)}")
    return sources


def _valid_date(text: str, pattern: re.Pattern[str]) -> bool:
    """Whether text has the form `pattern` asks for and is a real date (geo.dates)."""
    return bool(pattern.match(text)) and _period_bounds(text) is not None


def _period_bounds(text: str) -> Period | None:
    """The first and last day of a YYYY, YYYY-MM or YYYY-MM-DD period, or None (geo.dates)."""
    try:
        return period(text)
    except ValueError:
        return None


def _int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"\d+", text) else None


def _count(text: str, column: str, bad: Callable[[str], None]) -> int | None:
    """A non-negative whole number, or None when blank; reports anything else."""
    if not text:
        return None
    value = _int(text)
    if value is None:
        bad(f"{column} {text!r} must be a whole number >= 0 or blank")
    return value


def _number(text: str) -> int | float | None:
    if re.fullmatch(r"\d+", text):
        return int(text)
    if re.fullmatch(r"\d+\.\d+", text):
        return float(text)
    return None


def _bool(text: str, column: str, bad: Callable[[str], None]) -> bool | None:
    """True, False or None (blank); reports anything else."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered:
        bad(f"{column} {text!r} must be true, false or blank")
    return None


def _keys(index: dict[str, str]) -> list[str]:
    return sorted(set(index.values()), key=str.lower)
