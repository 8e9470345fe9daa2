"""XYZ map tiles from the store: Mapbox Vector Tiles (MVT 2.1) and PNG, plus their TileJSON.

    tiler = Tiler(store)
    tile = parse_tile("7", "89", "50")                                 # Tile(z=7, x=89, y=50)
    tiler.tile("attacks", tile, "mvt", filters={"actor": ["ISKP"]})   # -> bytes
    tiler.tile("basemap", tile, "png")
    tile_bounds(*tile)                           # (west, south, east, north) in lon/lat

Tiles use the Web Mercator XYZ grid (EPSG:3857, y counted from the north), zoom 0 to MAX_ZOOM.
Internally every position is a "world" coordinate: Web Mercator scaled to 0..1 on both axes, y
down, so tile (z, x, y) covers [x, x + 1] / 2**z by [y, y + 1] / 2**z.

Tile layers (TILE_LAYERS) and the MVT layers each tile holds:
    attacks      attacks       grid clusters up to CLUSTER_MAXZOOM, then one point per attack
    districts    districts     polygons with their attack and casualty totals
    tehsils      tehsils       the same for KP's 153 tehsils
    durand_line  durand_line   the border, by province
    basemap      countries, tehsils (from zoom 9), districts, district_labels, places (towns,
                 from zoom 7: see geo.tiles_labels)   (the offline basemap)

An empty tile is still a tile: zero bytes of MVT (a valid tile with no layers) or a fully
transparent PNG, so a disk cache, a CDN or a PMTiles archive treat every tile alike.

Attacks are the only layer that takes the map's filters (see geo.query): the other layers
ignore them, and the districts' and tehsils' totals are over all attacks in the store.

This module picks what each tile shows; geo.tiles_mvt encodes it, geo.tiles_png draws it, and
geo.tiles_labels chooses the towns and where the basemap's labels fit.
"""

import hashlib
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import mercantile
import numpy as np
import shapely
from shapely.ops import polylabel

from geo import tiles_labels
from geo.errors import InvalidTile, LayerNotFound
from geo.licences import RowPolicy
from geo.store import Store
from geo.tiles_labels import Candidate, Label, Town, place_labels, read_towns
from geo.tiles_mvt import EXTENT, encode_vector_tile
from geo.tiles_png import (
    ATTACK,
    ATTACK_EDGE,
    BORDER,
    COUNTRY_EDGE,
    DISTRICT_EDGE,
    DISTRICT_OUTLINE,
    HALO,
    LAND,
    TEHSIL_EDGE,
    TEHSIL_FILL_ALPHA,
    TEHSIL_OUTLINE,
    TILE_SIZE,
    TOWN,
    TOWN_LABEL,
    Canvas,
    choropleth_colour,
    circle_radius,
    empty_png,
    text_box,
)

MIN_ZOOM = 0
MAX_ZOOM = 14
MVT_BUFFER = 64 / EXTENT  # features this far outside a tile (a fraction of it) are kept
# Bump when the tiles' content or style changes, so caches keyed on it start afresh.
TILES_VERSION = "2"

TILE_LAYERS: dict[str, tuple[str, ...]] = {
    "attacks": ("attacks",),
    "districts": ("districts",),
    "tehsils": ("tehsils",),
    "durand_line": ("durand_line",),
    "basemap": ("countries", "tehsils", "districts", "district_labels", "places"),
}
# The vector layers a PMTiles export holds: every MVT layer once, in drawing order.
EXPORT_LAYERS = (
    "countries",
    "tehsils",
    "districts",
    "district_labels",
    "places",
    "durand_line",
    "attacks",
)
# URL suffix -> (MIME type, PNG scale or None for MVT)
FORMATS: dict[str, tuple[str, int | None]] = {
    "mvt": ("application/vnd.mapbox-vector-tile", None),
    "png": ("image/png", 1),
    "@2x.png": ("image/png", 2),
}

# Attacks are grid-clustered at zooms up to CLUSTER_MAXZOOM: 2**GRID_BITS cells a tile side, so
# a tile holds at most 1,024 clusters. Above it each attack is a point, unless a tile would hold
# more than MAX_POINTS of them, when that tile is clustered too (its features say cluster=true).
CLUSTER_MAXZOOM = 11
GRID_BITS = 5
MAX_POINTS = 4096
# District names are drawn on PNG basemap tiles from this zoom, for districts big enough there.
LABEL_MINZOOM = 7
LABEL_MIN_AREA_PX = 1600
# The basemap outlines tehsils from this zoom: below it (a tehsil is then ~10 px across) they
# would be a tangle over the districts.
BASEMAP_TEHSIL_MINZOOM = 9
# Town dots, in 256-px pixels: a district headquarters a little larger than other towns.
HQ_DOT = 3.0
TOWN_DOT = 2.0
# PNG style of the choropleth layers: (fill opacity factor, outline colour, outline width).
AREA_STYLES = {
    "districts": (1.0, DISTRICT_OUTLINE, 1.0),
    "tehsils": (TEHSIL_FILL_ALPHA, TEHSIL_OUTLINE, 0.5),
}

