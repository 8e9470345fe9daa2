"""The Afghanistan–Pakistan border (the Durand Line): derived, split by province, measured, and
the bands of Pakistan within given distances of it.

The border is the boundary that timezonefinder's OpenStreetMap-derived polygons for Asia/Kabul and
Asia/Karachi share: Afghanistan and Pakistan each keep one time zone, so where the two zones touch
is where the two countries touch.
"""

import math
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import shapely
from pyproj import Geod, Transformer
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Polygon
from shapely.ops import linemerge

GEOD = Geod(ellps="WGS84")
AFGHANISTAN_TZ = "Asia/Kabul"
PAKISTAN_TZ = "Asia/Karachi"
# The Pakistani units that touch Afghanistan: COD-AB ADM1 P-code -> the name the layer gives them.
BORDER_PROVINCES = {"PK5": "Khyber Pakhtunkhwa", "PK2": "Balochistan", "PK3": "Gilgit-Baltistan"}
# A run of vertices nearest to one province but shorter than this is noise near a tripoint, or
# where the coarse ADM1 outline strays from the detailed line: it joins its neighbours.
MIN_SEGMENT_KM = 20.0
PROVINCE_SIMPLIFY_DEG = 0.001
# Grid cell (degrees) that orders points before nearest-segment queries, and the cores to use.
NEAREST_CELL_DEG = 0.02
CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
# Metres, true to scale along KP's meridian: under 0.2 % scale error across the province.
KP_TMERC = "+proj=tmerc +lon_0=71.5 +datum=WGS84"


def timezone_polygon(tz_name: str) -> Polygon | MultiPolygon:
    """The polygon(s) timezonefinder holds for one zone, holes included."""
    from timezonefinder import TimezoneFinder  # slow to import; only the build needs it

    parts = TimezoneFinder().get_geometry(tz_name=tz_name, coords_as_pairs=False)
    polygons = [
        Polygon(zip(*rings[0], strict=True), [list(zip(*h, strict=True)) for h in rings[1:]])
        for rings in parts
    ]
    return polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)


def derive_border(
    afghanistan: Polygon | MultiPolygon | None = None,
    pakistan: Polygon | MultiPolygon | None = None,
) -> LineString | MultiLineString:
    """The shared boundary of the Afghan and Pakistani time-zone polygons, merged into lines."""
    afghanistan = afghanistan or timezone_polygon(AFGHANISTAN_TZ)
    pakistan = pakistan or timezone_polygon(PAKISTAN_TZ)
    shared = afghanistan.boundary.intersection(pakistan.boundary)
    # The intersection is thousands of two-point pieces (and a few stray points where the
    # boundaries only touch); keep the lines and stitch them end to end.
    lines = [g for g in shapely.get_parts(shared) if g.geom_type in ("LineString", "LinearRing")]
    return linemerge(lines)


def geodesic_length_km(line: LineString | MultiLineString) -> float:
    """Length on the WGS 84 ellipsoid, in km (not the planar length in degrees)."""
    return GEOD.geometry_length(line) / 1000.0


def split_by_province(
    line: LineString, provinces: dict[str, Polygon | MultiPolygon]
) -> list[tuple[str, LineString]]:
    """Cut the border into consecutive stretches, each labelled with the province it borders.

    Each vertex goes to the nearest province outline; runs shorter than MIN_SEGMENT_KM are merged
    into the run before them (or after, for the first), so a stretch is never a few vertices long.
    """
    names = list(provinces)
    # Survey-detail outlines make each nearest query slow (seconds in all); ~100 m of detail
    # cannot move a run boundary that MIN_SEGMENT_KM then smooths anyway.
    tree = shapely.STRtree([shapely.simplify(provinces[n], PROVINCE_SIMPLIFY_DEG) for n in names])
    coords = np.asarray(line.coords)
    nearest = tree.query_nearest(shapely.points(coords), return_distance=False, all_matches=False)
    owner = np.empty(len(coords), dtype=int)
    owner[nearest[0]] = nearest[1]

    runs = _runs(owner)
    runs = _merge_short_runs(runs, coords)
    return [
        (names[province], LineString(coords[start : end + 1]))
        for province, start, end in runs
        if end > start
    ]


def _runs(owner: np.ndarray) -> list[list[int]]:
    """[province, first vertex, last vertex] for each run; consecutive runs share a vertex."""
    breaks = np.flatnonzero(np.diff(owner)) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(owner) - 1]))
    return [[int(owner[s]), int(s), int(e)] for s, e in zip(starts, ends, strict=True)]


def _merge_short_runs(runs: list[list[int]], coords: np.ndarray) -> list[list[int]]:
    def length_km(run: list[int]) -> float:
        return geodesic_length_km(LineString(coords[run[1] : run[2] + 1])) if run[2] > run[1] else 0

    merged: list[list[int]] = []
    for run in runs:
        if merged and (length_km(run) < MIN_SEGMENT_KM or merged[-1][0] == run[0]):
            merged[-1][2] = run[2]
        else:
            merged.append(run)
    # A short first run has no run before it: give it to the next one.
    if len(merged) > 1 and length_km(merged[0]) < MIN_SEGMENT_KM:
        merged[1][1] = merged[0][1]
        merged.pop(0)
    return merged


