"""The district table (data/districts.toml): KP's 35 districts by P-code, their names, aliases,
successors created since 2022 and former districts since split, and the index that maps any
district name, P-code or successor to the polygon(s) it means. Read by the build, the importers
and the filters alike; geo.build.districts builds the polygons.

    resolve_district("Upper South Waziristan")   # a successor: its parent's polygon
    resolve_district("Kohistan")                 # the three polygons the former district became
"""

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from geo import paths
from geo.errors import BuildError

DISTRICTS_TOML = paths.DATA_DIR / "districts.toml"
_PCODE = re.compile(r"^PK5\d\d$")
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


@dataclass(frozen=True)
class Successor:
    """A district created after the boundaries were drawn, inside one polygon of the layer."""

    name: str
    created: str  # YYYY, YYYY-MM or YYYY-MM-DD: as precise as the citation
    citation: str  # key in data/citations.toml


@dataclass(frozen=True)
class District:
    pcode: str
    id: str
    name: str
    former_fata: bool = False
    frontier_region: str | None = None
    frontier_region_tehsil: str | None = None  # ADM3 P-code of the tehsil that was the FR
    aliases: tuple[str, ...] = ()
    successors: tuple[Successor, ...] = ()
    headquarters: int | None = None  # GeoNames id of the district's seat, where one is cited

    def all_names(self) -> tuple[str, ...]:
        """Every name of this polygon alone: id, name, P-code, aliases, FR, successors."""
        extra = (self.frontier_region,) if self.frontier_region else ()
        return (
            self.id,
            self.name,
            self.pcode,
            *self.aliases,
            *extra,
            *(s.name for s in self.successors),
        )


@dataclass(frozen=True)
class FormerDistrict:
    """A district since split into several polygons ("Kohistan" -> Upper, Lower, Kolai-Palas)."""

    name: str
    became: tuple[str, ...]
    until: str
    citation: str


def read_district_table(path: Path = DISTRICTS_TOML) -> list[District]:
    """The authored district table; a malformed entry is a BuildError naming it."""
    return _read_tables(path)[0]


def read_former_districts(path: Path = DISTRICTS_TOML) -> list[FormerDistrict]:
    return _read_tables(path)[1]


@cache
def _read_tables(path: Path) -> tuple[list[District], list[FormerDistrict]]:
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    table, problems = [], []
    for i, entry in enumerate(raw.get("district", []), start=1):
        where = f"district #{i} ({entry.get('id') or entry.get('pcode')})"
        missing = [k for k in ("pcode", "id", "name") if not entry.get(k)]
        if missing:
            problems.append(f"{where} lacks {', '.join(missing)}")
            continue
        if not _PCODE.match(entry["pcode"]):
            problems.append(f"{where}: pcode {entry['pcode']!r} is not a KP ADM2 P-code (PK5nn)")
        fr = entry.get("frontier_region") or {}
        headquarters = entry.get("headquarters")
        if headquarters is not None and (type(headquarters) is not int or headquarters <= 0):
            problems.append(f"{where}: headquarters {headquarters!r} is not a GeoNames id")
        successors = []
        for s in entry.get("successors", ()):
            if not all(s.get(k) for k in ("name", "created", "citation")):
                problems.append(f"{where}: a successor needs name, created and citation: {s}")
            elif not _DATE.match(s["created"]):
                problems.append(f"{where}: successor {s['name']} created {s['created']!r}")
            else:
                successors.append(Successor(s["name"], s["created"], s["citation"]))
        table.append(
            District(
                pcode=entry["pcode"],
                id=entry["id"],
                name=entry["name"],
                former_fata=bool(entry.get("former_fata", False)),
                frontier_region=fr.get("name"),
                frontier_region_tehsil=fr.get("tehsil"),
                aliases=tuple(entry.get("aliases", ())),
                successors=tuple(successors),
                headquarters=headquarters,
            )
        )
    ids = {d.id for d in table}
    former = []
    for entry in raw.get("former_district", []):
        unknown = [i for i in entry.get("became", ()) if i not in ids]
        if unknown or len(entry.get("became", ())) < 2 or not entry.get("citation"):
            problems.append(
                f"former district {entry.get('name')!r} must name two or more district ids "
                f"(unknown: {unknown}) and a citation"
            )
            continue
        former.append(
            FormerDistrict(entry["name"], tuple(entry["became"]), entry["until"], entry["citation"])
        )
    if problems:
        raise BuildError(f"{path}: " + "; ".join(problems))
    return table, former


def normalise_name(name: str) -> str:
    """Case-, accent- and punctuation-free form used to compare names.

    >>> normalise_name("D.I. Khan") == normalise_name("d i  KHAN") == "d i khan"
    True
    """
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def alias_index(table: list[District]) -> dict[str, str]:
    """Normalised name -> district id, for every name of a single polygon in the table.

    A name claimed by two districts is an error in the table, not something to guess about.
    """
    index: dict[str, str] = {}
    for district in table:
        for name in district.all_names():
            key = normalise_name(name)
            if index.get(key, district.id) != district.id:
                raise BuildError(
                    f"district name {name!r} is claimed by {index[key]} and {district.id}"
                )
            index[key] = district.id
    return index


@dataclass(frozen=True)
class DistrictName:
    """What a district name resolves to: the polygon ids, and a note when it is not one of them
    by name (a successor inside its parent, a former district split into several)."""

    ids: tuple[str, ...]
    note: str | None = None


@cache
def name_index(path: Path = DISTRICTS_TOML) -> dict[str, DistrictName]:
    """Normalised name (id, name, P-code, alias, FR, successor, former district) -> DistrictName."""
    table, former = _read_tables(path)
    index = {key: DistrictName((district_id,)) for key, district_id in alias_index(table).items()}
    for district in table:
        for s in district.successors:
            index[normalise_name(s.name)] = DistrictName(
                (district.id,),
                f"{s.name} (created {s.created}) is not drawn in the 2022 boundaries; its "
                f"territory lies in {district.name} ({district.id}), which is selected",
            )
    for f in former:
        key = normalise_name(f.name)
        if key in index:
            raise BuildError(f"former district {f.name!r} is also the name of {index[key].ids}")
        index[key] = DistrictName(
            f.became,
            f"{f.name} was split (until {f.until}) into {', '.join(f.became)}: all are selected",
        )
    return index


def resolve_district(name: str) -> DistrictName | None:
    """The polygons a district name means, or None if it names no KP district."""
    return name_index().get(normalise_name(name))