# Morton (Z-order) codes of positions at 2**ORDER cells a side: every tile at every zoom, and
# every cluster cell, is one contiguous run of the codes, so a sorted array answers a tile with
# two binary searches.
ORDER = 24
MAX_LAT = 85.0511287798  # Web Mercator's limit

_INTEGER = re.compile(r"^[0-9]{1,10}$")


class Tile(NamedTuple):
    z: int
    x: int
    y: int


def _shown(value: Any) -> str:
    """A short copy of a user's value, safe in any message (markup becomes "?")."""
    return "'" + re.sub(r"[^A-Za-z0-9_.,@ -]", "?", str(value)[:40]) + "'"


def parse_tile(z: Any, x: Any, y: Any) -> Tile:
    """A checked tile address from URL parts; InvalidTile (400) says what is allowed.

    >>> parse_tile("3", "4", "2")
    Tile(z=3, x=4, y=2)
    """
    values = []
    for name, value in (("z", z), ("x", x), ("y", y)):
        text = str(value)
        if not _INTEGER.match(text):
            raise InvalidTile(f"{name} must be a whole number >= 0, not {_shown(text[:20])}")
        values.append(int(text))
    z, x, y = values
    if z > MAX_ZOOM:
        raise InvalidTile(f"zoom {z} is out of range: tiles go from zoom {MIN_ZOOM} to {MAX_ZOOM}")
    if x >= 2**z or y >= 2**z:
        raise InvalidTile(f"at zoom {z}, x and y must be between 0 and {2**z - 1}: got {x}/{y}")
    return Tile(z, x, y)


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a tile in longitude/latitude (WGS 84), from mercantile.

    >>> tile_bounds(0, 0, 0)
    (-180.0, -85.0511287798066, 180.0, 85.0511287798066)
    """
    return tuple(mercantile.bounds(x, y, z))


def world_xy(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates (0..1, y down) of longitudes/latitudes; latitude clamped to +-85.05."""
    lon = np.asarray(lon, dtype=float)
    lat = np.clip(np.asarray(lat, dtype=float), -MAX_LAT, MAX_LAT)
    u = (lon + 180) / 360
    v = (1 - np.log(np.tan(np.radians(lat)) + 1 / np.cos(np.radians(lat))) / math.pi) / 2
    return u, v


def tiles_in_bounds(bounds: Sequence[float], z: int) -> Iterator[Tile]:
    """Every tile at zoom z whose area overlaps (west, south, east, north), from mercantile: a
    tile's own bounds give that tile alone (its edges touch, not overlap, its neighbours)."""
    west, south, east, north = bounds
    for tile in mercantile.tiles(west, south, east, north, [z]):
        yield Tile(tile.z, tile.x, tile.y)


def parse_zooms(text: str) -> range:
    """A zoom range from text: "0-10" is range(0, 11), "5" range(5, 6); InvalidTile outside
    MIN_ZOOM..MAX_ZOOM."""
    match = re.fullmatch(r"\s*(\d{1,2})\s*(?:-\s*(\d{1,2})\s*)?", text)
    if not match:
        raise InvalidTile(f"zoom range {text[:20]!r} must look like 0-10 or 7")
    first = int(match[1])
    last = int(match[2]) if match[2] else first
    if not MIN_ZOOM <= first <= last <= MAX_ZOOM:
        raise InvalidTile(f"zoom range {text!r} must lie within {MIN_ZOOM}-{MAX_ZOOM}, low to high")
    return range(first, last + 1)


