"""Importers for the attack datasets analysts hold, exactly as their providers distribute them:
ACLED's CSV export, GTD's CSV or XLSX and UCDP GED's CSV.

    from geo.importers import read_file
    result = read_file("acled", Path("acled_pakistan.csv"), in_kp)
    for rejected in result.rejected:
        print(f"line {rejected.line}: {rejected.reason}")

Each record is a canonical attack property dict (see the README's attack schema) plus "lon" and
"lat"; the caller builds the geometry and adds distance_to_border_km and former_fata. `in_kp(lon,
lat)` returns the id of the KP district holding the point, or None (district_locator builds one
from a built store). How each format's columns map is told in its module's docstring. The build
links records of different datasets that report the same event (geo.links).

Rows are kept only inside KP: a row whose province column names another province (anything but
Khyber Pakhtunkhwa, NWFP, North-West Frontier, FATA, Federally Administered Tribal Areas, ...) is
rejected without looking at its point; the others must have a point in a KP district. Every row
not taken is in `rejected` with its line and reason; only a file that cannot be read at all (not
CSV or XLSX, a required column missing) raises SchemaError, before any row is read.
"""

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from geo.errors import InvalidQuery
from geo.importers import acled, gtd, ucdp
from geo.importers.common import (
    ImportResult,
    InKp,
    Rejected,
    RowError,
    admin1_status,
    locate,
    outside_kp,
    read_rows,
)
from geo.locate import Locator

__all__ = [
    "FORMATS",
    "ImportResult",
    "Rejected",
    "district_locator",
    "read_file",
]

FORMATS = ("acled", "gtd", "ucdp")
_MODULES: dict[str, ModuleType] = {"acled": acled, "gtd": gtd, "ucdp": ucdp}


def read_file(fmt: str, path: Path, in_kp: InKp) -> ImportResult:
    """Every row of a provider's file as a canonical record, or rejected with its line and reason.

    fmt is one of FORMATS. Raises SchemaError when the file cannot be read as that format (which
    columns are missing and which the format needs), InvalidQuery for an unknown format. A row
    whose id repeats an earlier row's is rejected (the store needs unique ids).
    """
    module = _MODULES.get(fmt)
    if module is None:
        raise InvalidQuery(f"unknown import format {fmt!r}; the formats are: {', '.join(FORMATS)}")
    records: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    first_line: dict[str, int] = {}
    for line, row in read_rows(Path(path), module.NAME, module.REQUIRED):
        try:
            rec = _convert(module, row, in_kp)
            if rec["id"] in first_line:
                raise RowError(f"duplicate id {rec['id']} (first on line {first_line[rec['id']]})")
        except RowError as exc:
            rejected.append(Rejected(line, str(exc)))
            continue
        first_line[rec["id"]] = line
        records.append(rec)
    return ImportResult(records, rejected)


def _convert(module: ModuleType, row: dict[str, str] | str, in_kp: InKp) -> dict[str, Any]:
    if isinstance(row, str):
        raise RowError(row)
    admin1 = row[module.ADMIN1]
    if admin1_status(admin1) is False:  # another province: no need to test the point
        raise RowError(outside_kp(admin1, row[module.LON], row[module.LAT]))
    rec = module.convert(row)
    rec["district"] = locate(rec["lon"], rec["lat"], admin1, in_kp)
    return rec


def district_locator(store: Any) -> Callable[[float, float], str | None]:
    """An in_kp function for read_file from a built store: its tehsils and the border sliver
    rule (geo.locate), the same rule the build places every attack by."""
    locator = Locator.from_store(store)

    def in_kp(lon: float, lat: float) -> str | None:
        return locator.locate(lon, lat).district

    return in_kp
