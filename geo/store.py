"""The GeoJSON store, opened once and queried from memory.

    store = Store.open("data/store")
    store.query("districts", bbox=(70.0, 33.0, 71.0, 34.0), former_fata=True)

`Store` is deliberately small (open, layer_names, layer, query, feature) so that another backend,
e.g. PostGIS, can stand beside it with the same methods.
"""

import calendar
import gc
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from geo.errors import InvalidQuery, LayerNotFound, StoreNotFound
from geo.geojson import read_json, to_shape
from geo.schemas import LAYERS, LayerSchema

Bounds = tuple[float, float, float, float]
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


class FeatureNotFound(LayerNotFound):
    """A feature id that the layer does not hold."""

    code = "feature-not-found"


@dataclass
class Layer:
    """One layer in memory: its features, a spatial index and, if it has time, a time index."""

    schema: LayerSchema
    features: list[dict[str, Any]]
    geometries: np.ndarray
    tree: shapely.STRtree
    by_id: dict[str, int]
    # Filterable properties as arrays (strings case-folded), so filters are vectorised.
    columns: dict[str, np.ndarray]
    # Day ordinals of each feature's time span; None for layers without time.
    span_start: np.ndarray | None = None
    span_end: np.ndarray | None = None

    @property
    def bounds(self) -> Bounds | None:
        if not len(self.geometries):
            return None
        return tuple(float(v) for v in shapely.total_bounds(self.geometries))


class Store:
    """A built store folder (see geo.build), loaded into memory once."""

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        layers: dict[str, Layer],
        facts: list[dict[str, Any]] | None = None,
    ):
        self.path = path
        self.manifest = manifest
        self._layers = layers
        # Cited figures no point can carry (data/facts.csv): scope, period, metric, value, citation.
        self.facts = facts or []

    @classmethod
    def open(cls, path: str | Path) -> "Store":
        """Load every layer listed in the store's manifest.json and index it."""
        path = Path(path)
        try:
            manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StoreNotFound(f"no store at {path} (run `kpmap build`)") from None
        # Loading creates millions of objects and frees none: without the cyclic collector
        # rescanning them all along, a million attacks load several times faster.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return cls._load(path, manifest)
        finally:
            if collecting:
                gc.enable()

    @classmethod
    def _load(cls, path: Path, manifest: dict[str, Any]) -> "Store":
        layers = {}
        for name, entry in manifest["layers"].items():
            if name not in LAYERS:
                continue  # a newer store's layer this version does not know: skip, don't guess
            features = read_json(path / entry["file"])["features"]
            layers[name] = _index_layer(LAYERS[name], features)
        facts = []
        if "facts" in manifest:
            facts = read_json(path / manifest["facts"]["file"])["facts"]
        return cls(path, manifest, layers, facts)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(self._layers)

    def layer(self, name: str) -> Layer:
        """The named layer; LayerNotFound (404) names the layers there are."""
        try:
            return self._layers[name]
        except (KeyError, TypeError):
            allowed = ", ".join(self._layers)
            raise LayerNotFound(f"no layer {name!r}; the layers are: {allowed}") from None

    def feature(self, name: str, feature_id: str) -> dict[str, Any]:
        """One feature by its id; FeatureNotFound (404) if the layer has no such id."""
        layer = self.layer(name)
        try:
            return layer.features[layer.by_id[str(feature_id)]]
        except KeyError:
            raise FeatureNotFound(f"layer {name!r} has no feature {feature_id!r}") from None

    def query(
        self,
        name: str,
        /,
        bbox: Sequence[float] | str | None = None,
        start: date | str | None = None,
        end: date | str | None = None,
        **filters: Any,
    ) -> list[dict[str, Any]]:
        """Features of a layer that intersect `bbox`, overlap [start, end] and match `filters`.

        bbox is (minx, miny, maxx, maxy) in lon/lat, or the same as "minx,miny,maxx,maxy".
        start and end are inclusive dates ("2024-04", a month, covers the whole month); a feature
        whose span is a month or a range matches when any day of it falls in the window.
        A filter's value may be a list: the feature matches if it equals any of them.
        Results are in the layer's order; the dicts are the store's own, so don't modify them.
        Raises InvalidQuery (400) for a bad bbox, date or filter, LayerNotFound (404).
        """
        layer = self.layer(name)
        selected = np.arange(len(layer.features))
        if bbox is not None:
            box = shapely.box(*parse_bbox(bbox))
            selected = np.sort(layer.tree.query(box, predicate="intersects"))
        if start is not None or end is not None:
            selected = selected[_time_mask(layer, start, end, selected)]
        if filters:
            selected = selected[_filter_mask(layer, filters, selected)]
        return [layer.features[i] for i in selected]