# -- attacks: a Morton-sorted point index, clustered per zoom ------------------------------------


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Put a zero bit between each bit of v (up to 32 bits): the half of a Morton code."""
    v = v.astype(np.uint64) & np.uint64(0xFFFFFFFF)
    for shift, mask in (
        (16, 0x0000FFFF0000FFFF),
        (8, 0x00FF00FF00FF00FF),
        (4, 0x0F0F0F0F0F0F0F0F),
        (2, 0x3333333333333333),
        (1, 0x5555555555555555),
    ):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def _morton(ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    return _spread_bits(ix) | (_spread_bits(iy) << np.uint64(1))


@dataclass
class _Points:
    """Points (or cluster centroids) sorted by Morton code, with what a tile shows of them."""

    codes: np.ndarray  # uint64 at ORDER bits a side
    u: np.ndarray
    v: np.ndarray
    count: np.ndarray  # attacks each stands for (1 for a point)
    killed: np.ndarray  # killed_best summed; an attack that reports none counts 0
    position: np.ndarray  # the attack's position in the store layer; -1 for a cluster
    # True for an attack whose dataset's terms allow it only in aggregates (geo.licences);
    # always False for a cluster, which is an aggregate.
    withheld: np.ndarray

    def __len__(self) -> int:
        return len(self.codes)

    def take(self, keep: np.ndarray) -> "_Points":
        return _Points(
            self.codes[keep],
            self.u[keep],
            self.v[keep],
            self.count[keep],
            self.killed[keep],
            self.position[keep],
            self.withheld[keep],
        )

    @staticmethod
    def join(parts: Sequence["_Points"]) -> "_Points":
        """The points of several parts, one after the other (not re-sorted)."""
        return _Points(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in _Points.__dataclass_fields__)
        )

    def in_tile(self, z: int, x: int, y: int, buffer: float) -> np.ndarray:
        """Indices of the points in tile z/x/y or within `buffer` (a fraction) of it."""
        n = 2**z
        shift = np.uint64(2 * (ORDER - z))
        steps = (-1, 0, 1) if buffer > 0 else (0,)
        runs = []
        for dy in steps:
            for dx in steps:
                tx, ty = x + dx, y + dy
                if 0 <= tx < n and 0 <= ty < n:
                    prefix = _morton(np.array([tx]), np.array([ty]))[0]
                    lo, hi = np.searchsorted(
                        self.codes, [prefix << shift, (prefix + np.uint64(1)) << shift]
                    )
                    if hi > lo:
                        runs.append(np.arange(lo, hi))
        if not runs:
            return np.empty(0, dtype=np.int64)
        idx = np.concatenate(runs) if len(runs) > 1 else runs[0]
        if buffer > 0:
            lu = self.u[idx] * n - x
            lv = self.v[idx] * n - y
            inside = (lu >= -buffer) & (lu <= 1 + buffer) & (lv >= -buffer) & (lv <= 1 + buffer)
            idx = idx[inside]
        return idx

    def clustered(self, z: int) -> "_Points":
        """The points grouped into cells of 2**GRID_BITS a tile side at zoom z: each cell's
        count, summed deaths, and the centroid of its attacks."""
        shift = np.uint64(2 * (ORDER - z - GRID_BITS))
        keys = self.codes >> shift
        if not len(keys):
            return self
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        count = np.add.reduceat(self.count, starts)
        return _Points(
            codes=keys[starts] << shift,
            u=np.add.reduceat(self.u * self.count, starts) / count,
            v=np.add.reduceat(self.v * self.count, starts) / count,
            count=count,
            killed=np.add.reduceat(self.killed, starts),
            position=np.full(len(starts), -1, dtype=np.int64),
            withheld=np.zeros(len(starts), dtype=bool),
        )


class _Selection:
    """The attacks that one set of filters selects, and their clusters per zoom (made lazily)."""

    def __init__(self, points: _Points):
        self.points = points
        self._clusters: dict[int, _Points] = {}
        self._withheld: dict[int, _Points] = {}
        self._lock = threading.Lock()

    def withheld_clusters(self, z: int) -> _Points:
        """Clusters of only the withheld attacks at zoom z: what a point tile shows of them."""
        with self._lock:
            if z not in self._withheld:
                self._withheld[z] = self.points.take(self.points.withheld).clustered(z)
            return self._withheld[z]

    def clusters(self, z: int) -> _Points:
        with self._lock:
            if z not in self._clusters:
                if z <= CLUSTER_MAXZOOM:
                    # Every clustered zoom at once, each from the next finer one: one pass over
                    # the points, then over ever fewer cells (~50 ms for a million attacks).
                    finer = self.points
                    for level in range(CLUSTER_MAXZOOM, -1, -1):
                        finer = self._clusters[level] = finer.clustered(level)
                else:  # a crowded tile above CLUSTER_MAXZOOM (see MAX_POINTS)
                    self._clusters[z] = self.points.clustered(z)
            return self._clusters[z]


def filter_key(filters: Mapping[str, Any] | None) -> str:
    """A canonical text of a filter dict (store.query kwargs), for cache keys.

    >>> filter_key({"actor": ["TTP", "ISKP"], "start": "2024"})
    'actor=ISKP,TTP&start=2024'
    """
    if not filters:
        return ""
    parts = []
    for key in sorted(filters):
        value = filters[key]
        if isinstance(value, list | tuple | set | frozenset):
            text = ",".join(sorted(str(v) for v in value))
        else:
            text = str(value)
        parts.append(f"{key}={text}")
    return "&".join(parts)


class _AttackIndex:
    """Every attack in Morton order with its deaths; selections by filters are cached (LRU)."""

    SELECTIONS = 8

    def __init__(self, store: Store, killed: np.ndarray, withheld: np.ndarray | None = None):
        layer = store.layer("attacks")
        if withheld is None:
            withheld = np.zeros(len(layer), dtype=bool)
        xy = shapely.get_coordinates(layer.geometries)
        u, v = world_xy(xy[:, 0], xy[:, 1])
        cells = 2**ORDER
        codes = _morton(
            np.clip((u * cells).astype(np.int64), 0, cells - 1),
            np.clip((v * cells).astype(np.int64), 0, cells - 1),
        )
        order = np.argsort(codes, kind="stable")
        self.store = store
        self.all = _Selection(
            _Points(
                codes=codes[order],
                u=u[order],
                v=v[order],
                count=np.ones(len(order), dtype=np.int64),
                killed=killed[order].astype(np.int64),
                position=order.astype(np.int64),
                withheld=withheld[order],
            )
        )
        self.all.clusters(0)  # pre-aggregate every zoom now rather than on a first tile
        self._selections: OrderedDict[str, _Selection] = OrderedDict()
        self._lock = threading.Lock()

    def selection(self, filters: Mapping[str, Any] | None) -> _Selection:
        key = filter_key(filters)
        if not key:
            return self.all
        with self._lock:
            if key in self._selections:
                self._selections.move_to_end(key)
                return self._selections[key]
        positions = self.store.select("attacks", **filters)
        wanted = np.zeros(len(self.all.points), dtype=bool)
        wanted[positions] = True
        selection = _Selection(self.all.points.take(wanted[self.all.points.position]))
        with self._lock:
            self._selections[key] = selection
            while len(self._selections) > self.SELECTIONS:
                self._selections.popitem(last=False)
        return selection


def attack_deaths(store: Store) -> np.ndarray:
    """killed_best of every attack in the store's order (0 where not reported)."""
    killed = store.layer("attacks").numbers["killed_best"]
    return np.nan_to_num(killed, nan=0.0).astype(np.int32)


