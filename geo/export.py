"""Downloads written as streams: GeoJSON and CSV chunk by chunk, GeoPackage batch by batch.

Every writer takes a layer and the positions `Store.select` chose, and turns a few thousand
features at a time into bytes, so memory stays flat whatever the store's size:

    positions = store.select("attacks", bbox=(70, 33, 72, 35))
    for chunk in geojson_chunks(store.layer("attacks"), positions, metadata={...}):
        out.write(chunk)

GeoJSON is never re-encoded: a layer that keeps its file's bytes gives its features as
stretches of them (`geojson_file`, geo.stretches). CSV and GeoPackage take the features apart a
column at a time (`Columns`): each cell is made by its column's kind, not by a call per cell.
"""

import csv
import io
import itertools
import json
import operator
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson
import pyarrow as pa
import pyogrio
import pyproj
import shapely

from geo.store import Layer
from geo.store.files import FileLayer
from geo.store.schemas import LayerSchema
from geo.stretches import Stretches, runs

# Features per chunk: ~1-2 MB of GeoJSON, large enough that per-chunk costs vanish.
CHUNK_FEATURES = 2000
# Features per batch of a GeoPackage table: bounds the Arrow batch held in memory while writing.
GPKG_BATCH = 50_000
# A spreadsheet treats a cell that starts with one of these as a formula (OWASP: CSV injection);
# tab and carriage return are included because some spreadsheets strip them before looking.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def geojson_chunks(
    layer: Layer, positions: np.ndarray, members: dict[str, Any] | None = None
) -> Iterator[bytes]:
    """An RFC 7946 FeatureCollection of the features at `positions`, as byte chunks.

    `members` are written before "features" (e.g. a `metadata` foreign member, or the OGC API's
    numberMatched and links), so a client can read them before the features arrive. Features
    are copied as the store holds them, without being parsed and re-encoded; from a layer that
    keeps its file's bytes, as stretches of them (see `geojson_file`).
    """
    head = geojson_head(members)
    body = geojson_file(layer, positions, head)
    if body is not None:
        yield from body.chunks()
        return
    yield head
    for start in range(0, len(positions), CHUNK_FEATURES):
        batch = positions[start : start + CHUNK_FEATURES].tolist()
        features = b",".join([layer.feature_bytes(i) for i in batch])
        yield b"," + features if start else features
    yield GEOJSON_TAIL


GEOJSON_TAIL = b"]}"


def geojson_head(members: dict[str, Any] | None = None) -> bytes:
    """The bytes of a FeatureCollection before its first feature."""
    head = orjson.dumps({"type": "FeatureCollection", **(members or {})})
    return head[:-1] + b',"features":['


def geojson_file(layer: Layer, positions: np.ndarray, head: bytes) -> Stretches | None:
    """The FeatureCollection `geojson_chunks` writes, as a file-like object of known length
    that reads stretches of the layer file's bytes (geo.stretches): a whole layer is the head,
    one stretch and the tail; each feature withheld or filtered out splits a stretch. None when
    the layer does not keep its file's bytes (small layers, a database's)."""
    if not isinstance(layer, FileLayer) or layer.raw is None or layer.offsets is None:
        return None
    if len(positions) == len(layer):  # the whole layer: its one stretch, found once
        found = _whole_layer(layer.raw, layer.offsets)
    else:
        found = runs(layer.raw, layer.offsets, positions, separator=b",")
    if found is None:  # not a file the build wrote, one comma between features
        return None
    return Stretches(head, layer.raw, *found, tail=GEOJSON_TAIL)


# A whole layer's stretch, by its offsets array (held as long as that array lives): checking a
# million separators takes ~30 ms, asked again by every download of the whole layer.
_WHOLE: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}


