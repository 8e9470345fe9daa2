"""The Layer protocol: what every store backend answers for one layer.

The file store (geo.store.files) implements it from memory; a database backend implements the
same methods. Everything that serves the store — downloads, the OGC API, the map's feeds and
aggregates, tiles — goes through these methods and nothing else, so a backend is one class.

A layer's features are addressed by position, 0 to len - 1, fixed for the store's version:
`select` answers positions, and `feature_at`, `feature_bytes` and the column arrays (one value
per position) turn them into what callers need.
"""

from datetime import date
from typing import Any, Protocol

import numpy as np

from geo.store.schemas import LayerSchema

Bounds = tuple[float, float, float, float]


class Layer(Protocol):
    schema: LayerSchema

    def __len__(self) -> int: ...

    @property
    def ids(self) -> np.ndarray:
        """Every feature's id, by position."""
        ...

    @property
    def bounds(self) -> Bounds | None:
        """(minx, miny, maxx, maxy) of every feature; None for an empty layer."""
        ...

    def select(
        self,
        bbox: Any = None,
        start: date | str | None = None,
        end: date | str | None = None,
        **filters: Any,
    ) -> np.ndarray:
        """The positions, in layer order, of the features that intersect bbox, overlap
        [start, end] and match every filter (see Store.query); InvalidQuery says what is wrong."""
        ...

    def position(self, feature_id: str) -> int | None:
        """The position of a feature by its id, or by the id of any record linked into it."""
        ...

    def feature_at(self, position: int) -> dict[str, Any]:
        """One feature as a GeoJSON dict (possibly the store's own: don't modify it)."""
        ...

    def feature_bytes(self, position: int) -> bytes:
        """One feature as GeoJSON bytes."""
        ...

    def geometries(self) -> np.ndarray:
        """Every feature's shapely geometry, by position."""
        ...

    def points(self) -> np.ndarray:
        """A point layer's (longitude, latitude) pairs, shape (n, 2)."""
        ...

    def column(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(codes, values) of a filterable property: feature i has values[codes[i]] (as text:
        null is "", booleans "true"/"false")."""
        ...

    def number(self, key: str) -> np.ndarray:
        """A numeric property (schema.numbers) as floats, NaN where null."""
        ...

    def time_spans(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Day ordinals (date.toordinal()) of each feature's first and last day; None for a
        layer without time."""
        ...
