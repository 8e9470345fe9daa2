"""Importers for the conflict-event datasets analysts hold, exactly as their providers distribute
them: UCDP GED and Candidate Events, ACLED (CSV export or API JSON) and GTD (CSV or XLSX).

    from geo.importers import district_locator, read_file
    result = read_file("ucdp", Path("GEDEvent_v25_1.csv"), district_locator(store))
    result.layout, result.dataset, result.release   # what was read
    for outcome in result.rejected:
        print(f"line {outcome.line}: {outcome}")

Each record is a canonical attack property dict (see the attack schema in docs/store.md) plus "lon"
and "lat"; the caller builds the geometry and adds distance_to_border_km and former_fata. The third
argument places points: district_locator(store) (geo.importers.places.KpPlaces: the tehsils and the
border sliver rule, KP's outline for distances, the tehsils' names), or any function `in_kp(lon,
lat)` returning a KP district id or None. How each format's columns map is told in its module's
docstring; report.py turns a result into the import report. The build links records of different
datasets that report the same event (geo.build.links).

A row is taken when its point lies in KP, whatever its names say (geo.importers.places). Every
other row has an Outcome: "refused" (read correctly, not for this map: outside KP, an event type
not imported, a place known only to the province) or "failed" (it cannot be read: a bad date, a
number that is not one, a row of the wrong width). A file that cannot be read at all (not CSV,
XLSX or JSON; a header no known layout fits) raises SchemaError before any row is read; a file
more than half of whose rows fail, or from which nothing is taken, raises ImportFailed: nothing of
it is imported.
"""

from collections import Counter
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

from geo.errors import InvalidQuery
from geo.importers import acled, gtd, ucdp
from geo.importers.common import (
    FAILED,
    TAKEN,
    ImportFailed,
    ImportResult,
    Notice,
    Outcome,
    RowError,
)
from geo.importers.layouts import recognise
from geo.importers.parties import unmapped_names
from geo.importers.places import (
    InKp,
    KpPlaces,
    OutsideKp,
    Unplaced,
    as_places,
    district_locator,
    place,
)
from geo.importers.reading import Table, Unreadable, is_hxl_row, read_table
from geo.importers.registry import Importer

__all__ = [
    "FORMATS",
    "IMPORTERS",
    "Importer",
    "ImportFailed",
    "ImportResult",
    "KpPlaces",
    "Outcome",
    "district_locator",
    "read_file",
]

# Every importer, by the FORMAT `kpmap import` takes (its records' origin).
IMPORTERS: dict[str, Importer] = {i.origin: i for i in map(Importer.of, (acled, gtd, ucdp))}
FORMATS = tuple(IMPORTERS)


def read_file(fmt: str, path: Path, in_kp: InKp) -> ImportResult:
    """Every data row of a provider's file: a record taken, or an Outcome saying why not.

    fmt is one of FORMATS. Raises InvalidQuery for an unknown format, SchemaError for a file
    that cannot be read or whose header fits no known layout (naming the columns found and the
    layouts known), ImportFailed for a file that mostly fails or yields nothing. A row whose id
    repeats an earlier row's fails (the store needs unique ids).
    """
    importer = IMPORTERS.get(fmt)
    if importer is None:
        raise InvalidQuery(f"unknown import format {fmt!r}; the formats are: {', '.join(FORMATS)}")
    path = Path(path)
    places = as_places(in_kp)
    table = read_table(path)
    found = recognise(table.header, importer.layouts, importer.name, str(path))
    columns = found.columns
    while columns and not columns[-1]:  # a header ending in a comma names an empty column
        columns = columns[:-1]
    dataset = importer.dataset_of(path)
    layout = f"{found.description} in {table.container}"
    result = ImportResult(str(path), layout, dataset, None, [], [], notes=list(table.notes))
    first_line: dict[str, int] = {}
    unplaced: list[tuple[int, Unplaced]] = []  # (index in result.outcomes, converted row)
    newest: str | None = None
    for line, row in _data_rows(table, found.header_is_data, columns, result):
        key = importer.release_key(row)
        if key and (newest is None or key > newest):
            newest = key
        try:
            converted = importer.convert(row, dataset)
            rec_id = converted.record["id"]
            if rec_id in first_line:
                raise RowError("duplicate id", f"{rec_id} (first on line {first_line[rec_id]})")
        except RowError as exc:
            outcome = Outcome(line, exc.status, importer.row_id(row), exc.reason, exc.detail)
            result.outcomes.append(outcome)
            continue
        first_line[rec_id] = line
        unplaced.append((len(result.outcomes), converted))
        # taken unless its place says otherwise (_place_all replaces the outcome then)
        result.outcomes.append(Outcome(line, TAKEN, rec_id))
    _place_all(result, unplaced, places)
    result.release = importer.release_of(path, newest)
    names: Counter[str] = Counter()
    for rec in result.records:
        rec["release"] = result.release
        names.update(unmapped_names(rec["parties"]))
    result.unmapped = dict(names.most_common())
    _check(result)
    return result