def _whole_layer(raw: bytes, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    key = id(offsets)
    if key not in _WHOLE:
        _WHOLE[key] = runs(raw, offsets, np.arange(len(offsets)), separator=b",")
        weakref.finalize(offsets, _WHOLE.pop, key, None)
    return _WHOLE[key]


def csv_columns(schema: LayerSchema) -> list[str]:
    """CSV header: id, longitude, latitude, then the schema's properties in order.

    >>> from geo.store.schemas import LAYERS
    >>> csv_columns(LAYERS["attacks"])[:4]
    ['id', 'longitude', 'latitude', 'date']
    """
    return ["id", "longitude", "latitude", *(p for p in schema.properties if p != "id")]


def csv_chunks(
    layer: Layer, positions: np.ndarray, attribution: Mapping[str, str] | None = None
) -> Iterator[bytes]:
    """One CSV row per point feature (UTF-8, with a header), as byte chunks.

    Lists of sources become one cell ("publication (date): title <url> | ..."), other lists and
    objects become JSON, booleans true/false, nulls empty. Text cells that a spreadsheet would
    run as a formula are neutralised (see `neutralise`); numbers are written as numbers.
    With `attribution` (dataset key -> the credit its terms require), a last column
    `attribution` gives each row the credit of every dataset its `origins` name.
    """
    writer = CsvWriter(layer.schema, attribution)
    yield writer.header.encode("utf-8")
    for start in range(0, len(positions), CHUNK_FEATURES):
        lines = writer.lines(Columns.of(layer, positions[start : start + CHUNK_FEATURES]))
        yield "".join(lines).encode("utf-8")


class CsvWriter:
    """The CSV of `csv_chunks`: its header line, and the lines of the rows of some `Columns`
    (CRLF included), made a column at a time by the types each holds (`_csv_texts`): the same
    text as the csv module writes of `_cell` of each cell, without a call per cell."""

    def __init__(self, schema: LayerSchema, attribution: Mapping[str, str] | None = None):
        self.columns = csv_columns(schema)
        self.attribution = attribution
        head = io.StringIO()
        csv.writer(head, lineterminator="\r\n").writerow(
            self.columns if attribution is None else [*self.columns, "attribution"]
        )
        self.header = head.getvalue()
        self._credits: dict[Any, str] = {}

    def lines(self, found: "Columns") -> list[str]:
        texts = [
            _csv_texts("id", found.ids),
            _csv_texts("longitude", [p[0] for p in found.points]),
            _csv_texts("latitude", [p[1] for p in found.points]),
        ]
        texts += [_csv_texts(c, found.properties[c], found) for c in self.columns[3:]]
        if self.attribution is not None:
            origins = found.properties.get("origins") or [None] * len(found.ids)
            texts.append(_csv_texts("attribution", [self._credit(o) for o in origins]))
        return [",".join(row) + "\r\n" for row in zip(*texts, strict=True)]

    def _credit(self, origins: Any) -> str:
        """The credits of every dataset a row's `origins` name, as one neutralised cell."""
        if origins not in self._credits:
            credits = self.attribution or {}
            keys = str(origins or "").split(",")
            self._credits[origins] = _cell("; ".join(credits[k] for k in keys if k in credits))
        return self._credits[origins]


@dataclass
class Columns:
    """Features of a layer taken apart: ids, point coordinates (of a point layer) and each
    property's values, by column: as parsed, or (`json`) with every value of a list or object
    property (sources, parties, ...) that is not null as its JSON text."""

    ids: list[Any]
    points: list[Any]
    properties: dict[str, list[Any]]
    json: bool = False
    # json_texts already made: the CSV and the GeoPackage of one batch encode each column once.
    _texts: dict[str, list[Any]] = field(default_factory=dict, repr=False)
    # Each row's JSON text of a list or object property, as a layer file holds it (`decoded`):
    # what tells the distinct values apart without encoding them again (`each_distinct`).
    _raw: dict[str, list[bytes]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, layer: Layer, positions: np.ndarray, json: bool = False) -> "Columns":
        """The features at `positions`: decoded from a layer file's bytes in one call, other
        layers' parsed CHUNK_FEATURES at a time. With `json`, the columns hold only strings and
        numbers, which the cyclic garbage collector never scans, however many rows they hold;
        parsed values are containers it scans again and again."""
        if isinstance(layer, FileLayer) and layer.raw is not None and layer.offsets is not None:
            found = runs(layer.raw, layer.offsets, positions, separator=b",")
            if found is not None:
                text = Stretches(b"[", layer.raw, *found, tail=b"]").readall()
                return cls.decoded(layer.schema, text, json)
        chunks = (
            [orjson.loads(layer.feature_bytes(i)) for i in chunk.tolist()]
            for chunk in np.split(positions, range(CHUNK_FEATURES, len(positions), CHUNK_FEATURES))
        )
        return cls.parsed(layer.schema, chunks, json)

    @classmethod
    def decoded(cls, layer: LayerSchema, text: bytes | bytearray, json: bool = False) -> "Columns":
        """`parsed` of a JSON array of features of a layer of schema `layer` (a layer file's
        bytes), decoded straight into columns (msgspec): no dict is made per feature, and a
        list or object property is kept as its JSON text until asked for, each distinct text
        parsed once (most rows share their empty lists, their flags, a dataset's citation).
        Its values are then shared between the rows that hold the same text."""
        decoder = _decoder(layer)
        features = decoder.decode(text)
        nested = _nested(layer)
        found = cls([f.id for f in features], [], {}, json)
        if layer.geometry_types == ("Point",):
            found.points = [f.geometry.coordinates for f in features]
        # each feature's properties as a tuple, transposed into columns: no call per value
        props = map(msgspec.structs.astuple, [f.properties for f in features])
        columns = list(zip(*props, strict=True)) or [()] * len(layer.properties)
        for name, column in zip(layer.properties, columns, strict=True):
            values = list(column)
            if name not in nested:
                found.properties[name] = values
                continue
            raw = [b"null" if v is None else bytes(v) for v in values]
            found._raw[name] = raw
            made = _parsed_json_text if json else orjson.loads
            found.properties[name] = _made_per_key(raw, made)
        return found

    @classmethod
    def parsed(
        cls, layer: LayerSchema, chunks: Iterable[list[dict[str, Any]]], json: bool = False
    ) -> "Columns":
        """`of` features already parsed (given in chunks), of a layer of schema `layer`."""
        names = list(layer.properties)
        nested = _nested(layer)
        point = layer.geometry_types == ("Point",)
        found = cls([], [], {name: [] for name in names}, json)
        every = operator.itemgetter(*names)
        texts = _EachDistinct(_json_text_or_none)
        for features in chunks:
            found.ids.extend([f["id"] for f in features])
            if point:
                found.points.extend([f["geometry"]["coordinates"] for f in features])
            props = [f["properties"] for f in features]
            columns: list[Sequence[Any]]
            try:  # every property there (as the build writes them): one C call per feature
                columns = list(zip(*map(every, props), strict=True)) if props else []
            except KeyError:
                columns = [[p.get(name) for p in props] for name in names]
            for name, values in zip(names, columns, strict=False):
                encode = json and name in nested
                found.properties[name].extend(texts.of(values) if encode else values)
        return found

    def take(self, keep: np.ndarray) -> "Columns":
        """The rows where `keep` (booleans, one per row) is true."""
        if keep.all():
            return self
        chosen = np.flatnonzero(keep).tolist()

        def pick(values: list[Any]) -> list[Any]:
            return [values[i] for i in chosen]

        points = pick(self.points) if self.points else []
        properties = {k: pick(v) for k, v in self.properties.items()}
        raw = {k: pick(v) for k, v in self._raw.items()}
        return Columns(pick(self.ids), points, properties, self.json, _raw=raw)

    def json_texts(self, name: str) -> list[Any]:
        """A list or object property's values as JSON text (None for null)."""
        if self.json:
            return self.properties[name]
        if name not in self._texts:
            self._texts[name] = self.each_distinct(name, _json_text_or_none)
        return self._texts[name]

    def each_distinct(self, name: str, make: Callable[[Any], Any]) -> list[Any]:
        """make(value) of each row's value of a list or object property (parsed, not as
        JSON text), made once per distinct value."""
        values = self.properties[name]
        if self.json:  # each value is its JSON text already, or None

            def parsed(text: str | None) -> Any:
                return make(None if text is None else orjson.loads(text))

            return _made_per_key(values, parsed)
        raw = self._raw.get(name)
        if raw is not None:
            by_text = dict(zip(raw, values, strict=True))
            return _made_per_key(raw, lambda text: make(by_text[text]))
        return _EachDistinct(make).of(values)


class _EachDistinct:
    """make(value) of many values, made once per distinct value (many features share their
    empty lists, their flags, a dataset's citation): told apart by orjson's bytes of it."""

    LIMIT = 10_000

    def __init__(self, make: Callable[[Any], Any]) -> None:
        self.make = make
        self._known: dict[bytes, Any] = {}

    def of(self, values: Iterable[Any]) -> list[Any]:
        known, dumps, make = self._known, orjson.dumps, self.make
        out: list[Any] = []
        for v in values:
            try:
                key = dumps(v)
            except TypeError:  # beyond what orjson writes (an integer past 64 bits)
                out.append(make(v))
                continue
            if key in known:
                out.append(known[key])
                continue
            made = make(v)
            if len(known) < self.LIMIT:
                known[key] = made
            out.append(made)
        return out


def _made_per_key(keys: list[Any], make: Callable[[Any], Any]) -> list[Any]:
    """make(key) for each of `keys`, made once per distinct key."""
    made = dict.fromkeys(keys)
    for key in made:
        made[key] = make(key)
    return list(map(made.__getitem__, keys))


def _parsed_json_text(text: bytes) -> str | None:
    """JSON text as `_json_text` writes it (None for null)."""
    return _json_text_or_none(orjson.loads(text))


def _json_text_or_none(value: Any) -> str | None:
    return None if value is None else _json_text(value)


_DECODERS: dict[Any, msgspec.json.Decoder] = {}


def _nested(layer: LayerSchema) -> set[str]:
    """The list and object properties of a layer."""
    return {n for n, types in layer.properties.items() if list in types or dict in types}


def _decoder(layer: LayerSchema) -> msgspec.json.Decoder:
    """A decoder of a JSON array of the layer's features, its properties' fields in the
    schema's order (named p0, p1, ...: a property's name may be no Python identifier). Each feature
    is decoded into a struct of its id, its geometry (a point's coordinates; any other kept as
    unparsed text) and its properties, those of the schema only (a missing one is None), list
    and object ones as unparsed text. Other values are decoded as JSON gives them, as orjson
    does (but integers past 64 bits are kept as integers, where orjson makes them floats)."""
    key = (layer.name, layer.geometry_types, tuple(layer.properties.items()))
    if key not in _DECODERS:
        nested = _nested(layer)
        names = [f"p{i}" for i in range(len(layer.properties))]
        fields = [
            (field, msgspec.Raw if name in nested else Any, None)
            for field, name in zip(names, layer.properties, strict=True)
        ]
        rename = dict(zip(names, layer.properties, strict=True))
        properties = msgspec.defstruct("Properties", fields, rename=rename, gc=False)
        point = msgspec.defstruct("Point", [("coordinates", Any)], gc=False)
        geometry = point if layer.geometry_types == ("Point",) else msgspec.Raw
        feature = msgspec.defstruct(
            "Feature", [("id", Any), ("geometry", geometry), ("properties", properties)], gc=False
        )
        _DECODERS[key] = msgspec.json.Decoder(list[feature])  # type: ignore[valid-type]
    return _DECODERS[key]


_NUMBERS = {int, float, type(None)}
_TEXTS = {str, type(None)}
_BOOLEANS = {bool, type(None)}
_NESTED = {list, dict, type(None)}


def _csv_texts(column: str, values: list[Any], found: "Columns | None" = None) -> list[str]:
    """The CSV text of each value of one column: its `_cell` as the csv module writes it (None
    empty, a number as str writes it, text as it is unless it holds a comma, a quote or a line
    break: then quoted, its quotes doubled). Decided once by the types the column holds, text
    once per distinct value: most columns repeat a few names, or are all None. `found`: the
    Columns the values are of (see _csv_cells)."""
    kinds, distinct = _kinds(values)
    if column == "sources" or not (kinds <= _NUMBERS or kinds <= _TEXTS):
        values = _csv_cells(column, values, kinds, found)
        kinds, distinct = _kinds(values)
    if kinds <= _NUMBERS:  # 1 and 1.0 are one key of a dict: each written on its own
        if type(None) in kinds:
            return ["" if v is None else str(v) for v in values]
        return list(map(str, values))
    if kinds <= _TEXTS:
        assert distinct is not None  # _kinds gives a text column's distinct values
        if type(None) not in kinds and not _csv_changes(distinct):
            return values  # nothing to neutralise or quote: the column as it is
        if len(distinct) * 4 < len(values):
            texts = {v: _csv_text(v if v is None else neutralise(v)) for v in distinct}
            return list(map(texts.__getitem__, values))
        return [_csv_text(v if v is None else neutralise(v)) for v in values]
    return [_csv_text(v) for v in values]  # numbers and text: cells _csv_cells made


def _kinds(values: list[Any]) -> tuple[set[type], set[Any] | None]:
    """The types a column's values are of, and its distinct values if they are all text (str
    or None), else None. A column that begins with text is taken as a set at once, and its
    types read from the set: text and None never equal a value of another type, so the set
    keeps every type the column holds (1 and 1.0 and True would be one key: a column holding
    them is never taken for text)."""
    distinct = None
    if values and type(values[0]) in _TEXTS:
        try:
            distinct = set(values)
        except TypeError:  # a list or an object: not text
            pass
        if distinct is not None and not all(type(v) in _TEXTS for v in distinct):
            distinct = None
    return set(map(type, values if distinct is None else distinct)), distinct


def _csv_changes(texts: Iterable[str]) -> bool:
    """Is any of these text cells written otherwise than as it is (quoted, or neutralised)?
    Asked of them joined by NULs, not of each: a NUL within a text can only make a column be
    written cell by cell, which is never wrong."""
    joined = "\0" + "\0".join(texts)
    return bool(_QUOTING.search(joined) or _FORMULA_AFTER_NUL.search(joined))


# What makes the csv module quote a cell (QUOTE_MINIMAL, "\r\n" between rows).
_QUOTING = re.compile('[,"\r\n]')
_FORMULA_AFTER_NUL = re.compile("\0[=+\\-@\t\r]")  # FORMULA_STARTS


def _csv_cells(
    column: str, values: list[Any], kinds: set[type], found: "Columns | None" = None
) -> list[Any]:
    """`_cell` of every value of a column that holds neither only numbers nor only text (of
    types `kinds`), or of `sources`, which is flattened: text, numbers or None (an empty cell).
    `found`: the Columns the values are of, which may know their distinct values
    (Columns.each_distinct) and have their JSON texts made already (Columns.json_texts)."""
    if column == "sources":  # a citation is often that of many rows: each flattened once
        if found is not None:
            return found.each_distinct(column, _sources_cell)
        return _EachDistinct(_sources_cell).of(values)
    if kinds <= _BOOLEANS:
        return [None if v is None else ("true" if v else "false") for v in values]
    if kinds <= _NESTED:  # JSON text never starts like a formula: `_cell` would keep it as is
        if found is not None:
            return found.json_texts(column)
        return _EachDistinct(_json_text_or_none).of(values)
    return [_cell(v) for v in values]


def _sources_cell(sources: Any) -> str:
    return neutralise(flatten_sources(sources or []))


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if type(value) is not str:
        return str(value)
    if _QUOTING.search(value) is None:
        return value
    return '"' + value.replace('"', '""') + '"'


def neutralise(text: str) -> str:
    """Text a spreadsheet will show as text, never evaluate as a formula.

    >>> neutralise("=HYPERLINK(\\"http://x\\")"), neutralise("Khar")
    ('\\'=HYPERLINK("http://x")', 'Khar')
    """
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def flatten_sources(sources: Iterable[dict[str, Any]]) -> str:
    """A list of citations as one readable cell.

    >>> flatten_sources([{"publication": "Dawn", "title": "Blast", "date": "2023-07", "url": ""}])
    'Dawn (2023-07): Blast'
    """
    parts = []
    for s in sources:
        text = f"{s.get('publication', '')} ({s.get('date', '')}): {s.get('title', '')}"
        text = text.replace(" ()", "")
        if s.get("url"):
            text += f" <{s['url']}>"
        parts.append(text)
    return " | ".join(parts)


def _cell(value: Any) -> Any:
    kind = type(value)
    if kind is str:  # most cells: decided first, a million rows are written at a time
        return neutralise(value)
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, list | dict):
        value = _json_text(value)
    return neutralise(str(value))


