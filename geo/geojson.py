"""Reading and writing RFC 7946 GeoJSON: WGS 84 longitude/latitude, no `crs` member,
counter-clockwise exterior rings, clockwise holes, and an `id` on every feature."""

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.geometry import mapping, shape

# 6 decimal places is about 0.1 m: far finer than any source we draw from, and half the bytes of
# full doubles. Shared vertices of neighbouring polygons round to the same value, so shared edges
# stay shared.
COORDINATE_DECIMALS = 6


def rfc7946_geometry(geom: shapely.Geometry) -> dict[str, Any]:
    """A shapely geometry as an RFC 7946 geometry object (oriented and rounded)."""
    geom = shapely.orient_polygons(geom, exterior_cw=False)
    geom = shapely.transform(geom, lambda xy: np.round(xy, COORDINATE_DECIMALS))
    return mapping(geom)


def feature(feature_id: str, geom: shapely.Geometry, properties: dict[str, Any]) -> dict[str, Any]:
    """An RFC 7946 Feature with a stable id; NaN values become null (JSON has no NaN)."""
    return {
        "type": "Feature",
        "id": feature_id,
        "geometry": rfc7946_geometry(geom),
        "properties": {k: _json_value(v) for k, v in properties.items()},
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value


def write_feature_collection(
    path: Path, features: Iterable[dict[str, Any]], **members: Any
) -> np.ndarray:
    """Write a FeatureCollection (plus any foreign members, e.g. `metadata`) to `path`.

    Features are encoded one at a time (orjson), so a million of them never become one string.
    Returns each feature's (start, end) byte offsets in the file, for geo.store.files's index.
    """
    head = orjson.dumps({"type": "FeatureCollection", **members})[:-1] + b',"features":['
    offsets = []
    with open(path, "wb") as f:
        f.write(head)
        position = len(head)
        for i, feat in enumerate(features):
            if i:
                f.write(b",")
                position += 1
            encoded = orjson.dumps(feat, option=orjson.OPT_SERIALIZE_NUMPY)
            f.write(encoded)
            offsets.append((position, position + len(encoded)))
            position += len(encoded)
        f.write(b"]}\n")
        f.flush()
        os.fsync(f.fileno())
    return np.array(offsets, dtype=np.int64).reshape(-1, 2)


def read_json(path: Path) -> Any:
    """Parse a JSON file (orjson: several times faster than json for a large layer)."""
    return orjson.loads(Path(path).read_bytes())


def to_shape(geometry: dict[str, Any]) -> shapely.Geometry:
    """A GeoJSON geometry object as a shapely geometry."""
    return shape(geometry)