def _data_rows(
    table: Table, header_is_data: bool, columns: list[str], result: ImportResult
) -> Iterator[tuple[int, dict[str, str]]]:
    """The table's data rows as (line, {column: text}). Blank rows are skipped, and so is an HXL
    hashtag row before the first data row; one more empty cell than the header (a comma at the
    end of every line) is dropped; a row that is not one row of the header's width gets a
    failed Outcome in `result` instead."""
    width = len(columns)
    rows = chain([(1, table.header)], table.rows) if header_is_data else table.rows
    first_row, trailing = True, 0
    for line, cells in rows:
        if isinstance(cells, Unreadable):
            result.outcomes.append(Outcome(line, FAILED, None, cells.reason, cells.detail))
            continue
        if not any(c.strip() for c in cells):
            continue  # blank lines and empty spreadsheet rows are not rows
        if first_row:
            first_row = False
            if is_hxl_row(cells):
                result.notes.append(
                    f"line {line} is an HXL hashtag row (as HDX adds it): metadata, skipped"
                )
                continue
        if len(cells) > width and not any(c.strip() for c in cells[width:]):
            cells = cells[:width]
            trailing += 1
        if len(cells) != width:
            reason = "the row has another number of cells than the header"
            detail = f"{len(cells)} cells, the header has {width}"
            result.outcomes.append(Outcome(line, FAILED, None, reason, detail))
            continue
        yield line, dict(zip(columns, cells, strict=True))
    if trailing and table.container == "CSV":  # a sheet's rows are padded to its widest row
        result.notes.append(
            f"{trailing} row(s) had one empty cell more than the header (a comma at the end of "
            "each line): read without it"
        )


def _place_all(
    result: ImportResult, unplaced: list[tuple[int, Unplaced]], places: KpPlaces
) -> None:
    """Place every converted record at once (geo.importers.places.place): its district, the
    notices its names raise, or the Outcome saying why it is not taken. Rows whose names say KP
    but whose points lie outside are measured to KP together (a national file has thousands)."""
    lon = [u.record["lon"] for _, u in unplaced]
    lat = [u.record["lat"] for _, u in unplaced]
    districts = places.districts(lon, lat)
    # a point outside KP that would be inside with latitude and longitude exchanged
    maybe = [i for i, d in enumerate(districts) if d is None and -90 <= lon[i] <= 90]
    exchanged = places.districts([lat[i] for i in maybe], [lon[i] for i in maybe])
    swapped = {i for i, d in zip(maybe, exchanged, strict=True) if d}
    outside: list[tuple[int, OutsideKp]] = []
    for n, (i, converted) in enumerate(unplaced):
        rec, line = converted.record, result.outcomes[i].line
        try:
            notices = place(rec, converted.names, districts[n], n in swapped)
            if converted.check is not None:
                converted.check(rec, places)
        except OutsideKp as exc:
            outside.append((i, exc))
            continue
        except RowError as exc:
            result.outcomes[i] = Outcome(line, exc.status, rec["id"], exc.reason, exc.detail)
            continue
        result.records.append(rec)
        result.notices += [Notice(line, rec["id"], kind, text) for kind, text in notices]
    distances = places.distances_km([e.lon for _, e in outside], [e.lat for _, e in outside])
    for (i, refused), km in zip(outside, distances, strict=True):
        away = f"{km:g} km outside KP" if km is not None else "outside KP (distance not measured)"
        old = result.outcomes[i]
        detail = f"{refused.detail}: {away}"
        result.outcomes[i] = Outcome(old.line, refused.status, old.id, refused.reason, detail)


def _check(result: ImportResult) -> None:
    """ImportFailed for a file without data rows, more than half of whose rows fail, or from
    which nothing is taken."""
    read = len(result.outcomes)
    failed = result.failed
    if not read:
        raise ImportFailed(f"{result.path} holds no data rows: nothing imported", result)
    if 2 * len(failed) > read:
        first = "; ".join(f"line {o.line}: {o}" for o in failed[:3])
        raise ImportFailed(
            f"{result.path}: {len(failed)} of {read} rows cannot be read (more than half), so "
            f"the file is not imported as {result.layout}. First reasons: {first}",
            result,
        )
    if not result.records:
        reasons = Counter(o.reason for o in result.rejected).most_common(3)
        said = "; ".join(f"{n} {reason}" for reason, n in reasons)
        raise ImportFailed(f"{result.path}: none of its {read} rows is taken ({said})", result)