# json.dumps(value, ensure_ascii=False), without making an encoder for every value.
_JSON = json.JSONEncoder(ensure_ascii=False)


def _json_text(value: Any) -> str:
    """A value as JSON text, as json.dumps(value, ensure_ascii=False) writes it."""
    if not value and type(value) is list:
        return "[]"
    return _JSON.encode(value)


# --- GeoPackage ---------------------------------------------------------------------------------

# The CRS of every table, as pyogrio's write_dataframe gave it (WKT1, since OGC:CRS84 has no EPSG
# code), so the tables are what they were before they were written from Arrow.
GEOPACKAGE_CRS = pyproj.CRS("OGC:CRS84").to_wkt("WKT1_GDAL")
_PROMOTE = {
    "Point": shapely.multipoints,
    "LineString": shapely.multilinestrings,
    "Polygon": shapely.multipolygons,
}


def write_geopackage(
    path: Path,
    parts: Iterable[tuple[Layer, np.ndarray, dict[str, str]]],
) -> None:
    """Write each (layer, positions, metadata) as a table of one GeoPackage at `path`.

    Lists and objects (sources, aliases, fence, ...) are stored as JSON text, since a
    GeoPackage column holds one scalar. Polygon and line layers that may mix single and multi
    parts are written as Multi* throughout, as GeoPackage tables want one geometry type.
    `metadata` goes to the table's GDAL metadata (shown by QGIS under the layer's properties).
    """
    for layer, positions, metadata in parts:
        write_geopackage_table(path, layer.schema, geopackage_batches(layer, positions), metadata)