def _index_layer(schema: LayerSchema, features: list[dict[str, Any]]) -> Layer:
    if schema.geometry_types == ("Point",):
        # one vectorised call instead of a million shapely.geometry.shape() calls
        xy = np.array([f["geometry"]["coordinates"][:2] for f in features], dtype=float)
        geometries = shapely.points(xy.reshape(-1, 2))
    else:
        geometries = np.array([to_shape(f["geometry"]) for f in features], dtype=object)
    layer = Layer(
        schema=schema,
        features=features,
        geometries=geometries,
        tree=shapely.STRtree(geometries),
        by_id={str(f["id"]): i for i, f in enumerate(features)},
        columns={},
    )
    for key in schema.filterable:
        column = np.empty(len(features), dtype=object)
        column[:] = [_fold(f["properties"].get(key)) for f in features]
        layer.columns[key] = column
    for prop, _ in schema.range_filters.values():
        values = [f["properties"].get(prop) for f in features]
        layer.columns[prop] = np.array([math.nan if v is None else v for v in values], dtype=float)
    if schema.time:
        first, last = schema.time
        spans = [_span(f["properties"].get(first), f["properties"].get(last)) for f in features]
        layer.span_start = np.array([s for s, _ in spans], dtype=np.int64)
        layer.span_end = np.array([e for _, e in spans], dtype=np.int64)
    return layer


def _span(first: str | None, last: str | None) -> tuple[int, int]:
    """Day ordinals of a feature's time span; a month or year covers all its days."""
    start, end = _date_range(first)
    if last:
        end = _date_range(last)[1]
    return start, end


def _date_range(value: str | date | None) -> tuple[int, int]:
    """(first day, last day) ordinals of "YYYY", "YYYY-MM" or "YYYY-MM-DD" (or a date).

    >>> _date_range("2024-02") == (date(2024, 2, 1).toordinal(), date(2024, 2, 29).toordinal())
    True
    """
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.toordinal(), value.toordinal()
    match = _DATE.match(value or "")
    if not match:
        raise InvalidQuery(
            f"date {value!r} is not understood; use YYYY-MM-DD (or YYYY-MM, YYYY for a whole "
            "month or year)"
        )
    year, month, day = (int(g) if g else None for g in match.groups())
    try:
        if day:
            first = last = date(year, month, day)
        elif month:
            first = date(year, month, 1)
            last = date(year, month, calendar.monthrange(year, month)[1])
        else:
            first, last = date(year, 1, 1), date(year, 12, 31)
    except ValueError as exc:
        raise InvalidQuery(f"date {value!r} does not exist: {exc}") from None
    return first.toordinal(), last.toordinal()


def _time_mask(layer: Layer, start: Any, end: Any, selected: np.ndarray) -> np.ndarray:
    if layer.span_start is None:
        raise InvalidQuery(
            f"layer {layer.schema.name!r} has no time; a date filter is allowed only on: "
            + ", ".join(n for n, s in LAYERS.items() if s.time)
        )
    lo = _date_range(start)[0] if start is not None else -(2**62)
    hi = _date_range(end)[1] if end is not None else 2**62
    if lo > hi:
        raise InvalidQuery(f"start {start} is after end {end}")
    return (layer.span_start[selected] <= hi) & (layer.span_end[selected] >= lo)


def parse_bbox(bbox: Sequence[float] | str) -> Bounds:
    """Check and return (minx, miny, maxx, maxy); InvalidQuery says what is wrong.

    >>> parse_bbox("69.5,31,72,36")
    (69.5, 31.0, 72.0, 36.0)
    """
    parts: Iterable[Any] = bbox.split(",") if isinstance(bbox, str) else bbox
    try:
        values = tuple(float(v) for v in parts)
    except (TypeError, ValueError):
        raise InvalidQuery(f"bbox {bbox!r} must be four numbers: minx,miny,maxx,maxy") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InvalidQuery(f"bbox {bbox!r} must be four finite numbers: minx,miny,maxx,maxy")
    minx, miny, maxx, maxy = values
    if not (
        -180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90
    ):
        raise InvalidQuery(
            f"bbox {bbox!r} is out of range: longitude must be within -180..180, latitude -90..90"
        )
    if minx > maxx or miny > maxy:
        raise InvalidQuery(f"bbox {bbox!r} has min greater than max: use minx,miny,maxx,maxy")
    return values


def _filter_mask(layer: Layer, filters: dict[str, Any], selected: np.ndarray) -> np.ndarray:
    """Which of `selected` match every filter; InvalidQuery for a filter the layer lacks."""
    schema = layer.schema
    mask = np.ones(len(selected), dtype=bool)
    for key, value in filters.items():
        if key in schema.range_filters:
            prop, _ = schema.range_filters[key]
            limit = _parse_number(key, value)
            mask &= layer.columns[prop][selected] <= limit
            continue
        if key not in schema.filterable:
            allowed = (*schema.filterable, *schema.range_filters)
            raise InvalidQuery(
                f"layer {schema.name!r} cannot be filtered by {key!r}; allowed: "
                + ", ".join(allowed)
            )
        values = value if isinstance(value, list | tuple | set) else [value]
        is_bool = schema.properties.get(key) == (bool,)
        column = layer.columns[key][selected]
        any_of = np.zeros(len(selected), dtype=bool)
        for wanted in {_parse_bool(key, v) if is_bool else _fold(v) for v in values}:
            any_of |= column == wanted
        mask &= any_of
    return mask


def _parse_number(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise InvalidQuery(f"{key}={value!r} must be a number >= 0")
    return number


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise InvalidQuery(f"{key}={value!r} is not a boolean; use true or false")
