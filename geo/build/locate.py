"""Which KP district and tehsil a point lies in: decided by the polygons, never by names.

    locator = Locator.from_store(store)
    locator.locate(71.0921, 34.1105)   # Location('khyber', 'khyber-landi-kotal', None)

The tehsils tile the districts exactly, so one point-in-polygon test over the tehsils gives both.
A point on an edge shared by two tehsils goes to the first in id order.

The border sliver rule. The district polygons (OCHA COD-AB) and the Durand Line (OpenStreetMap)
were drawn separately: along the border they differ by a few hundred metres, at most a few km.
A point on the Pakistani side of the line (inside OSM's Pakistan) that lies outside every COD
province but within SLIVER_MAX_KM of a KP district belongs to the nearest KP district, and its
Location records the distance (`sliver_km`), so it is never silently moved. The build stores that
sliver zone in the store (SLIVER_FILE). Near the tripoints with Balochistan and Gilgit-Baltistan
the zone leaves out what lies within SLIVER_MAX_KM of those provinces: there the nearest province
is not certain, and the point stays outside KP.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer

from geo.crs import GEOD, KP_TMERC, transform_geometry
from geo.geojson import read_json, to_shape

SLIVER_MAX_KM = 5.0
SLIVER_FILE = "border_sliver.geojson"


@dataclass(frozen=True)
class Location:
    """Where a point lies: district and tehsil ids (None outside KP); `sliver_km` is None for a
    point inside its tehsil, else its distance to the tehsil it was given by the sliver rule."""

    district: str | None
    tehsil: str | None
    sliver_km: float | None = None


def border_sliver(
    kp: shapely.Geometry, other_provinces: shapely.Geometry, pakistan: shapely.Geometry
) -> shapely.Geometry:
    """The zone the sliver rule applies in (see the module docstring), in longitude/latitude.

    kp: KP's outline; other_provinces: the union of Pakistan's other COD provinces; pakistan:
    OpenStreetMap's Pakistan (the side of the Durand Line that is Pakistan's).
    """
    to_m = Transformer.from_crs("EPSG:4326", KP_TMERC, always_xy=True)
    to_deg = Transformer.from_crs(KP_TMERC, "EPSG:4326", always_xy=True)
    metres = SLIVER_MAX_KM * 1000
    kp_m = transform_geometry(kp, to_m)
    near_kp = kp_m.buffer(metres, quad_segs=4)
    others = transform_geometry(other_provinces, to_m)
    window = near_kp.envelope
    others = others.intersection(window.buffer(metres))
    outside = transform_geometry(pakistan, to_m).intersection(window)
    zone = outside.difference(kp_m).difference(others.buffer(metres, quad_segs=4))
    zone = zone.intersection(near_kp)
    polygons = [p for p in shapely.get_parts(zone) if p.geom_type == "Polygon" and p.area > 1]
    return transform_geometry(shapely.MultiPolygon(polygons), to_deg)


class Locator:
    """Points -> (district, tehsil), from the tehsil polygons and the sliver zone."""

    def __init__(
        self,
        unit_ids: Sequence[str],
        district_ids: Sequence[str | None],
        geometries: Sequence[shapely.Geometry],
        sliver: shapely.Geometry | None = None,
    ):
        """`unit_ids` name the polygons (tehsils, or districts when there are no tehsils), each
        in the district `district_ids` names; `sliver` is the zone of the sliver rule, if any."""
        self._units = np.array(unit_ids, dtype=object)
        self._districts = np.array(district_ids, dtype=object)
        self._geometries = np.asarray(geometries, dtype=object)
        self._tree = shapely.STRtree(self._geometries)
        self._bounds = shapely.bounds(self._geometries)
        shapely.prepare(self._geometries)
        self._sliver = sliver if sliver is not None and not sliver.is_empty else None
        if self._sliver is not None:
            shapely.prepare(self._sliver)
        # id order decides a point on a shared edge; the tree's order is the input order.
        self._rank = np.argsort(np.argsort(self._units.astype(str)))

    @classmethod
    def from_features(
        cls,
        districts: Sequence[Mapping[str, Any]],
        tehsils: Sequence[Mapping[str, Any]] = (),
        sliver: shapely.Geometry | None = None,
    ) -> "Locator":
        """From GeoJSON features of the tehsils layer (or of the districts, when no tehsils)."""
        if tehsils:
            units = [(f["id"], f["properties"]["district"], f["geometry"]) for f in tehsils]
        else:
            units = [(f["id"], f["id"], f["geometry"]) for f in districts]
        return cls(
            [u[0] for u in units], [u[1] for u in units], [to_shape(u[2]) for u in units], sliver
        )

    @classmethod
    def from_store(cls, store: Any) -> "Locator":
        """From a built store: its tehsils layer and its sliver zone."""
        tehsils = store.layer("tehsils")
        district, values = tehsils.column("district")
        return cls(
            tehsils.ids.tolist(),
            values[district].tolist(),
            list(tehsils.geometries()),
            read_sliver(Path(store.path)),
        )

    def locate(self, lon: float, lat: float) -> Location:
        point = shapely.Point(lon, lat)
        hits = self._tree.query(point, predicate="intersects")
        if len(hits):
            u = int(hits[np.argmin(self._rank[hits])])
            return Location(self._districts[u], self._units[u])
        if self._sliver is not None and self._sliver.contains(point):
            u, km = self._nearest(point)
            return Location(self._districts[u], self._units[u], round(km, 2))
        return Location(None, None)

    def locate_many(
        self, lon: Sequence[float], lat: Sequence[float]
    ) -> tuple[list[str | None], list[str | None], list[float | None]]:
        """For each point (same order): its district id, tehsil id and sliver distance (km; None
        inside its tehsil), each None outside KP."""
        lons = np.asarray(lon, dtype=float)
        lats = np.asarray(lat, dtype=float)
        unit = self._units_at(lons, lats)
        sliver_km = np.full(len(lons), np.nan)
        missing = np.flatnonzero(unit < 0)
        if len(missing) and self._sliver is not None:
            points = shapely.points(lons[missing], lats[missing])
            inside = shapely.contains(self._sliver, points)
            for i, point in zip(missing[inside].tolist(), points[inside].tolist(), strict=True):
                unit[i], sliver_km[i] = self._nearest(point)
        outside = unit < 0
        districts = np.where(outside, np.array(None), self._districts[unit])
        units = np.where(outside, np.array(None), self._units[unit])
        km = np.where(np.isnan(sliver_km), np.array(None), np.round(sliver_km, 2).astype(object))
        return districts.tolist(), units.tolist(), km.tolist()

    def _nearest(self, point: shapely.Point) -> tuple[int, float]:
        """The unit nearest a point of the sliver zone, and the geodesic distance to it (km)."""
        u = int(self._tree.query_nearest(point)[0])
        return u, _geodesic_km(shapely.shortest_line(point, self._geometries[u]))

    def _units_at(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """The unit index holding each point (-1 for none).

        Polygon by polygon rather than point by point: the points in a polygon's bounding box
        (found by binary search on longitude) are tested against the prepared polygon at once,
        which is ~20 times faster for a million points than one tree query per point. Units are
        visited last-in-id-order first, so on a shared edge the first in id order wins.
        """
        unit = np.full(len(lon), -1, dtype=np.intp)
        by_lon = np.argsort(lon, kind="stable")
        sorted_lon = lon[by_lon]
        for u in np.argsort(-self._rank).tolist():
            minx, miny, maxx, maxy = self._bounds[u]
            first = np.searchsorted(sorted_lon, minx, side="left")
            last = np.searchsorted(sorted_lon, maxx, side="right")
            candidates = by_lon[first:last]
            candidates = candidates[(lat[candidates] >= miny) & (lat[candidates] <= maxy)]
            inside = shapely.intersects_xy(self._geometries[u], lon[candidates], lat[candidates])
            unit[candidates[inside]] = u
        return unit


def read_sliver(store: Path) -> shapely.Geometry | None:
    """The sliver zone a built store keeps (None for a store without one)."""
    path = store / SLIVER_FILE
    if not path.exists():
        return None
    features = read_json(path)["features"]
    return to_shape(features[0]["geometry"]) if features else None


def _geodesic_km(line: shapely.LineString) -> float:
    (x0, y0), (x1, y1) = line.coords
    return GEOD.inv(x0, y0, x1, y1)[2] / 1000.0
