"""Reading and writing RFC 7946 GeoJSON: WGS 84 longitude/latitude, no `crs` member,
counter-clockwise exterior rings, clockwise holes, and an `id` on every feature."""

import hashlib
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
    with FeatureCollectionWriter(path, **members) as writer:
        writer.write(features)
    return writer.offsets()


class FeatureCollectionWriter:
    """A FeatureCollection written a chunk of features at a time (a million never in memory at
    once), with each feature's byte range and the file's sha256 computed as it is written:

        with FeatureCollectionWriter(path) as writer:
            for chunk in chunks:
                writer.write(chunk)
        writer.offsets(), writer.sha256
    """

    def __init__(self, path: Path, **members: Any):
        self.path = Path(path)
        self._head = orjson.dumps({"type": "FeatureCollection", **members})[:-1]
        self._head += b',"features":['
        self._offsets: list[np.ndarray] = []
        self._position = 0
        self._count = 0
        self._digest = hashlib.sha256()
        self.sha256 = ""

    def __enter__(self) -> "FeatureCollectionWriter":
        self._file = open(self.path, "wb")
        self._put(self._head)
        return self

    def _put(self, data: bytes) -> None:
        self._file.write(data)
        self._digest.update(data)
        self._position += len(data)

    def write(self, features: Iterable[dict[str, Any]]) -> None:
        self.write_encoded([orjson.dumps(f, option=orjson.OPT_SERIALIZE_NUMPY) for f in features])

    def write_encoded(self, encoded: list[bytes]) -> None:
        """Write features already encoded (each one feature's JSON object)."""
        if not encoded:
            return
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        # each feature after the file's first is preceded by a comma
        starts = self._position + np.cumsum(lengths + 1) - lengths - (0 if self._count else 1)
        self._offsets.append(np.stack([starts, starts + lengths], axis=1))
        if self._count:
            self._put(b",")  # written on its own: the features' bytes are not copied again
        self._put(b",".join(encoded))
        self._count += len(encoded)

    def flushed(self) -> np.ndarray:
        """The byte ranges of the features last written, once another process can read them
        from the file."""
        self._file.flush()
        return self._offsets[-1] if self._offsets else np.zeros((0, 2), dtype=np.int64)

    def __exit__(self, kind: Any, *_: Any) -> None:
        try:
            if kind is None:
                self._put(b"]}\n")
                self._file.flush()
                os.fsync(self._file.fileno())
                self.sha256 = self._digest.hexdigest()
        finally:
            self._file.close()

    def offsets(self) -> np.ndarray:
        """Each feature's (start, end) byte offsets in the file."""
        if not self._offsets:
            return np.array([], dtype=np.int64).reshape(-1, 2)
        return np.concatenate(self._offsets)


def read_json(path: Path) -> Any:
    """Parse a JSON file (orjson: several times faster than json for a large layer)."""
    return orjson.loads(Path(path).read_bytes())


def to_shape(geometry: dict[str, Any]) -> shapely.Geometry:
    """A GeoJSON geometry object as a shapely geometry."""
    return shape(geometry)