def geopackage_batches(layer: Layer, positions: np.ndarray) -> Iterator[pa.RecordBatch]:
    """The rows of the features at `positions`, GPKG_BATCH at a time (`geopackage_rows`); at
    least one batch, empty for no positions, so that every table is made."""
    for start in range(0, max(len(positions), 1), GPKG_BATCH):
        batch = positions[start : start + GPKG_BATCH]
        yield geopackage_rows(layer, batch, Columns.of(layer, batch, json=True))


# SQLite's page cache while GDAL writes a table (MB, per write). Its default, a few MB, is too
# small for a large table's B-tree and spatial index: a million points took 7.4-8.1 s to write
# with it, 5.9-6.4 s with 16 to 1,024 MB (32 MB: +30 MB of memory).
GEOPACKAGE_CACHE_MB = 32


def write_geopackage_table(
    path: Path, schema: LayerSchema, batches: Iterable[pa.RecordBatch], metadata: dict[str, str]
) -> int:
    """Add a table of `schema`'s layer to the GeoPackage at `path` (made if missing), its rows
    from `batches` (at least one, as `geopackage_rows` makes them) and its GDAL metadata
    `metadata`; the number of rows written.

    One write of a stream of batches, not an append per batch: GDAL fills the spatial index
    once at the end of a write, but row by row through its triggers on an append, which made
    four appends of 50,000 points take 3.5 times as long as one write of 200,000."""
    batches = iter(batches)
    first = next(batches)
    count = 0

    def counted() -> Iterator[pa.RecordBatch]:
        nonlocal count
        for batch in itertools.chain([first], batches):
            count += batch.num_rows
            yield batch

    multi = _multi(schema)
    pyogrio.set_gdal_config_options({"OGR_SQLITE_CACHE": GEOPACKAGE_CACHE_MB})
    pyogrio.write_arrow(
        pa.RecordBatchReader.from_batches(first.schema, counted()),
        path,
        layer=schema.name,
        driver="GPKG",
        geometry_name="geometry",
        geometry_type=schema.geometry_types[-1] if multi else schema.geometry_types[0],
        crs=GEOPACKAGE_CRS,
        layer_metadata=metadata,
    )
    return count


