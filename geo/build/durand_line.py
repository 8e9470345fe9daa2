"""The Afghanistan–Pakistan border (the Durand Line) derived and split by province.

The border is the boundary that timezonefinder's OpenStreetMap-derived polygons for Asia/Kabul and
Asia/Karachi share: Afghanistan and Pakistan each keep one time zone, so where the two zones touch
is where the two countries touch. geo.border measures distances to it.
"""

import numpy as np
import shapely
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Polygon
from shapely.ops import linemerge

from geo.crs import geodesic_length_km

AFGHANISTAN_TZ = "Asia/Kabul"
PAKISTAN_TZ = "Asia/Karachi"
# The Pakistani units that touch Afghanistan: COD-AB ADM1 P-code -> the name the layer gives them.
BORDER_PROVINCES = {"PK5": "Khyber Pakhtunkhwa", "PK2": "Balochistan", "PK3": "Gilgit-Baltistan"}
# A run of vertices nearest to one province but shorter than this is noise near a tripoint, or
# where the coarse ADM1 outline strays from the detailed line: it joins its neighbours.
MIN_SEGMENT_KM = 20.0
PROVINCE_SIMPLIFY_DEG = 0.001


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