# -- polygon and line layers -------------------------------------------------------------------


def _to_world(geometries: np.ndarray) -> np.ndarray:
    def project(coords: np.ndarray) -> np.ndarray:
        u, v = world_xy(coords[:, 0], coords[:, 1])
        return np.column_stack([u, v])

    return shapely.transform(geometries, project)


@dataclass
class _Shapes:
    """A polygon or line layer in world coordinates, simplified per zoom on first use."""

    geometries: np.ndarray
    properties: list[dict[str, Any]]
    _by_zoom: dict[int, tuple[np.ndarray, shapely.STRtree]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def at_zoom(self, z: int) -> tuple[np.ndarray, shapely.STRtree]:
        with self._lock:
            if z not in self._by_zoom:
                # An eighth of a pixel: finer than an MVT grid step at 4096 a tile is 1/16 px.
                tolerance = 1 / (8 * TILE_SIZE * 2**z)
                simple = shapely.simplify(self.geometries, tolerance, preserve_topology=True)
                self._by_zoom[z] = (simple, shapely.STRtree(simple))
            return self._by_zoom[z]

    def in_tile(self, z: int, x: int, y: int, buffer: float) -> list[tuple[Any, dict[str, Any]]]:
        """(geometry in tile units 0..1, properties) of each feature in the buffered tile,
        clipped to it (the clip edges lie in the buffer, outside what is drawn)."""
        geometries, tree = self.at_zoom(z)
        n = 2**z
        box = ((x - buffer) / n, (y - buffer) / n, (x + 1 + buffer) / n, (y + 1 + buffer) / n)
        hits = np.sort(tree.query(shapely.box(*box), predicate="intersects"))
        if not len(hits):
            return []
        clipped = shapely.clip_by_rect(geometries[hits], *box)
        local = shapely.transform(clipped, lambda c: c * n - np.array([x, y]))
        return [
            (geom, self.properties[i])
            for geom, i in zip(local, hits, strict=True)
            if not geom.is_empty
        ]


_SCALARS = frozenset((str, int, float, bool))


def _pick(props: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The listed properties that an MVT can carry (no nulls, lists or objects)."""
    return {k: v for k in keys if type(v := props.get(k)) in _SCALARS}


# Properties each MVT layer carries, and what they mean (for TileJSON's vector_layers).
FIELDS: dict[str, dict[str, str]] = {
    "attacks": {
        "cluster": "Boolean: true for a grid cluster of attacks, false for one attack",
        "count": "Number: attacks the feature stands for (1 for one attack)",
        "killed": "Number: killed (best figure) summed; an attack reporting none counts 0",
        "id": "String: attack id (points only; the full record is at the API)",
        "date": "String: YYYY-MM-DD, YYYY-MM or YYYY (points only)",
        "date_end": "String: end of a date range (points only, when a range)",
        "date_precision": "String: day, month or range (points only)",
        "location": "String: place name as reported (points only)",
        "district": "String: district id (points only)",
        "category": "String: event category, e.g. militant attack, armed clash (points only)",
        "actor": "String: perpetrator group, where the source names one (points only)",
        "claimed": "Boolean: whether the group claimed it (points only, when reported)",
        "event_type": "String: attack type (points only)",
        "target": "String: target (points only)",
        "killed_best": "Number: killed, best figure (points only, when reported)",
        "killed_low": "Number: killed, lowest reported (points only, when reported)",
        "killed_high": "Number: killed, highest reported (points only, when reported)",
        "injured_low": "Number: injured, lowest reported (points only, when reported)",
        "injured_high": "Number: injured, highest reported (points only, when reported)",
        "distance_to_border_km": "Number: geodesic distance to the Durand Line (points only)",
        "geo_precision": "Number: 1 the place, 2 near it, 3 only the district (points only)",
        "former_fata": "Boolean: in a former FATA district (points only)",
        "origin": "String: authored, acled, gtd, ucdp or synthetic (points only)",
    },
    "districts": {
        "id": "String: district id",
        "name": "String: district name",
        "former_fata": "Boolean: a former FATA agency merged in 2018",
        "frontier_region": "String: the former Frontier Region it absorbed, if any",
        "area_km2": "Number: area in km2",
        "attacks": "Number: attacks in the store in this district (all, unfiltered)",
        "killed_low": "Number: killed, sum of lowest figures",
        "killed_best": "Number: killed, sum of best figures",
        "killed_high": "Number: killed, sum of highest figures",
        "injured_low": "Number: injured, sum of lowest figures",
        "injured_high": "Number: injured, sum of highest figures",
    },
    "tehsils": {
        "id": "String: tehsil id",
        "pcode": "String: the COD's ADM3 P-code",
        "name": "String: tehsil name",
        "district": "String: id of its district",
        "district_pcode": "String: its district's ADM2 P-code",
        "former_frontier_region": "Boolean: the tehsil was a Frontier Region until 2018",
        "frontier_region": "String: the Frontier Region it was, if any",
        "area_km2": "Number: area in km2",
        "attacks": "Number: attacks in the store placed in this tehsil or nearer (geo_precision "
        "1 or 2; all, unfiltered)",
        "killed_low": "Number: killed, sum of lowest figures",
        "killed_best": "Number: killed, sum of best figures",
        "killed_high": "Number: killed, sum of highest figures",
        "injured_low": "Number: injured, sum of lowest figures",
        "injured_high": "Number: injured, sum of highest figures",
    },
    "durand_line": {
        "id": "String: stretch id",
        "name": "String: name",
        "province": "String: the Pakistani province this stretch borders",
        "measured_length_km": "Number: geodesic length of this stretch",
        "reported_length_km": "Number: the whole border's reported length (cited)",
    },
    "countries": {"id": "String: country id", "name": "String: country name"},
    "district_labels": {"id": "String: district id", "name": "String: district name"},
    "places": {
        "name": "String: town name (GeoNames, or the gazetteer's spelling)",
        "population": "Number: population as GeoNames gives it (0 where it gives none)",
        "geonameid": "Number: GeoNames id",
        "district_headquarters": "Boolean: the seat of a KP district (data/districts.toml)",
        "min_zoom": "Number: the zoom from which the tiles hold it",
    },
}
_POINT_FIELDS = tuple(k for k in FIELDS["attacks"] if k not in ("cluster", "count", "killed"))


def _polylabel(geometry: Any) -> Any:
    """A point well inside the (largest part of the) polygon, where its name goes."""
    parts = getattr(geometry, "geoms", [geometry])
    largest = max(parts, key=lambda p: p.area)
    try:
        return polylabel(largest, tolerance=largest.length / 1000 or 1e-9)
    except Exception:  # noqa: BLE001 - a degenerate polygon: fall back to any inside point
        return largest.representative_point()


# -- the tiler ----------------------------------------------------------------------------------


class Tiler:
    """Makes the tiles of one store. Indexes are built on first use and kept (thread-safe)."""

    def __init__(self, store: Store, policy: RowPolicy | None = None):
        """`policy` says whose rows the tiles may show one by one (geo.licences); by default no
        dataset is licensed, so a caller that forgets it hands out nothing it may not."""
        self.store = store
        self.policy = policy if policy is not None else RowPolicy.from_setting("")
        self._attacks: _AttackIndex | None = None
        self._shapes: dict[str, _Shapes] = {}
        self._labels: tuple[np.ndarray, np.ndarray, list[dict[str, Any]], np.ndarray] | None = None
        self._towns: tuple[list[Town], np.ndarray, np.ndarray, np.ndarray] | None = None
        self._layouts: dict[int, list[Label]] = {}
        self._lock = threading.Lock()

    # indexes

    def attack_index(self) -> _AttackIndex:
        with self._lock:
            if self._attacks is None:
                withheld = self.policy.withheld_mask(self.store.layer("attacks"))
                self._attacks = _AttackIndex(self.store, attack_deaths(self.store), withheld)
            return self._attacks

    def _shape_layer(self, name: str) -> _Shapes:
        with self._lock:
            if name not in self._shapes:
                layer = self.store.layer(name)
                features = self.store.query(name)
                keys = tuple(FIELDS[name])
                self._shapes[name] = _Shapes(
                    geometries=_to_world(layer.geometries),
                    properties=[_pick(f["properties"], keys) for f in features],
                )
            return self._shapes[name]

    def _district_labels(self) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]], np.ndarray]:
        """Label points (u, v), their properties, and each district's area in world units."""
        districts = self._shape_layer("districts")
        with self._lock:
            if self._labels is None:
                points = [_polylabel(g) for g in districts.geometries]
                self._labels = (
                    np.array([p.x for p in points]),
                    np.array([p.y for p in points]),
                    [{"id": p["id"], "name": p["name"]} for p in districts.properties],
                    shapely.area(districts.geometries),
                )
            return self._labels

    def towns(self) -> tuple[list[Town], np.ndarray, np.ndarray, np.ndarray]:
        """The basemap's towns (geo.tiles_labels) in label priority, their world coordinates
        (u, v) and min_zoom, read once per store."""
        districts = self.store.layer("districts").geometries
        with self._lock:
            if self._towns is None:
                towns = read_towns(districts)
                u, v = world_xy([t.lon for t in towns], [t.lat for t in towns])
                self._towns = (towns, u, v, np.array([t.min_zoom for t in towns], dtype=int))
            return self._towns

    def cache_version(self) -> str:
        """What this store's tiles depend on besides its layers (see geo.tilecache.store_version):
        the tile code, and the towns, which come from data/districts.toml and GeoNames."""
        # A disk cache of tiles made under other licences must not be served under these.
        digest = hashlib.sha256(repr((self.towns()[0], self.policy.key)).encode()).hexdigest()[:12]
        return f"{TILES_VERSION}-{digest}"

    def label_layout(self, z: int) -> list[Label]:
        """The basemap's PNG labels at zoom z, placed over the whole map once (see
        geo.tiles_labels): district headquarters first, then district names (largest district
        first), then the other towns by population."""
        with self._lock:
            if z in self._layouts:
                return self._layouts[z]
        towns, u, v, zooms = self.towns()
        lu, lv, props, areas = self._district_labels()

        def town(i: int) -> Candidate:
            radius = HQ_DOT if towns[i].district_headquarters else TOWN_DOT
            return Candidate(float(u[i]), float(v[i]), towns[i].name, radius)

        shown = np.flatnonzero(zooms <= z)
        seats = [town(i) for i in shown if towns[i].district_headquarters]
        others = [town(i) for i in shown if not towns[i].district_headquarters]
        names = []
        if z >= LABEL_MINZOOM:
            big = areas * (2**z * TILE_SIZE) ** 2 >= LABEL_MIN_AREA_PX
            names = [
                Candidate(float(lu[i]), float(lv[i]), props[i]["name"])
                for i in np.argsort(-areas, kind="stable")
                if big[i]
            ]
        layout = place_labels(seats + names + others, z, text_box)
        with self._lock:
            return self._layouts.setdefault(z, layout)

    # features per MVT layer, in tile units

    def features(
        self,
        name: str,
        tile: Tile,
        buffer: float = MVT_BUFFER,
        filters: Mapping[str, Any] | None = None,
    ) -> list[tuple[Any, dict[str, Any]]]:
        """(geometry in tile units 0..1, properties) of MVT layer `name` in a tile."""
        if name == "attacks":
            return self._attack_features(tile, buffer, filters)
        if name == "district_labels":
            return [
                (shapely.Point(lx, ly), props) for lx, ly, props, _ in self._labels_in(tile, buffer)
            ]
        if name == "places":
            return self._places_in(tile, buffer)
        return self._shape_layer(name).in_tile(*tile, buffer)

    def _places_in(self, tile: Tile, buffer: float) -> list[tuple[Any, dict[str, Any]]]:
        """The towns named at this zoom (their min_zoom reached) in the tile or its buffer."""
        towns, u, v, zooms = self.towns()
        z, x, y = tile
        n = 2**z
        px, py = u * n - x, v * n - y
        inside = (px >= -buffer) & (px <= 1 + buffer) & (py >= -buffer) & (py <= 1 + buffer)
        return [
            (shapely.Point(px[i], py[i]), towns[i].properties())
            for i in np.flatnonzero(inside & (zooms <= z))
        ]

    def _attack_points(
        self, tile: Tile, buffer: float, filters: Mapping[str, Any] | None
    ) -> tuple[_Points, np.ndarray]:
        """The attack points or clusters a tile shows, and their indices in it.

        Above CLUSTER_MAXZOOM a tile shows each attack as a point with its attributes, except the
        attacks whose dataset's terms allow only aggregates (geo.licences): those stay clusters
        at every zoom, counted and summed with the others but never one attack's record.
        """
        selection = self.attack_index().selection(filters)
        z, x, y = tile
        if z > CLUSTER_MAXZOOM:
            points = selection.points
            idx = points.in_tile(z, x, y, buffer)
            hidden = points.withheld[idx]
            if hidden.any() and len(idx) - hidden.sum() <= MAX_POINTS:
                clusters = selection.withheld_clusters(z)
                shown = _Points.join(
                    [points.take(idx[~hidden]), clusters.take(clusters.in_tile(z, x, y, buffer))]
                )
                return shown, np.arange(len(shown))
            if len(idx) <= MAX_POINTS:
                return points, idx
        clusters = selection.clusters(z)
        return clusters, clusters.in_tile(z, x, y, buffer)

    def _attack_features(
        self, tile: Tile, buffer: float, filters: Mapping[str, Any] | None
    ) -> list[tuple[Any, dict[str, Any]]]:
        points, idx = self._attack_points(tile, buffer, filters)
        z, x, y = tile
        n = 2**z
        local = np.column_stack([points.u[idx] * n - x, points.v[idx] * n - y])
        geometries = shapely.points(local) if len(idx) else []
        layer = self.store.layer("attacks")
        features = []
        for geometry, i in zip(geometries, idx.tolist(), strict=True):
            position = int(points.position[i])
            if position < 0:
                props = {"cluster": True}
            else:
                props = _pick(layer.feature_at(position)["properties"], _POINT_FIELDS)
                props["cluster"] = False
            props["count"] = int(points.count[i])
            props["killed"] = int(points.killed[i])
            features.append((geometry, props))
        return features

    def _labels_in(
        self, tile: Tile, buffer: float
    ) -> list[tuple[float, float, dict[str, Any], float]]:
        lu, lv, props, areas = self._district_labels()
        z, x, y = tile
        n = 2**z
        px, py = lu * n - x, lv * n - y
        inside = (px >= -buffer) & (px <= 1 + buffer) & (py >= -buffer) & (py <= 1 + buffer)
        # area in tile units squared (a whole tile is 1)
        return [
            (float(px[i]), float(py[i]), props[i], float(areas[i] * n * n))
            for i in np.flatnonzero(inside)
        ]

    # tiles

    def vector_tile(
        self, layer: str, tile: Tile, filters: Mapping[str, Any] | None = None
    ) -> bytes:
        """The MVT of a tile layer (TILE_LAYERS); b"" when the tile holds nothing."""
        names = [n for n in mvt_layers(layer) if tile.z >= layer_minzoom(layer, n)]
        return encode_vector_tile(
            [(name, self.features(name, tile, filters=filters)) for name in names]
        )

    def export_tile(self, tile: Tile) -> bytes:
        """One MVT holding every EXPORT_LAYERS layer (for a PMTiles archive)."""
        names = [n for n in EXPORT_LAYERS if tile.z >= layer_minzoom(None, n)]
        return encode_vector_tile([(name, self.features(name, tile)) for name in names])

    def raster_tile(
        self,
        layer: str,
        tile: Tile,
        scale: int = 1,
        filters: Mapping[str, Any] | None = None,
    ) -> bytes:
        """The PNG of a tile layer, 256 px (or 512 with scale=2); transparent where empty."""
        return render_png(self, layer, tile, scale, filters)

    def tile(
        self, layer: str, tile: Tile, fmt: str, filters: Mapping[str, Any] | None = None
    ) -> bytes:
        """A tile in one of FORMATS ("mvt", "png", "@2x.png")."""
        mvt_layers(layer)
        if fmt not in FORMATS:
            raise InvalidTile(f"tile format {fmt!r} is not one of: {', '.join(FORMATS)}")
        if layer != "attacks":
            filters = None  # only the attacks layer takes filters
        scale = FORMATS[fmt][1]
        if scale is None:
            return self.vector_tile(layer, tile, filters)
        return self.raster_tile(layer, tile, scale, filters)

    def is_empty(self, data: bytes, fmt: str) -> bool:
        scale = FORMATS[fmt][1]
        return data == (b"" if scale is None else empty_png(scale))


def layer_minzoom(layer: str | None, name: str) -> int:
    """The zoom MVT layer `name` starts at in tile layer `layer` (None: the PMTiles export, which
    holds the tehsils at every zoom, as the tehsils tile layer does)."""
    if name == "places":
        return tiles_labels.FIRST_ZOOM
    if name == "tehsils" and layer == "basemap":
        return BASEMAP_TEHSIL_MINZOOM
    return MIN_ZOOM


def mvt_layers(layer: str) -> tuple[str, ...]:
    """The MVT layers a tile layer holds; LayerNotFound (404) names the tile layers."""
    try:
        return TILE_LAYERS[layer]
    except KeyError:
        raise LayerNotFound(
            f"no tile layer {_shown(layer)}; the tile layers are: {', '.join(TILE_LAYERS)}"
        ) from None


def render_png(
    tiler: Tiler,
    layer: str,
    tile: Tile,
    scale: int = 1,
    filters: Mapping[str, Any] | None = None,
) -> bytes:
    """Draw a tile layer as a PNG of 256 * scale pixels (transparent where there is nothing)."""
    canvas = Canvas(scale)
    # Clip a few pixels outside the tile so that clip edges and line caps stay out of view.
    edge = 4 / TILE_SIZE
    if layer == "attacks":
        # Enough buffer for the largest circle whose centre lies in a neighbouring tile.
        points, idx = tiler._attack_points(tile, 11 / TILE_SIZE, filters)
        z, x, y = tile
        n = 2**z
        xy = np.column_stack([points.u[idx] * n - x, points.v[idx] * n - y])
        canvas.circles(xy, circle_radius(points.count[idx]), ATTACK, ATTACK_EDGE)
    elif layer in ("districts", "tehsils"):
        # Each layer's ramp runs to its own busiest area: tehsils count fewer attacks (only
        # those placed to the tehsil), so a shared scale would leave them all pale.
        features = tiler.features(layer, tile, edge)
        most = max((p.get("attacks", 0) for p in tiler._shape_layer(layer).properties), default=0)
        alpha, outline, width = AREA_STYLES[layer]
        canvas.polygons(
            [(g, choropleth_colour(p.get("attacks", 0), most, alpha)) for g, p in features],
            outline=outline,
            width=width,
        )
    elif layer == "durand_line":
        canvas.lines([g for g, _ in tiler.features("durand_line", tile, edge)], BORDER, 2.5)
    elif layer == "basemap":
        canvas.polygons([(g, LAND) for g, _ in tiler.features("countries", tile, edge)])
        if tile.z >= BASEMAP_TEHSIL_MINZOOM:
            canvas.polygons(
                [(g, None) for g, _ in tiler.features("tehsils", tile, edge)],
                outline=TEHSIL_EDGE,
                width=0.5,
            )
        canvas.polygons(
            [(g, None) for g, _ in tiler.features("districts", tile, edge)],
            outline=DISTRICT_EDGE,
        )
        canvas.polygons(
            [(g, None) for g, _ in tiler.features("countries", tile, edge)],
            outline=COUNTRY_EDGE,
            width=1.5,
        )
        _draw_labels(canvas, tiler.label_layout(tile.z), tile)
    else:
        mvt_layers(layer)
    return canvas.png()


def _draw_labels(canvas: Canvas, labels: list[Label], tile: Tile) -> None:
    """The placed labels whose box touches the tile: a label whose point lies in a neighbour
    tile is drawn too, so none is cut in half."""
    z, x, y = tile
    n = 2**z
    x0, y0 = x * TILE_SIZE, y * TILE_SIZE
    here = [
        label
        for label in labels
        if label.box[0] < x0 + TILE_SIZE
        and label.box[2] > x0
        and label.box[1] < y0 + TILE_SIZE
        and label.box[3] > y0
    ]

    def text(label: Label) -> tuple[float, float, str, str]:
        u, v = label.u * n - x + label.dx / TILE_SIZE, label.v * n - y + label.dy / TILE_SIZE
        return u, v, label.text, label.anchor

    towns = [label for label in here if label.radius]
    canvas.labels([text(label) for label in here if not label.radius])  # district names
    canvas.circles(
        np.array([(t.u * n - x, t.v * n - y) for t in towns]).reshape(-1, 2),
        np.array([t.radius for t in towns]),
        TOWN,
        HALO,
    )
    canvas.labels([text(label) for label in towns], TOWN_LABEL)


# -- TileJSON -----------------------------------------------------------------------------------


def layer_bounds(store: Store, layer: str) -> tuple[float, float, float, float]:
    """(west, south, east, north) of what a tile layer draws, from the store's manifest."""
    names = [n for n in mvt_layers(layer) if n not in ("district_labels", "places")]
    entries = [
        store.manifest["layers"][n]["bounds"] for n in names if n in store.manifest["layers"]
    ]
    entries = [b for b in entries if b]
    if not entries:
        return (-180.0, -MAX_LAT, 180.0, MAX_LAT)
    return (
        min(b[0] for b in entries),
        min(b[1] for b in entries),
        max(b[2] for b in entries),
        max(b[3] for b in entries),
    )


def attribution(store: Store, layers: Sequence[str]) -> str:
    """The sources' attributions of the data behind some MVT layers, each once: the store
    layers' (from its manifest; an attack dataset's short `credit`), and GeoNames for the
    towns, which are not a store layer."""
    seen: dict[str, None] = {}
    for name in layers:
        if name == "places":
            sources = [tiles_labels.SOURCE]
        else:
            entry = store.manifest["layers"].get("districts" if name == "district_labels" else name)
            sources = (entry or {}).get("sources", [])
        for source in sources:
            # an attack dataset's short credit: its whole attribution (with kpmap's changes) is
            # in the store's manifest, the downloads and the pages
            seen.setdefault(source.get("credit") or source["attribution"], None)
    return "; ".join(seen)


def center(store: Store) -> list[float]:
    """[longitude, latitude, zoom] a map of KP opens at: the middle of the districts, zoom 7."""
    bounds = store.manifest["layers"].get("districts", {}).get("bounds") or (69, 31, 74.2, 36.9)
    return [round((bounds[0] + bounds[2]) / 2, 4), round((bounds[1] + bounds[3]) / 2, 4), 7]


def tilejson(store: Store, layer: str, tiles_url: str, fmt: str = "mvt") -> dict[str, Any]:
    """A TileJSON 3.0.0 document for a tile layer whose tiles are at `tiles_url` (a template
    with {z}/{x}/{y}); vector_layers (with their fields) for MVT."""
    names = mvt_layers(layer)
    document: dict[str, Any] = {
        "tilejson": "3.0.0",
        "name": f"kpmap {layer}",
        "description": DESCRIPTIONS[layer],
        "version": f"{TILES_VERSION}.0.0",
        "attribution": attribution(store, names),
        "scheme": "xyz",
        "tiles": [tiles_url],
        "minzoom": MIN_ZOOM,
        "maxzoom": MAX_ZOOM,
        "bounds": list(layer_bounds(store, layer)),
        "center": center(store),
    }
    if FORMATS[fmt][1] is None:
        document["vector_layers"] = [
            {
                "id": name,
                "description": DESCRIPTIONS.get(name, DESCRIPTIONS[layer]),
                "minzoom": layer_minzoom(layer, name),
                "maxzoom": MAX_ZOOM,
                "fields": FIELDS[name],
            }
            for name in names
        ]
    return document


DESCRIPTIONS = {
    "attacks": f"Attacks in Khyber Pakhtunkhwa: grid clusters (count, killed) up to zoom "
    f"{CLUSTER_MAXZOOM}, then one point per attack with its attributes, except attacks from "
    "datasets whose terms allow only aggregates (data/datasets.toml), which stay clusters",
    "districts": "Districts of Khyber Pakhtunkhwa with their attack and casualty totals",
    "tehsils": "Tehsils of Khyber Pakhtunkhwa with their attack and casualty totals",
    "durand_line": "The Durand Line (Afghanistan-Pakistan border), by province",
    "basemap": "A plain basemap: Afghanistan and Pakistan, KP's districts and tehsils, and the "
    "names of the districts and towns",
    "countries": "Afghanistan and Pakistan outlines",
    "district_labels": "Where each district's name goes",
    "places": f"Towns (GeoNames): district headquarters from zoom {tiles_labels.HQ_MINZOOM}, "
    "other towns from a zoom that falls with their population (min_zoom)",
}