def geopackage_rows(layer: Layer, positions: np.ndarray, found: Columns) -> pa.RecordBatch:
    """The features at `positions` (taken apart: `found`) as an Arrow batch of the layer's
    GeoPackage table: one typed column per property (nullable booleans and integers stay
    booleans and integers; lists and objects become JSON text) and the geometry as WKB, single
    parts made multi in a layer that may hold both."""
    if layer.schema.geometry_types == ("Point",):
        return point_rows(layer.schema, found)
    geometries = layer.geometries()[positions]
    if _multi(layer.schema):
        geometries = _promoted(geometries)
    return _table_rows(layer.schema, found, pa.array(shapely.to_wkb(geometries), pa.binary()))


def point_rows(schema: LayerSchema, found: Columns) -> pa.RecordBatch:
    """geopackage_rows of a point layer's features, their points as `found` holds them (the
    coordinates parsed: a layer's index holds the same)."""
    xy = np.array([(p[0], p[1]) for p in found.points], dtype=float).reshape(-1, 2)
    return _table_rows(schema, found, point_wkb(xy))


# WKB of a 2D point as shapely writes it: little-endian (1), type Point (1), x, y.
_POINT_WKB = np.dtype([("order", "u1"), ("kind", "<u4"), ("x", "<f8"), ("y", "<f8")])


