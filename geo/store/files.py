"""The GeoJSON store, opened once and queried from memory.

    store = Store.open("data/store")
    store.query("districts", bbox=(70.0, 33.0, 71.0, 34.0), former_fata=True)

`Store` is deliberately small (open, layer_names, layer, query, feature) so that another backend,
e.g. PostGIS, can stand beside it with the same methods.
"""

import gc
import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import shapely

from geo.dates import PERIOD, period
from geo.errors import InvalidQuery, LayerNotFound, StoreCorrupt, StoreNotFound
from geo.geojson import read_json, to_shape
from geo.store import integrity, swap
from geo.store.layer import Bounds, Layer
from geo.store.schemas import LAYERS, STORE_FORMAT, LayerSchema
from geo.stretches import mapped


class FeatureNotFound(LayerNotFound):
    """A feature id that the layer does not hold."""

    code = "feature-not-found"


@dataclass
class FileLayer:
    """One layer of a store folder, in memory: a spatial index, a time index, filter columns,
    and its features (geo.store.layer.Layer is the protocol it implements).

    Small layers keep their parsed features. A large point layer keeps its GeoJSON file's bytes
    and each feature's byte range (from the `.index.npz` the build writes beside it), and parses
    a feature only when a query returns it: a million attacks then open in seconds, in a fifth of
    the memory that a million dicts take.
    """

    schema: LayerSchema
    ids: np.ndarray
    # Each filterable property as codes into its distinct values (as text: see _text), e.g.
    # actor: codes [0, 1, 0, ...] into values ["TTP", "ISKP"]; "id" uses `ids` instead.
    codes: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    # Numeric properties (schema.numbers) as floats, NaN where null.
    numbers: dict[str, np.ndarray]
    # Day ordinals of each feature's time span; None for layers without time.
    span_start: np.ndarray | None = None
    span_end: np.ndarray | None = None
    parsed: list[dict[str, Any]] | None = None
    raw: Any = None  # the layer file's bytes (mapped), for an indexed layer
    offsets: np.ndarray | None = None
    xy: np.ndarray | None = None
    # (alias ids, their rows): the ids of records linked into a feature (see `by_id`).
    aliases: tuple[np.ndarray, np.ndarray] | None = None
    # Per filterable property: canonical value -> codes, made on the property's first filter.
    _lookup: dict[str, dict[str, list[int]]] = field(default_factory=dict, repr=False)
    # The geometries (of a point layer: made from `xy`), their tree and `by_id`: made when the
    # layer is opened (`ready`), or on first use in a process that only copies rows out.
    _shapes: np.ndarray | None = field(default=None, repr=False)
    _tree: shapely.STRtree | None = field(default=None, repr=False)
    _by_id: dict[str, int] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def ready(self) -> "FileLayer":
        """Make the geometries, their tree and the id lookup now (a server's worker must not
        make them on a request)."""
        self.tree  # noqa: B018  # made with the geometries it needs
        self.by_id  # noqa: B018
        return self

    @property
    def shapes(self) -> np.ndarray:
        if self._shapes is None:
            assert self.xy is not None, "a layer without points is made with its shapes"
            self._shapes = shapely.points(self.xy)
        return self._shapes

    @property
    def tree(self) -> shapely.STRtree:
        if self._tree is None:
            self._tree = shapely.STRtree(self.shapes)
        return self._tree

    @property
    def by_id(self) -> dict[str, int]:
        """Feature id -> position; also every alias (the id of a record linked into a feature)
        -> the feature's position, so that every linked record's id answers."""
        if self._by_id is None:
            by_id = dict(zip(self.ids.tolist(), range(len(self.ids)), strict=True))
            if self.aliases is not None:
                alias_ids, alias_rows = self.aliases
                for alias, row in zip(alias_ids.tolist(), alias_rows.tolist(), strict=True):
                    by_id.setdefault(alias, row)  # a feature's own id wins over another's alias
            self._by_id = by_id
        return self._by_id

    def select(
        self,
        bbox: Sequence[float] | str | None = None,
        start: date | str | None = None,
        end: date | str | None = None,
        **filters: Any,
    ) -> np.ndarray:
        selected = np.arange(len(self))
        if bbox is not None:
            box = shapely.box(*parse_bbox(bbox))
            # A point's envelope is the point: the tree's envelope test is already exact, and
            # skipping the predicate saves ~100 ms on a box holding 100,000 attacks.
            points = self.schema.geometry_types == ("Point",)
            selected = np.sort(self.tree.query(box, predicate=None if points else "intersects"))
        if start is not None or end is not None:
            selected = selected[_time_mask(self, start, end, selected)]
        if filters:
            selected = selected[_filter_mask(self, filters, selected)]
        return selected

    def position(self, feature_id: str) -> int | None:
        return self.by_id.get(str(feature_id))

    def feature_at(self, position: int) -> dict[str, Any]:
        if self.parsed is not None:
            return self.parsed[position]
        return orjson.loads(self.feature_bytes(position))

    def feature_bytes(self, position: int) -> bytes:
        if self.raw is None or self.offsets is None:  # a small layer: parsed features only
            assert self.parsed is not None
            return orjson.dumps(self.parsed[position])
        start, end = self.offsets[position]
        return self.raw[start:end]

    def geometries(self) -> np.ndarray:
        return self.shapes

    def points(self) -> np.ndarray:
        if self.xy is None:
            return shapely.get_coordinates(self.shapes)
        return self.xy

    def column(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        if key == "id":
            return np.arange(len(self.ids)), self.ids
        return self.codes[key], self.values[key]

    def number(self, key: str) -> np.ndarray:
        return self.numbers[key]

    def time_spans(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.span_start is None or self.span_end is None:
            return None
        return self.span_start, self.span_end

    def codes_matching(self, key: str, wanted: Iterable[str]) -> list[int]:
        """The codes of `key`'s values whose canonical form (see _canonical) is in `wanted`."""
        lookup = self._lookup.get(key)
        if lookup is None:
            lookup = defaultdict(list)
            pairs: Iterable[tuple[int, str]]
            if key == "id":  # an id's code is its position; aliases find their feature too
                pairs = ((code, value) for value, code in self.by_id.items())
            else:
                pairs = enumerate(self.column(key)[1].tolist())
            for code, value in pairs:
                lookup[value.strip().casefold()].append(code)
            self._lookup[key] = lookup = dict(lookup)
        return [code for w in wanted for code in lookup.get(w, ())]

    @property
    def bounds(self) -> Bounds | None:
        if not len(self.shapes):
            return None
        minx, miny, maxx, maxy = (float(v) for v in shapely.total_bounds(self.shapes))
        return minx, miny, maxx, maxy


class Store:
    """A built store folder (see geo.build.pipeline), loaded into memory once."""

    def __init__(
        self,
        path: Path | str,  # a folder, or (geo.store.postgis) a database URL without its password
        manifest: dict[str, Any],
        layers: dict[str, Layer],
        facts: list[dict[str, Any]] | None = None,
    ):
        self.path = path
        self.manifest = manifest
        # What every cache of what the store serves is keyed by (see current_version).
        self.version = manifest_version(manifest)
        self._layers = layers
        # Cited figures no point can carry (data/facts.csv): scope, period, metric, value, citation.
        self.facts = facts or []

    @classmethod
    def open(cls, path: str | Path, *, ready: bool = True, verify: bool = True) -> "Store":
        """Load every layer listed in the store's manifest.json and index it.

        Every file is checked against the manifest's sha256 meanwhile (geo.store.integrity):
        a damaged one raises StoreCorrupt, whose one line names it and what to run. `path` may
        be the link the build keeps (geo.store.swap): the folder it points to is read, and
        `store.path` stays `path`, where current_version looks for a newer build.

        The build, which has just written and hashed the files, opens its work folder to copy
        its rows out (geo.downloads.prepare) with `verify=False` (not hashed again) and
        `ready=False`: a large layer's geometries, tree and id lookup (more than half of what
        a million attacks take) are made on first use (FileLayer.ready), not at open.
        """
        path = Path(path)
        for attempt in (1, 2):
            root = swap.resolve(path)
            try:
                return cls._open(path, root, ready, verify)
            except FileNotFoundError:
                # A build moved the link and removed this version between our reads: once more.
                if attempt == 2 or swap.resolve(path) == root:
                    raise StoreNotFound(f"no store at {path} (run `kpmap build`)") from None
        raise AssertionError("unreachable")

    @classmethod
    def _open(cls, path: Path, root: Path, ready: bool, verify: bool) -> "Store":
        manifest = read_manifest(root, path)
        check = integrity.Verification(root, manifest, path) if verify else None
        # Loading creates millions of objects and frees none: without the cyclic collector
        # rescanning them all along, a million attacks load several times faster.
        collecting = gc.isenabled()
        gc.disable()
        try:
            store = cls._load(root, manifest)
            if ready:
                for layer in store._layers.values():
                    if isinstance(layer, FileLayer):
                        layer.ready()
        except (StoreNotFound, FileNotFoundError):
            raise
        except Exception as exc:
            if check is not None:
                check.result()  # a damaged file explains it best
            raise StoreCorrupt(
                f"the store at {path} cannot be read ({type(exc).__name__}: {exc}); "
                f"{integrity.remedy('', path)}"
            ) from None
        finally:
            if collecting:
                gc.enable()
        if check is not None:
            check.result()
        store.path = path
        return store

    @classmethod
    def _load(cls, path: Path, manifest: dict[str, Any]) -> "Store":
        layers: dict[str, Layer] = {}
        for name, entry in manifest["layers"].items():
            if name not in LAYERS:
                continue  # a newer store's layer this version does not know: skip, don't guess
            index = path / index_file(entry["file"])
            if index.exists():
                layers[name] = _load_indexed_layer(LAYERS[name], path / entry["file"], index, entry)
            else:
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
        """One feature by its id, or an attack by the id of any record linked into it (see
        geo.build.links); FeatureNotFound (404) if the layer has no such id."""
        layer = self.layer(name)
        position = layer.position(feature_id)
        if position is None:
            raise FeatureNotFound(f"layer {name!r} has no feature {feature_id!r}")
        return layer.feature_at(position)

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
        Results are in the layer's order; the dicts may be the store's own, so don't modify them.
        Raises InvalidQuery (400) for a bad bbox, date or filter, LayerNotFound (404).
        """
        layer = self.layer(name)
        return [layer.feature_at(i) for i in self.select(name, bbox, start, end, **filters)]

    def select(
        self,
        name: str,
        /,
        bbox: Sequence[float] | str | None = None,
        start: date | str | None = None,
        end: date | str | None = None,
        **filters: Any,
    ) -> np.ndarray:
        """The positions in the layer of the features `query` would return (same arguments).

        For callers that count, page or stream without parsing every feature:
        `layer.feature_at(i)` or `layer.feature_bytes(i)` turns a position into a feature
        (geo.store.layer.Layer).
        """
        return self.layer(name).select(bbox, start, end, **filters)


def read_manifest(root: Path, shown: Path | None = None) -> dict[str, Any]:
    """The manifest of the store folder `root`, of this kpmap's format; StoreNotFound (one
    line, naming `shown`, the path the user gave) when there is none or it cannot be read."""
    shown = shown or root
    try:
        manifest = json.loads((root / "manifest.json").read_bytes())
    except FileNotFoundError:
        raise StoreNotFound(f"no store at {shown} (run `kpmap build`)") from None
    except (OSError, ValueError) as exc:
        raise StoreCorrupt(
            f"manifest.json in {shown} cannot be read ({exc}); {integrity.remedy('', shown)}"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise StoreNotFound(
            f"the store at {shown} has format {found!r}, and this kpmap "
            f"reads {STORE_FORMAT!r}: rebuild it with `kpmap build` (imports are kept)"
        )
    return manifest


def manifest_version(manifest: dict[str, Any]) -> str:
    """A store's version: a short hash of its manifest, which holds every file's sha256 and the
    build time, so two builds never share one."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def current_version(path: str | Path) -> str | None:
    """The version of the store now at `path` (None if there is none): cheap enough to ask
    between requests, so a server notices a new build or import."""
    try:
        manifest = json.loads((Path(path) / "manifest.json").read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return manifest_version(manifest)


def index_file(layer_file: str) -> str:
    """The name of a layer file's index: districts.geojson -> districts.index.npz."""
    return layer_file.removesuffix(".geojson") + ".index.npz"


def index_arrays(schema: LayerSchema, features: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The arrays a layer is queried by: point coordinates (for point layers), ids, filterable
    properties as codes and values, numeric properties, and time spans. The build saves them
    for large layers; small layers compute them when they are opened."""
    builder = IndexBuilder(schema)
    builder.add(features)
    return builder.arrays()


class IndexBuilder:
    """index_arrays a part at a time, for a layer written in chunks: add(features) for each
    chunk in order, then arrays() gives what index_arrays would give for all of them at once."""

    def __init__(self, schema: LayerSchema):
        self.schema = schema
        self.coded = [k for k in schema.filterable if k != "id"]  # "id" is `ids`
        aliased = [schema.aliases] if schema.aliases else []
        self.keys = [*self.coded, *schema.numbers, *(schema.time or ()), *aliased]
        self.count = 0
        self.parts: dict[str, list[np.ndarray]] = defaultdict(list)
        # per coded column: each distinct value (null and NaN as None) -> its code, in order of
        # first appearance, as pandas.factorize numbers them; and the values in that order
        self.distinct: dict[str, dict[Any, int]] = {k: {} for k in self.coded}
        self.distinct_values: dict[str, list[Any]] = {k: [] for k in self.coded}
        self.alias_ids: list[str] = []
        self.alias_rows: list[int] = []

    def add(self, features: list[dict[str, Any]]) -> None:
        n = len(features)
        if not n:
            return
        xy = None
        if self.schema.geometry_types == ("Point",):
            coordinates = (c for f in features for c in f["geometry"]["coordinates"][:2])
            xy = np.fromiter(coordinates, dtype=float, count=2 * n).reshape(-1, 2)
        # One pass over the features (a million dicts are slow to walk, once per column slower).
        keys = self.keys
        rows = ([f["properties"].get(k) for k in keys] for f in features)
        columns = dict(zip(keys, zip(*rows, strict=True), strict=True))
        self.add_columns([str(f["id"]) for f in features], xy, columns)

    def add_columns(
        self, ids: list[str], xy: np.ndarray | None, columns: Mapping[str, Sequence[Any]]
    ) -> None:
        """add() for features given as columns: their ids, points (for a point layer) and the
        properties `keys` names, each a sequence of the features' values."""
        schema, n = self.schema, len(ids)
        if not n:
            return
        parts = self.parts
        id_array = np.array(ids, dtype=str)
        parts["ids"].append(id_array)
        if schema.geometry_types == ("Point",):
            assert xy is not None, "a point layer's features are given their points"
            parts["xy"].append(xy)
        for key in self.coded:
            # Few distinct values per column (ISKP, TTP, ...): factorized in C, then numbered
            # across chunks by their first appearance.
            codes, distinct = pd.factorize(
                pd.Series(columns[key], dtype=object), use_na_sentinel=False
            )
            known, values = self.distinct[key], self.distinct_values[key]
            number = np.empty(len(distinct), dtype=np.int32)
            for i, value in enumerate(distinct):
                found = known.get(_null_as_none(value))
                if found is None:
                    found = known[_null_as_none(value)] = len(values)
                    values.append(_null_as_none(value))
                number[i] = found
            parts[f"codes:{key}"].append(number[codes])
        for key in schema.numbers:
            parts[f"number:{key}"].append(np.array(columns[key], dtype=float))  # None: NaN
        if schema.aliases:
            aliases, rows_of = _aliases(id_array, columns[schema.aliases])
            self.alias_ids += aliases.tolist()
            self.alias_rows += (rows_of + self.count).tolist()
        if schema.time:
            first, last = schema.time
            ends = [e or s for s, e in zip(columns[first], columns[last], strict=True)]
            parts["span_start"].append(
                _period_days(np.array(columns[first], dtype=str), last_day=False)
            )
            parts["span_end"].append(_period_days(np.array(ends, dtype=str), last_day=True))
        self.count += n

    def arrays(self) -> dict[str, np.ndarray]:
        schema = self.schema
        if not self.count:
            empty: dict[str, Any] = {
                "ids": np.array([], dtype=str),
                "xy": np.fromiter((), dtype=float, count=0).reshape(-1, 2),
                "span_start": _period_days(np.array((), dtype=str), last_day=False),
                "span_end": _period_days(np.array((), dtype=str), last_day=True),
                **{f"codes:{k}": np.empty(0, dtype=np.int32) for k in self.coded},
                **{f"number:{k}": np.array((), dtype=float) for k in schema.numbers},
            }
            parts = {k: [v] for k, v in empty.items()}
        else:
            parts = self.parts
        arrays = {"ids": np.concatenate(parts["ids"])}
        if schema.geometry_types == ("Point",):
            arrays["xy"] = np.concatenate(parts["xy"])
        for key in self.coded:
            arrays[f"codes:{key}"] = np.concatenate(parts[f"codes:{key}"])
            arrays[f"values:{key}"] = np.array(
                [_text(v) for v in self.distinct_values[key]], dtype=str
            )
        for key in schema.numbers:
            arrays[f"number:{key}"] = np.concatenate(parts[f"number:{key}"])
        if schema.aliases:
            arrays["alias_ids"] = np.array(self.alias_ids, dtype=str)
            arrays["alias_rows"] = np.array(self.alias_rows, dtype=np.int64)
        if schema.time:
            arrays["span_start"] = np.concatenate(parts["span_start"])
            arrays["span_end"] = np.concatenate(parts["span_end"])
        return arrays


def _null_as_none(value: Any) -> Any:
    """pandas hands a null back as NaN, a new one each time: None stands for every null."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _aliases(ids: np.ndarray, entries: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(alias ids, their features' positions) from each feature's list of linked records: every
    entry's id but the feature's own."""
    aliases, rows = [], []
    for row, (own, linked) in enumerate(zip(ids.tolist(), entries, strict=True)):
        for entry in linked or ():
            if entry["id"] != own:
                aliases.append(entry["id"])
                rows.append(row)
    return np.array(aliases, dtype=str), np.array(rows, dtype=np.int64)


# date(1970, 1, 1).toordinal(): numpy counts days from 1970, Python's ordinals from year 1.
_EPOCH_ORDINAL = 719163


def _period_days(text: np.ndarray, last_day: bool) -> np.ndarray:
    """Day ordinals of the first (or last) day of each "YYYY-MM-DD", "YYYY-MM" or "YYYY".

    Vectorised twin of _date_range for the dates a build has already validated.
    """
    out = np.empty(len(text), dtype=np.int64)
    lengths = np.char.str_len(text) if len(text) else np.empty(0, dtype=int)
    done = np.zeros(len(text), dtype=bool)
    for length, unit in ((10, "D"), (7, "M"), (4, "Y")):
        match = lengths == length
        if not match.any():
            continue
        periods = text[match].astype(f"datetime64[{unit}]")
        if last_day:  # the day before the next period begins
            days = (periods + 1).astype("datetime64[D]") - np.timedelta64(1, "D")
        else:
            days = periods.astype("datetime64[D]")
        out[match] = days.astype(np.int64) + _EPOCH_ORDINAL
        done |= match
    if not done.all():
        raise ValueError(f"dates not in YYYY-MM-DD, YYYY-MM or YYYY form: {text[~done][:3]}")
    return out


def _index_layer(schema: LayerSchema, features: list[dict[str, Any]]) -> FileLayer:
    arrays = index_arrays(schema, features)
    shapes = None
    if "xy" not in arrays:
        shapes = np.array([to_shape(f["geometry"]) for f in features], dtype=object)
    return _layer(schema, arrays, parsed=features, _shapes=shapes).ready()


def _load_indexed_layer(
    schema: LayerSchema, layer_file: Path, index: Path, entry: dict[str, Any]
) -> FileLayer:
    with np.load(index, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if str(arrays.pop("sha256")) != entry["sha256"]:
        raise StoreNotFound(f"{index} does not belong to {layer_file} (rebuild the store)")
    # Mapped, not read: the features' bytes stay in the page cache, shared by every worker and
    # process that opens the store, and a process that never reads them (the build's GeoPackage
    # writer) never holds them.
    raw = mapped(layer_file)
    return _layer(schema, arrays, raw=raw, offsets=arrays["offsets"])


def _layer(schema: LayerSchema, arrays: dict[str, np.ndarray], **kw: Any) -> FileLayer:
    def prefixed(prefix: str) -> dict[str, np.ndarray]:
        return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}

    aliases = None
    if "alias_ids" in arrays:
        aliases = (arrays["alias_ids"], arrays["alias_rows"])
    return FileLayer(
        schema=schema,
        xy=arrays.get("xy"),
        ids=arrays["ids"],
        aliases=aliases,
        codes=prefixed("codes:"),
        values=prefixed("values:"),
        numbers=prefixed("number:"),
        span_start=arrays.get("span_start"),
        span_end=arrays.get("span_end"),
        **kw,
    )


def _date_range(value: str | date | None) -> tuple[int, int]:
    """(first day, last day) ordinals of "YYYY", "YYYY-MM" or "YYYY-MM-DD" (or a date).

    >>> _date_range("2024-02") == (date(2024, 2, 1).toordinal(), date(2024, 2, 29).toordinal())
    True
    """
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.toordinal(), value.toordinal()
    if value is None or not PERIOD.match(value):
        raise InvalidQuery(
            f"date {value!r} is not understood; use YYYY-MM-DD (or YYYY-MM, YYYY for a whole "
            "month or year)"
        )
    try:
        first, last = period(value)
    except ValueError as exc:
        raise InvalidQuery(f"date {exc}") from None
    return first.toordinal(), last.toordinal()


def _time_mask(layer: FileLayer, start: Any, end: Any, selected: np.ndarray) -> np.ndarray:
    spans = layer.time_spans()
    if spans is None:
        raise InvalidQuery(
            f"layer {layer.schema.name!r} has no time; a date filter is allowed only on: "
            + ", ".join(n for n, s in LAYERS.items() if s.time)
        )
    lo = _date_range(start)[0] if start is not None else -(2**62)
    hi = _date_range(end)[1] if end is not None else 2**62
    if lo > hi:
        raise InvalidQuery(f"start {start} is after end {end}")
    first, last = spans
    return (first[selected] <= hi) & (last[selected] >= lo)


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


def _filter_mask(layer: FileLayer, filters: dict[str, Any], selected: np.ndarray) -> np.ndarray:
    """Which of `selected` match every filter; InvalidQuery for a filter the layer lacks."""
    mask = np.ones(len(selected), dtype=bool)
    for key, value in filters.items():
        kind, prop, wanted = parse_filter(layer.schema, key, value)
        if kind == "range":
            mask &= layer.numbers[prop][selected] <= wanted
        else:
            codes, _ = layer.column(prop)
            mask &= np.isin(codes[selected], layer.codes_matching(prop, wanted))
    return mask


def parse_filter(schema: LayerSchema, key: str, value: Any) -> tuple[str, str, Any]:
    """One property filter checked against the layer's schema, as every backend applies it:
    ("range", property, the limit) for a range filter (max_border_km <= N), else ("values",
    property, the set of canonical values wanted; see _canonical). InvalidQuery names the
    filters the layer takes, or says what a value must be."""
    if key in schema.range_filters:
        prop, _ = schema.range_filters[key]
        return "range", prop, _parse_number(key, value)
    if key not in schema.filterable:
        allowed = (*schema.filterable, *schema.range_filters)
        raise InvalidQuery(
            f"layer {schema.name!r} cannot be filtered by {key!r}; allowed: " + ", ".join(allowed)
        )
    values = value if isinstance(value, list | tuple | set) else [value]
    is_bool = bool in schema.properties.get(key, ())
    return "values", key, {_canonical(_parse_bool(key, v) if is_bool else v) for v in values}


def _parse_number(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise InvalidQuery(f"{key}={value!r} must be a number >= 0")
    return number


def _text(value: Any) -> str:
    """A property value as a filter column's text: null is "", booleans "true" and "false".

    >>> [_text(v) for v in ("ISKP", True, None, 3)]
    ['ISKP', 'true', '', '3']
    """
    # pandas' factorize hands back a null as NaN; JSON has no NaN, so NaN is always a null here
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _canonical(value: Any) -> str:
    """A value as filters compare it: its text (see _text), trimmed and case-folded.

    >>> [_canonical(v) for v in ("ISKP", True, None, 3)]
    ['iskp', 'true', '', '3']
    """
    return _text(value).strip().casefold()


def _parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise InvalidQuery(f"{key}={value!r} is not a boolean; use true or false")
