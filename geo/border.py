"""Distances to the Afghanistan–Pakistan border (the Durand Line), and the bands of Pakistan
within given distances of it. geo.build.durand_line derives the line itself."""

import math
import os
import queue
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Polygon

from geo.crs import GEOD, KP_TMERC, transform_geometry

# Grid cell (degrees) that orders points before nearest-segment queries, and the cores to use.
NEAREST_CELL_DEG = 0.02
CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
        # A prepared copy of the scaled line for each thread of distance_km: GEOS builds a
        # prepared geometry's index lazily, at its first use, and two threads doing so at once
        # corrupt memory (libgeos/geos#825; it crashed one 1M build in seven). A thread takes a
        # copy of its own from the queue for each chunk and gives it back.
        self._copies: queue.SimpleQueue[shapely.Geometry] = queue.SimpleQueue()
        for _ in range(CPUS):
            scaled_line = shapely.transform(border, lambda xy: xy * [self._scale, 1.0])
            shapely.prepare(scaled_line)
            self._copies.put(scaled_line)

    def distance_km(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Geodesic distance in km from each (lon, lat) to the nearest point of the border."""
        lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
        if lon.size == 0:
            return np.empty(0)
        # the nearest point of the line in the same scaled plane (GEOS's prepared nearest-points
        # search: the same point as the nearest segment's projection, a third of the time)
        points = shapely.points(lon * self._scale, lat)
        nearest = np.empty((len(points), 2))

        def query(chunk: np.ndarray) -> None:
            line = self._copies.get()  # never waits: as many copies as threads
            try:
                lines = shapely.shortest_line(line, points[chunk])
            finally:
                self._copies.put(line)
            nearest[chunk] = shapely.get_coordinates(lines)[0::2]

        chunks = np.array_split(
            np.arange(len(points)), max(1, min(len(points) // 10_000, 4 * CPUS))
        )
        with ThreadPoolExecutor(CPUS) as pool:
            list(pool.map(query, chunks))
        _, _, metres = GEOD.inv(lon, lat, nearest[:, 0] / self._scale, nearest[:, 1])
        return np.asarray(metres) / 1000.0

    def _projected_km(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """distance_km by the nearest segment (_nearest_segments) and the projection on it: the
        reference distance_km is checked against (the same figures, slower)."""
        lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
        segment = self._nearest_segments(shapely.points(lon * self._scale, lat), lon, lat)
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

        Points are queried in grid order (neighbours share the tree's paths: ~15% faster), in
        one thread: GEOS's tree is not to be queried from several at once (see __init__).
        """
        order = np.lexsort((np.floor(lon / NEAREST_CELL_DEG), np.floor(lat / NEAREST_CELL_DEG)))
        segment = np.empty(len(points), dtype=np.intp)
        found, nearest = self._tree.query_nearest(points[order], all_matches=False)
        segment[order[found]] = nearest
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