class BorderIndex:
    """Distances from many points to the border, fast: an STRtree over the line's segments.

    The nearest segment is found with longitudes scaled by cos(latitude) at the line's middle, so
    "nearest" in the index is close to nearest on the ground at these latitudes; the distance to
    the nearest point of that segment is then measured on the WGS 84 ellipsoid.
    """

    def __init__(self, border: LineString | MultiLineString):
        lines = [border] if border.geom_type == "LineString" else list(border.geoms)
        starts, ends = [], []
        for line in lines:
            xy = np.asarray(line.coords)[:, :2]
            starts.append(xy[:-1])
            ends.append(xy[1:])
        self._starts, self._ends = np.concatenate(starts), np.concatenate(ends)
        self._scale = math.cos(math.radians(border.centroid.y))
        scaled = np.stack([self._starts, self._ends], axis=1) * [self._scale, 1.0]
        self._tree = shapely.STRtree(shapely.linestrings(scaled))

    def distance_km(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Geodesic distance in km from each (lon, lat) to the nearest point of the border."""
        lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
        if lon.size == 0:
            return np.empty(0)
        segment = self._nearest_segments(shapely.points(lon * self._scale, lat), lon, lat)
        # nearest point on each segment, by projection in the same scaled plane
        a = self._starts[segment] * [self._scale, 1.0]
        b = self._ends[segment] * [self._scale, 1.0]
        p = np.stack([lon * self._scale, lat], axis=1)
        ab = b - a
        length2 = np.einsum("ij,ij->i", ab, ab)
        t = np.clip(np.einsum("ij,ij->i", p - a, ab) / np.where(length2 > 0, length2, 1), 0, 1)
        nearest = a + ab * t[:, None]
        _, _, metres = GEOD.inv(lon, lat, nearest[:, 0] / self._scale, nearest[:, 1])
        return np.asarray(metres) / 1000.0

    def _nearest_segments(self, points: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """The index of the segment nearest each point (in the scaled plane).

        Points are queried in grid order (neighbours share the tree's paths: ~15% faster) and in
        chunks on every core (GEOS releases the GIL): a million points in seconds, not ~7 s.
        """
        order = np.lexsort((np.floor(lon / NEAREST_CELL_DEG), np.floor(lat / NEAREST_CELL_DEG)))
        segment = np.empty(len(points), dtype=np.intp)

        def query(chunk: np.ndarray) -> None:
            found, nearest = self._tree.query_nearest(points[chunk], all_matches=False)
            segment[chunk[found]] = nearest

        chunks = np.array_split(order, max(1, min(len(order) // 10_000, 4 * CPUS)))
        with ThreadPoolExecutor(CPUS) as pool:
            list(pool.map(query, chunks))
        return segment


def distance_to_border_km(points: Iterable[shapely.Point], border) -> np.ndarray:
    """Geodesic distance (km) from each point to the nearest point of the border line."""
    points = list(points)
    lon = np.array([p.x for p in points], dtype=float)
    lat = np.array([p.y for p in points], dtype=float)
    return BorderIndex(border).distance_km(lon, lat)


def border_bands(
    border: LineString | MultiLineString,
    pakistan: Polygon | MultiPolygon,
    distances_km: Iterable[int],
) -> list[tuple[int, shapely.Geometry]]:
    """Bands of Pakistan along the border, nearest first: for distances (10, 25, 50), the parts
    0–10, 10–25 and 25–50 km from the line, as (outer distance in km, geometry in lon/lat).

    The line is buffered in a transverse Mercator projection centred on KP (KP_TMERC), and what
    lies in `pakistan` is kept; each band's edge is right to within 2 % of its distance (the line
    is simplified first, see below). Bands do not overlap: each leaves out the ones inside it.
    """
    to_m = Transformer.from_crs("EPSG:4326", KP_TMERC, always_xy=True)
    to_deg = Transformer.from_crs(KP_TMERC, "EPSG:4326", always_xy=True)
    line = transform_geometry(border, to_m)
    pakistan = transform_geometry(pakistan, to_m)
    bands, inner = [], None
    for km in sorted(distances_km):
        # Buffering the line's every bend takes seconds; simplifying it by 2 % of the distance
        # first moves a band's edge by at most that much and makes it a fraction of a second.
        zone = line.simplify(km * 20).buffer(km * 1000, quad_segs=4).intersection(pakistan)
        band = zone if inner is None else zone.difference(inner)
        band = transform_geometry(band.simplify(100), to_deg)
        if not band.is_valid:  # a sliver where two bands meet can fold over when simplified
            band = shapely.make_valid(band, method="structure", keep_collapsed=False)
        bands.append((km, band))
        inner = zone
    return bands


def transform_geometry(geometry: shapely.Geometry, transformer: Transformer) -> shapely.Geometry:
    return shapely.transform(geometry, lambda xy: np.column_stack(transformer.transform(*xy.T)))