def point_wkb(xy: np.ndarray) -> pa.Array:
    """Points (an n × 2 array of x, y) as WKB, the bytes shapely.to_wkb gives them, written
    straight into one buffer: no geometry made per point."""
    wkb = np.empty(len(xy), dtype=_POINT_WKB)
    wkb["order"], wkb["kind"], wkb["x"], wkb["y"] = 1, 1, xy[:, 0], xy[:, 1]
    size = _POINT_WKB.itemsize
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(size), len(xy), [None, pa.py_buffer(wkb)]
    )
    return fixed.cast(pa.binary())


def _table_rows(schema: LayerSchema, found: Columns, wkb: pa.Array) -> pa.RecordBatch:
    """The rows' columns, and their geometries (as WKB)."""
    columns = {}
    for name, types in schema.properties.items():
        nested = list in types or dict in types
        values = found.json_texts(name) if nested else found.properties[name]
        columns[name] = pa.array(values, type=_arrow_type(types))
    columns["geometry"] = wkb
    return pa.record_batch(columns)


def _multi(schema: LayerSchema) -> bool:
    """Whether the layer may hold multi-part geometries: its table is then Multi* throughout
    (a GeoPackage table has one geometry type), its single parts promoted."""
    return any(t.startswith("Multi") for t in schema.geometry_types)


def _arrow_type(types: tuple[type, ...]) -> pa.DataType:
    """A property's column type, by the JSON types it may hold."""
    if bool in types:
        return pa.bool_()
    if int in types and float not in types:
        return pa.int64()
    if float in types and not (list in types or dict in types or str in types):
        return pa.float64()
    return pa.string()


def _promoted(geometries: np.ndarray) -> np.ndarray:
    """Single-part geometries as multi-part ones of one part; the others as they are."""
    kinds = shapely.get_type_id(geometries)
    out = geometries.copy()
    for single, multi in _PROMOTE.items():
        chosen = kinds == shapely.GeometryType[single.upper()]
        if chosen.any():
            out[chosen] = multi(np.atleast_2d(geometries[chosen]), axis=0)
    return out
