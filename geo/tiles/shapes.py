"""The polygon and line layers' tiles, and the properties each MVT layer carries."""

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.ops import polylabel

from geo.tiles.canvas import (
    TILE_SIZE,
)
from geo.tiles.grid import world_xy


def to_world(geometries: np.ndarray) -> np.ndarray:
    def project(coords: np.ndarray) -> np.ndarray:
        u, v = world_xy(coords[:, 0], coords[:, 1])
        return np.column_stack([u, v])

    return shapely.transform(geometries, project)


@dataclass
class Shapes:
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


def pick(props: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
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
POINT_FIELDS = tuple(k for k in FIELDS["attacks"] if k not in ("cluster", "count", "killed"))


def label_point(geometry: Any) -> Any:
    """A point well inside the (largest part of the) polygon, where its name goes."""
    parts = getattr(geometry, "geoms", [geometry])
    largest = max(parts, key=lambda p: p.area)
    try:
        return polylabel(largest, tolerance=largest.length / 1000 or 1e-9)
    except Exception:  # noqa: BLE001 - a degenerate polygon: fall back to any inside point
        return largest.representative_point()
