"""The districts layer: KP's districts selected from geoBoundaries ADM2, checked against the
authored table in data/districts.toml, and the alias index that maps any district name to its id."""

import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import shapely

from geo import paths
from geo.errors import BuildError

DISTRICTS_TOML = paths.DATA_DIR / "districts.toml"
KP_ADM1_NAME = "Khyber Pakhtunkhwa"
# Pakistan Albers equal-area (standard parallels across the country) for area_km2.
EQUAL_AREA_CRS = "+proj=aea +lat_0=30 +lon_0=70 +lat_1=27 +lat_2=35 +datum=WGS84 +units=m"
# An ADM2 polygon belongs to KP when at least this share of its area lies inside KP's ADM1 outline.
# The two files come from different builds, so their edges differ by slivers of a few tenths of a
# percent; a polygon of a neighbouring province overlaps KP by far less than half.
INSIDE_SHARE = 0.5


@dataclass(frozen=True)
class District:
    id: str
    name: str
    source_name: str
    former_fata: bool = False
    frontier_region: str | None = None
    aliases: tuple[str, ...] = ()
    successors: tuple[str, ...] = field(default=())

    def all_names(self) -> tuple[str, ...]:
        """Every name that refers to this polygon: its name, aliases, FR and successors."""
        extra = (self.frontier_region,) if self.frontier_region else ()
        return (self.name, self.source_name, *self.aliases, *extra, *self.successors)


def read_district_table(path: Path = DISTRICTS_TOML) -> list[District]:
    """The authored district table; an entry without id, name or source_name is a BuildError."""
    with open(path, "rb") as f:
        entries = tomllib.load(f).get("district", [])
    table = []
    for i, entry in enumerate(entries, start=1):
        missing = [k for k in ("id", "name", "source_name") if not entry.get(k)]
        if missing:
            raise BuildError(f"{path}: district #{i} lacks {', '.join(missing)}")
        table.append(
            District(
                id=entry["id"],
                name=entry["name"],
                source_name=entry["source_name"],
                former_fata=bool(entry.get("former_fata", False)),
                frontier_region=entry.get("frontier_region"),
                aliases=tuple(entry.get("aliases", ())),
                successors=tuple(s["name"] for s in entry.get("successors", ())),
            )
        )
    return table


def normalise_name(name: str) -> str:
    """Case-, accent- and punctuation-free form used to compare names.

    >>> normalise_name("D.I. Khan") == normalise_name("di khan")
    True
    """
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def alias_index(table: list[District]) -> dict[str, str]:
    """Normalised name -> district id, for every name in the table.

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


def select_kp_polygons(adm1: gpd.GeoDataFrame, adm2: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The ADM2 polygons that lie (by area share) inside the ADM1 unit for KP."""
    kp = adm1.loc[adm1["shapeName"] == KP_ADM1_NAME, "geometry"]
    if len(kp) != 1:
        raise BuildError(f"ADM1 has {len(kp)} units named {KP_ADM1_NAME!r}; expected exactly one")
    kp_outline = kp.iloc[0]
    projected = adm2.to_crs(EQUAL_AREA_CRS)
    inside = projected.intersection(
        gpd.GeoSeries([kp_outline], crs=adm1.crs).to_crs(EQUAL_AREA_CRS).iloc[0]
    )
    share = inside.area / projected.area
    return adm2.loc[share >= INSIDE_SHARE]


def build_districts(
    adm1: gpd.GeoDataFrame, adm2: gpd.GeoDataFrame, table: list[District], source: str
) -> gpd.GeoDataFrame:
    """The districts layer: one feature per table entry, with its attributes and area.

    Raises BuildError naming every unexpected or missing district.
    """
    selected = select_kp_polygons(adm1, adm2)
    found = set(selected["shapeName"])
    expected = {d.source_name for d in table}
    problems = []
    if unexpected := sorted(found - expected):
        problems.append(f"unexpected districts inside KP: {', '.join(unexpected)}")
    if missing := sorted(expected - found):
        problems.append(f"expected districts not found inside KP: {', '.join(missing)}")
    if len(selected) != len(found):
        problems.append("a district name appears on more than one ADM2 polygon")
    if problems:
        raise BuildError("; ".join(problems) + " (see data/districts.toml)")

    by_name = selected.set_index("shapeName")
    rows = []
    for d in sorted(table, key=lambda d: d.id):
        rows.append(
            {
                "id": d.id,
                "name": d.name,
                "aliases": sorted({*d.aliases, *d.successors} - {d.name}),
                "successors": list(d.successors),
                "former_fata": d.former_fata,
                "frontier_region": d.frontier_region,
                "source": source,
                "source_shape_id": by_name.loc[d.source_name, "shapeID"],
                "geometry": shapely.make_valid(by_name.loc[d.source_name, "geometry"]),
            }
        )
    districts = gpd.GeoDataFrame(rows, crs="EPSG:4326")
    districts["area_km2"] = (districts.to_crs(EQUAL_AREA_CRS).area / 1e6).round(1)
    return districts


def shared_border_problems(districts: gpd.GeoDataFrame, tolerance_km2: float = 0.01) -> list[str]:
    """Gaps and overlaps between neighbouring districts, as messages (empty when clean).

    A gap is a hole in the union of all districts; an overlap is a pair of districts whose
    intersection has area. Both are measured on the equal-area projection and reported above
    `tolerance_km2`, so floating-point dust on a shared edge does not count.
    """
    projected = districts.to_crs(EQUAL_AREA_CRS).set_index("id").geometry
    problems = []
    union = shapely.union_all(projected.values)
    for polygon in shapely.get_parts(union):
        for ring in polygon.interiors:
            area = shapely.Polygon(ring).area / 1e6
            if area > tolerance_km2:
                problems.append(f"gap of {area:.3f} km² between districts near {ring.centroid}")
    tree = shapely.STRtree(projected.values)
    left, right = tree.query(projected.values, predicate="intersects")
    for i, j in zip(left, right, strict=True):
        if i < j:
            area = projected.iloc[i].intersection(projected.iloc[j]).area / 1e6
            if area > tolerance_km2:
                a, b = projected.index[i], projected.index[j]
                problems.append(f"districts {a} and {b} overlap by {area:.3f} km²")
    return problems
