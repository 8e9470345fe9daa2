"""Downloads written as streams: GeoJSON and CSV chunk by chunk, GeoPackage batch by batch.

Every writer takes a layer and the positions `Store.select` chose, and turns a few thousand
features at a time into bytes, so memory stays flat whatever the store's size:

    positions = store.select("attacks", bbox=(70, 33, 72, 35))
    for chunk in geojson_chunks(store.layer("attacks"), positions, metadata={...}):
        out.write(chunk)
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import orjson
import pandas as pd
import pyogrio

from geo.store import Layer
from geo.store.schemas import LayerSchema

# Features per chunk: ~1-2 MB of GeoJSON, large enough that per-chunk costs vanish.
CHUNK_FEATURES = 2000
# Features per GeoPackage append: bounds the DataFrame held in memory while writing.
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
    are copied as the store holds them, without being parsed and re-encoded.
    """
    head = orjson.dumps({"type": "FeatureCollection", **(members or {})})
    yield head[:-1] + b',"features":['
    for start in range(0, len(positions), CHUNK_FEATURES):
        batch = positions[start : start + CHUNK_FEATURES].tolist()
        body = b",".join([layer.feature_bytes(i) for i in batch])
        yield b"," + body if start else body
    yield b"]}"


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
    columns = csv_columns(layer.schema)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns if attribution is None else [*columns, "attribution"])
    for start in range(0, len(positions), CHUNK_FEATURES):
        # Parsed one by one: each feature's objects die at once, where a parsed batch would
        # survive into older GC generations and make the collector scan the whole store.
        for i in positions[start : start + CHUNK_FEATURES].tolist():
            feature = orjson.loads(layer.feature_bytes(i))
            row = _csv_row(feature, columns)
            if attribution is not None:
                origins = str(feature["properties"].get("origins") or "").split(",")
                row.append(_cell("; ".join(attribution[o] for o in origins if o in attribution)))
            writer.writerow(row)
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():  # no features: the header alone
        yield buffer.getvalue().encode("utf-8")


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


def _csv_row(feature: dict[str, Any], columns: list[str]) -> list[Any]:
    """The cells of one feature's row: id, longitude, latitude, then `columns[3:]` (properties)."""
    props = feature["properties"]
    lon, lat = feature["geometry"]["coordinates"][:2]
    row = [_cell(feature["id"]), lon, lat]
    for column in columns[3:]:
        value = props.get(column)
        row.append(_cell(flatten_sources(value or []) if column == "sources" else value))
    return row


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
        value = json.dumps(value, ensure_ascii=False)
    return neutralise(str(value))


# --- GeoPackage ------------------------------------------------------------------------------


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
        schema = layer.schema
        multi = any(t.startswith("Multi") for t in schema.geometry_types)
        geometry_type = schema.geometry_types[-1] if multi else schema.geometry_types[0]
        for start in range(0, max(len(positions), 1), GPKG_BATCH):
            batch = positions[start : start + GPKG_BATCH]
            pyogrio.write_dataframe(
                _frame(layer, batch),
                path,
                layer=schema.name,
                driver="GPKG",
                geometry_type=geometry_type,
                promote_to_multi=multi,
                append=start > 0,
                layer_metadata=metadata if start == 0 else None,
            )


def _frame(layer: Layer, positions: np.ndarray) -> gpd.GeoDataFrame:
    """The features at `positions` as a GeoDataFrame with one typed column per property.

    Each feature is parsed and taken apart at once, lists and objects turned into JSON text:
    the columns then hold only strings and numbers, which the cyclic garbage collector never
    scans, instead of 50,000 parsed features that it would scan again and again.
    """
    schema = layer.schema
    nested = [p for p, types in schema.properties.items() if list in types or dict in types]
    columns: dict[str, list[Any]] = {p: [] for p in schema.properties}
    for i in positions.tolist():
        properties = orjson.loads(layer.feature_bytes(i))["properties"]
        for prop in nested:
            value = properties.get(prop)
            properties[prop] = None if value is None else json.dumps(value, ensure_ascii=False)
        for prop, values in columns.items():
            values.append(properties.get(prop))
    data = {p: _column(columns[p], types) for p, types in schema.properties.items()}
    geometry = gpd.GeoSeries(layer.geometries()[positions], crs="OGC:CRS84")
    return gpd.GeoDataFrame(data, geometry=geometry, crs="OGC:CRS84")


def _column(values: list[Any], types: tuple[type, ...]) -> pd.Series:
    """A typed column: nullable booleans and integers stay booleans and integers in the file;
    text (and the JSON text of lists and objects) stays text, None a null."""
    if bool in types:
        return pd.Series(values, dtype="boolean")
    if int in types and float not in types:
        return pd.Series(values, dtype="Int64")
    if float in types and not (list in types or dict in types or str in types):
        return pd.Series(values, dtype="float64")
    return pd.Series(values, dtype=object)
