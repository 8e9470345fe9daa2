"""Town labels for the basemap: which GeoNames towns it names, from which zoom, and where each
label fits without covering another.

    towns = read_towns(store.layer("districts").geometries())   # once per store
    labels = place_labels(candidates, z=9, measure=text_box)  # once per zoom

The towns are the GeoNames populated places (cities500) inside
KP, and the cities just outside it that a reader finds KP by (Islamabad, Rawalpindi, Attock,
Mianwali, ...: NEAR_MIN_POPULATION people or more within NEAR_KM of a district). A district's
headquarters (the `headquarters` GeoNames id in data/districts.toml) is named from HQ_MINZOOM
whatever its population, since GeoNames gives some seats none (Parachinar, Nowshera: 0); other
towns start at a zoom that falls with their population (POPULATION_ZOOMS). Names are GeoNames',
or the gazetteer's authored spelling where data/places.toml gives one ("Alpuri", not "Alpurai").

Labels are placed greedily in priority order at each zoom over the whole map, not per tile, so a
label that crosses a tile edge is drawn (or left out) alike in both tiles. A town's label goes
right of its dot, else left, above or below; a town whose dot or label would touch one already
placed is left out at that zoom (it comes back further in).
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import Transformer

from geo.crs import KP_TMERC, transform_geometry
from geo.districts import District, read_district_table
from geo.errors import BuildError
from geo.geonames import ATTRIBUTION as GEONAMES_ATTRIBUTION
from geo.geonames import COUNTRY_CODE, read_geonames, read_places

# What the town labels credit: the same entry the attacks layer's manifest gives for GeoNames,
# so an attribution that lists both names GeoNames once.
SOURCE = {"name": "GeoNames", "licence": "CC BY 4.0", "attribution": GEONAMES_ATTRIBUTION}

HQ_MINZOOM = 7
# (population at least, first zoom): at zoom 8 a tile is ~150 km across and holds a handful of
# cities; by zoom 11 (~20 km) there is room for every place GeoNames lists.
POPULATION_ZOOMS = ((500_000, 7), (100_000, 8), (20_000, 9), (5_000, 10), (0, 11))
FIRST_ZOOM = min(HQ_MINZOOM, *(zoom for _, zoom in POPULATION_ZOOMS))  # no town is named before
NEAR_KM = 25
NEAR_MIN_POPULATION = 100_000

# Placement, in 256-px pixels: the gap between a dot and its text, and the clear space kept
# around every label so two never touch.
GAP = 4
PADDING = 2
# (Pillow text anchor, dx, dy) of a town's text relative to its dot, in order of preference.
TOWN_POSITIONS = (("lm", GAP, 0), ("rm", -GAP, 0), ("md", 0, -GAP), ("ma", 0, GAP))

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


@dataclass(frozen=True)
class Town:
    name: str
    lon: float
    lat: float
    population: int  # GeoNames' figure; 0 where it gives none
    geonameid: int
    district_headquarters: bool
    min_zoom: int

    def properties(self) -> dict[str, str | int | bool]:
        """What an MVT `places` feature carries."""
        return {
            "name": self.name,
            "population": self.population,
            "geonameid": self.geonameid,
            "district_headquarters": self.district_headquarters,
            "min_zoom": self.min_zoom,
        }


def min_zoom(population: int, headquarters: bool = False) -> int:
    """The first zoom a town is named at.

    >>> min_zoom(150_000), min_zoom(2_223), min_zoom(2_223, headquarters=True)
    (8, 11, 7)
    """
    first = next(zoom for least, zoom in POPULATION_ZOOMS if population >= least)
    return min(first, HQ_MINZOOM) if headquarters else first


def read_towns(
    districts: Sequence[shapely.Geometry] | np.ndarray,
    table: Iterable[District] | None = None,
    records: Iterable[Mapping] | None = None,
    authored: Iterable[Mapping] | None = None,
) -> list[Town]:
    """The towns the basemap names, in label priority: headquarters, then by population.

    `districts` are the district polygons (longitude/latitude); the rest default to the district
    table, GeoNames (cities500, Pakistan) and data/places.toml. A headquarters id that GeoNames
    does not hold is a BuildError naming the district.
    """
    table = read_district_table() if table is None else table
    records = read_geonames() if records is None else records
    authored = read_places() if authored is None else authored
    by_id = {int(r["geonameid"]): r for r in records}
    seats = {d.headquarters: d.id for d in table if d.headquarters}
    missing = [f"{district} ({gid})" for gid, district in seats.items() if gid not in by_id]
    if missing:
        raise BuildError(
            f"data/districts.toml: headquarters not among GeoNames' places in {COUNTRY_CODE} "
            f"(cities500): {', '.join(missing)}"
        )
    spelling = {int(e["geonameid"]): e["name"] for e in authored if {"geonameid", "name"} <= set(e)}
    ids = list(by_id)
    points = shapely.points([(by_id[i]["longitude"], by_id[i]["latitude"]) for i in ids])
    kp = shapely.union_all(np.asarray(districts, dtype=object))
    to_m = Transformer.from_crs("EPSG:4326", KP_TMERC, always_xy=True)
    near = shapely.dwithin(
        transform_geometry(kp, to_m), transform_geometry(points, to_m), NEAR_KM * 1000
    )
    inside = shapely.covers(kp, points)
    towns = []
    for gid, point_inside, point_near in zip(ids, inside, near, strict=True):
        record = by_id[gid]
        population = int(record.get("population") or 0)
        seat = gid in seats
        if seat or point_inside or (point_near and population >= NEAR_MIN_POPULATION):
            towns.append(
                Town(
                    name=spelling.get(gid, record["name"]),
                    lon=float(record["longitude"]),
                    lat=float(record["latitude"]),
                    population=population,
                    geonameid=gid,
                    district_headquarters=seat,
                    min_zoom=min_zoom(population, seat),
                )
            )
    return sorted(towns, key=lambda t: (not t.district_headquarters, -t.population, t.name))


@dataclass(frozen=True)
class Candidate:
    """Something to label: a point (world coordinates, 0..1) and its text; a town has a dot of
    `radius` pixels, a district name (radius 0) is centred on its point."""

    u: float
    v: float
    text: str
    radius: float = 0


@dataclass(frozen=True)
class Label:
    """A placed label: its point, where its text goes (a Pillow anchor, offset in pixels from
    the point) and the box it takes, in pixels of the whole map at its zoom."""

    u: float
    v: float
    text: str
    anchor: str
    dx: float
    dy: float
    radius: float
    box: Box


def place_labels(
    candidates: Sequence[Candidate], z: int, measure: Callable[[str, str], Box]
) -> list[Label]:
    """The candidates whose labels fit at zoom z, taken in order (the first have priority).

    `measure(text, anchor)` is the text's box in pixels around its anchor point (halo included).
    """
    size = 256 * 2**z
    taken = np.empty((len(candidates), 4))  # the boxes placed so far, one a row
    placed: list[Label] = []
    for c in candidates:
        x, y = c.u * size, c.v * size
        positions = TOWN_POSITIONS if c.radius else (("mm", 0, 0),)
        for anchor, dx, dy in positions:
            x0, y0, x1, y1 = measure(c.text, anchor)
            # the text, and the dot (a square of the radius around the point), padded
            box = (
                min(x + dx + x0, x - c.radius) - PADDING,
                min(y + dy + y0, y - c.radius) - PADDING,
                max(x + dx + x1, x + c.radius) + PADDING,
                max(y + dy + y1, y + c.radius) + PADDING,
            )
            others = taken[: len(placed)]
            overlaps = (
                (others[:, 0] < box[2])
                & (box[0] < others[:, 2])
                & (others[:, 1] < box[3])
                & (box[1] < others[:, 3])
            )
            if not overlaps.any():
                taken[len(placed)] = box
                placed.append(Label(c.u, c.v, c.text, anchor, dx, dy, c.radius, box))
                break
    return placed
