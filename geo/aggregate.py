"""What the web map draws, computed from the store: a columnar table of the attacks, per-district
and per-tehsil totals under the filters, colour classes for the choropleths, bands along the
border.

The page needs a few properties of every matching attack (where, which group, how many killed,
when, how precisely located). Parsing each attack's GeoJSON on every request would cost seconds
for 100,000 attacks, so `attack_table` takes them once per store from the layer's arrays (the
store's index: no feature is parsed), and a request only asks the store which positions match
(`store.select`) and indexes the columns.
"""

import math
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.geometry import shape

from geo import border
from geo.crs import EARTH_RADIUS, web_mercator
from geo.geojson import COORDINATE_DECIMALS
from geo.geojson import feature as geojson_feature
from geo.store import Store

METRICS = {
    "attacks": "events",  # every conflict event: the category filter narrows it to attacks
    "killed": "people killed (best estimate)",
    "injured": "people injured (lower figure)",
}
# Sequential classes, light to dark (ColorBrewer YlOrRd, 5 classes); districts with none stay pale.
CLASS_COLOURS = ("#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026")
ZERO_COLOUR = "#f2f2f2"
BAND_KM = (10, 25, 50)
EPOCH = date(1970, 1, 1).toordinal()  # day numbers count from here, as JavaScript's Date does


@dataclass(frozen=True)
class AttackTable:
    """Columns of the attacks layer, in the layer's order (row i is position i of the layer)."""

    ids: np.ndarray  # str objects
    lon: np.ndarray
    lat: np.ndarray
    actor: np.ndarray  # index into actors, whose "" is an event with no named perpetrator
    actors: tuple[str, ...]
    category: np.ndarray  # index into categories (geo.vocab.CATEGORIES)
    categories: tuple[str, ...]
    district: np.ndarray  # index into districts
    districts: tuple[str, ...]
    tehsil: np.ndarray  # index into tehsils, whose "" is an attack known only to its district
    tehsils: tuple[str, ...]
    killed: np.ndarray  # best estimate, else low, else high; NaN when not reported
    injured: np.ndarray  # low figure, else high; NaN when not reported
    precision: np.ndarray  # geo_precision: 1 place, 2 near it, 3 district only
    start: np.ndarray  # first and last day of the attack's date span, days since 1970-01-01
    end: np.ndarray
    x: np.ndarray  # Web Mercator metres, for gridding at a zoom level
    y: np.ndarray
    publications: tuple[tuple[str, str], ...]  # (publication, date) of every source cited

    def __len__(self) -> int:
        return len(self.ids)


# Every cache here is keyed by the Store object itself (one object, one version: see
# geo.store.live) and held weakly, so a store that is no longer served takes its tables with it
# and no table of one version is ever read for another.
_tables: "weakref.WeakKeyDictionary[Store, AttackTable]" = weakref.WeakKeyDictionary()
_reading: "weakref.WeakKeyDictionary[Store, threading.Lock]" = weakref.WeakKeyDictionary()
_bands: "weakref.WeakKeyDictionary[Store, dict]" = weakref.WeakKeyDictionary()
_outlines: "weakref.WeakKeyDictionary[Store, dict[tuple, bytes]]" = weakref.WeakKeyDictionary()
# The map's outlines and border come simplified below a pixel for the zoom they are seen at: the
# first, province-wide view (FIRST_ZOOM or less) loads them without a zoom; closer, the page asks
# for its zoom's. Outlines past OUTLINE_MAX_ZOOM are that zoom's (a few hundred KB, within 2 px
# up to 13); the border from BORDER_FULL_ZOOM on has every vertex (the download's detail).
FIRST_ZOOM = 7
OUTLINE_MAX_ZOOM = 11
BORDER_FULL_ZOOM = 14
# Web Mercator stretches latitude by 1 / cos(latitude): up to 1.25 at KP's and the border's
# northern end (37 N), so a tolerance in degrees covers 1.25 times more pixels north-south.
MAX_STRETCH = 1.25
_lock = threading.Lock()


def attack_table(store: Store) -> AttackTable:
    """The store's attacks as columns, read on first use and kept as long as the store.

    Read by one thread per store, outside the module's lock: a new store's table (a second or
    two for a million attacks) never holds up requests still answered from the old one.
    """
    with _lock:
        table = _tables.get(store)
        if table is not None:
            return table
        reading = _reading.setdefault(store, threading.Lock())
    with reading:
        with _lock:
            table = _tables.get(store)
        if table is None:
            table = _read_table(store)
            with _lock:
                _tables[store] = table
                _reading.pop(store, None)
        return table


def _read_table(store: Store) -> AttackTable:
    # Every column comes from the layer's arrays (geo.store.layer): no feature is parsed, so a
    # million attacks take a second or two rather than a minute.
    layer = store.layer("attacks")
    lon, lat = layer.points().T
    actor, actors = layer.column("actor")
    category, categories = layer.column("category")
    district, districts = layer.column("district")
    tehsil, tehsils = layer.column("tehsil")
    precision, precisions = layer.column("geo_precision")
    number = layer.number
    spans = layer.time_spans()
    assert spans is not None  # the attacks layer has time (geo.store.schemas)
    first_day, last_day = spans
    x, y = web_mercator(lon, lat)
    return AttackTable(
        ids=layer.ids,
        lon=lon,
        lat=lat,
        actor=actor.astype(np.int16),
        actors=tuple(actors.tolist()),
        category=category.astype(np.int8),
        categories=tuple(categories.tolist()),
        district=district.astype(np.int16),
        districts=tuple(districts.tolist()),
        tehsil=tehsil.astype(np.int16),
        tehsils=tuple(tehsils.tolist()),
        killed=_first_number(number("killed_best"), number("killed_low"), number("killed_high")),
        injured=_first_number(number("injured_low"), number("injured_high")),
        precision=precisions.astype(np.int8)[precision],
        start=(first_day - EPOCH).astype(np.int32),
        end=(last_day - EPOCH).astype(np.int32),
        x=x,
        y=y,
        publications=tuple(map(tuple, store.manifest["layers"]["attacks"]["publications"])),
    )


def _first_number(*columns: np.ndarray) -> np.ndarray:
    """Per row, the first column's value that is a number; NaN ("not reported") if none is."""
    result = columns[-1]
    for column in reversed(columns[:-1]):
        result = np.where(np.isnan(column), result, column)
    return result


def select(store: Store, filters: dict[str, Any]) -> np.ndarray:
    """Positions of the attacks that match `filters` (store.query keyword arguments)."""
    return store.select("attacks", **filters)


def district_totals(table: AttackTable, rows: np.ndarray) -> dict[str, dict[str, int]]:
    """Attacks, killed and injured per district id over the given rows (only districts with any)."""
    return _area_totals(table, rows, table.district, table.districts)


def tehsil_totals(table: AttackTable, rows: np.ndarray) -> dict[str, dict[str, int]]:
    """Attacks, killed and injured per tehsil id over the given rows (only tehsils with any).

    An attack known only to its district is in no tehsil's totals (see `tehsil_unplaced`): its
    point is the district's representative point, which lies in some tehsil it need not be in.
    """
    totals = _area_totals(table, rows, table.tehsil, table.tehsils)
    totals.pop("", None)
    return totals


def tehsil_unplaced(table: AttackTable, rows: np.ndarray) -> dict[str, int]:
    """Per district id, how many of the rows are known only to the district and so are in no
    tehsil's totals, e.g. {"bajaur": 2}. Districts with none are left out."""
    if "" not in table.tehsils:
        return {}
    unplaced = rows[table.tehsil[rows] == table.tehsils.index("")]
    counts = np.bincount(table.district[unplaced], minlength=len(table.districts))
    return {name: int(counts[i]) for i, name in enumerate(table.districts) if counts[i]}


def _area_totals(
    table: AttackTable, rows: np.ndarray, column: np.ndarray, names: tuple[str, ...]
) -> dict[str, dict[str, int]]:
    codes = column[rows]
    size = len(names)
    counts = np.bincount(codes, minlength=size)
    killed = np.bincount(codes, weights=np.nan_to_num(table.killed[rows]), minlength=size)
    injured = np.bincount(codes, weights=np.nan_to_num(table.injured[rows]), minlength=size)
    return {
        name: {"attacks": int(counts[i]), "killed": int(killed[i]), "injured": int(injured[i])}
        for i, name in enumerate(names)
        if counts[i]
    }


def colour_classes(values: Sequence[float], k: int = len(CLASS_COLOURS)) -> list[dict[str, Any]]:
    """Up to k classes over the positive values, each {min, max, colour, label}.

    Breaks are quantiles of the distinct values, so a few extreme districts do not squeeze every
    other into the first class; the values are whole numbers, so classes do not overlap.
    >>> [c["label"] for c in colour_classes([0, 1, 2, 2, 9])]
    ['1', '2', '3–9']
    """
    distinct = sorted({int(v) for v in values if v > 0})
    if not distinct:
        return []
    k = min(k, len(distinct))
    uppers = sorted({distinct[math.ceil((i + 1) * len(distinct) / k) - 1] for i in range(k)})
    # spread the colours over the whole ramp when there are fewer classes than colours
    picks = [round(i * (len(CLASS_COLOURS) - 1) / max(len(uppers) - 1, 1)) for i in range(k)]
    classes, low = [], 1
    for upper, pick in zip(uppers, picks, strict=False):
        label = f"{low:,}" if low == upper else f"{low:,}–{upper:,}"
        classes.append({"min": low, "max": upper, "colour": CLASS_COLOURS[pick], "label": label})
        low = upper + 1
    return classes


def compact_attacks(table: AttackTable, rows: np.ndarray) -> dict[str, Any]:
    """The matching attacks as columns for the page's script: a few bytes per attack, so 100,000
    attacks travel as a few MB instead of the 70 MB their GeoJSON takes. Popups fetch the whole
    feature by id."""
    killed = table.killed[rows]
    injured = table.injured[rows]
    return {
        "count": int(len(rows)),
        "actors": list(table.actors),
        "categories": list(table.categories),
        "districts": list(table.districts),
        "id": table.ids[rows].tolist(),
        "lon": np.round(table.lon[rows], 5),
        "lat": np.round(table.lat[rows], 5),
        "actor": table.actor[rows],
        "category": table.category[rows],
        "district": table.district[rows],
        # -1 for "not reported" (JSON has no NaN); the popup shows what the source says
        "killed": np.where(np.isnan(killed), -1, killed).astype(np.int32),
        "injured": np.where(np.isnan(injured), -1, injured).astype(np.int32),
        "precision": table.precision[rows],
        "start": table.start[rows],
        "end": table.end[rows],
    }


def in_window(table: AttackTable, rows: np.ndarray, window: tuple[int, int] | None) -> np.ndarray:
    """The rows whose date span overlaps [first day, last day] (days since 1970-01-01)."""
    if window is None:
        return rows
    first, last = window
    return rows[(table.start[rows] <= last) & (table.end[rows] >= first)]


def clusters(
    table: AttackTable,
    rows: np.ndarray,
    zoom: int,
    bbox: tuple[float, float, float, float] | None = None,
    cell_px: int = 64,
    withheld: np.ndarray | None = None,
) -> dict[str, Any]:
    """The rows aggregated on a grid of `cell_px` screen pixels at `zoom`, for maps of more
    attacks than a browser can cluster itself (see maps.CLIENT_LIMIT), or holding attacks whose
    dataset's terms allow only aggregates (`withheld`, True per attack in the store's order).

    Returns {"cells": columns of the cells holding two or more attacks, or a withheld one
    (centroid, count, killed, the most frequent group), "points": the other lone attacks as
    compact_attacks columns, "district_only": attacks known only to their district, per
    district}. Attacks known only to their district are never gridded: a cell or point would
    claim a place the sources don't give.
    """
    precise = _in_bbox(table, rows[table.precision[rows] != 3], bbox)
    keys = _grid_keys(table, precise, zoom, cell_px)
    _, first, inverse, counts = np.unique(
        keys, return_index=True, return_inverse=True, return_counts=True
    )
    lone = counts == 1
    if withheld is not None:  # a withheld attack alone in its cell stays a cell: no id, no popup
        lone &= ~withheld[precise[first]]
    n_actors = max(len(table.actors), 1)
    by_actor = np.bincount(
        inverse * n_actors + table.actor[precise], minlength=len(counts) * n_actors
    ).reshape(-1, n_actors)
    many = ~lone
    cells = {
        "lat": np.round(np.bincount(inverse, table.lat[precise]) / counts, 5)[many],
        "lon": np.round(np.bincount(inverse, table.lon[precise]) / counts, 5)[many],
        "count": counts[many],
        "killed": np.bincount(inverse, np.nan_to_num(table.killed[precise]))[many].astype(np.int64),
        "actor": by_actor.argmax(axis=1)[many],
    }
    return {
        "cells": cells,
        "points": compact_attacks(table, np.sort(precise[first[lone]])),
        "district_only": district_only(table, rows, withheld=withheld),
    }


def heat_cells(
    table: AttackTable,
    rows: np.ndarray,
    zoom: int,
    bbox: tuple[float, float, float, float] | None = None,
    cell_px: int = 8,
) -> dict[str, Any]:
    """Attack counts on a fine grid (8 screen pixels at `zoom`) for the heat map: at most a few
    thousand weighted points whatever the number of attacks."""
    rows = _in_bbox(table, rows, bbox)
    keys = _grid_keys(table, rows, zoom, cell_px)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return {
        "lat": np.round(np.bincount(inverse, table.lat[rows]) / counts, 4),
        "lon": np.round(np.bincount(inverse, table.lon[rows]) / counts, 4),
        "count": counts,
    }


def district_only(
    table: AttackTable, rows: np.ndarray, sample: int = 50, withheld: np.ndarray | None = None
) -> dict[str, Any]:
    """Attacks known only to their district: per district id, the count and the first `sample`
    of them (compact_attacks columns), for the dashed district outlines. Attacks `withheld`
    (True per attack in the store's order) are counted, in `withheld` too, but never sampled."""
    vague = rows[table.precision[rows] == 3]
    found = {}
    for code in np.unique(table.district[vague]):
        in_district = vague[table.district[vague] == code]
        hidden = withheld[in_district] if withheld is not None else np.zeros(0, dtype=bool)
        listed = in_district[~hidden] if hidden.any() else in_district
        found[table.districts[code]] = {
            "count": int(len(in_district)),
            "withheld": int(hidden.sum()),
            "sample": compact_attacks(table, listed[:sample]),
        }
    return found


def map_outlines(store: Store, layer: str, zoom: int | None = None) -> bytes:
    """The districts or tehsils for the map's choropleths: every property, with the polygons
    simplified together (shapely.coverage_simplify keeps shared edges shared, so no gaps or
    overlaps appear) below a pixel at `zoom` (FIRST_ZOOM without one, OUTLINE_MAX_ZOOM at most;
    see `zoom_tolerance`). At full detail the two layers are 4.4 MB; the downloads and the tiles
    keep full detail. GeoJSON bytes, computed once per store and zoom."""
    zoom = FIRST_ZOOM if zoom is None else max(FIRST_ZOOM, min(zoom, OUTLINE_MAX_ZOOM))
    key = (layer, zoom)
    with _lock:
        cached = _outlines.setdefault(store, {})
        if key not in cached:
            source = store.layer(layer)
            tolerance = zoom_tolerance(zoom)
            simplified = shapely.coverage_simplify(source.geometries(), tolerance)
            cached[key] = _collection(source, _on_grid(simplified, tolerance))
        return cached[key]


def map_border(store: Store, zoom: int | None = None) -> bytes:
    """The Durand Line for the map, every property kept: below a pixel at `zoom` (FIRST_ZOOM
    without one), and every vertex from BORDER_FULL_ZOOM on. Each stretch is simplified alone,
    its ends kept, so the stretches still meet. GeoJSON bytes, computed once per store and
    zoom."""
    zoom = FIRST_ZOOM if zoom is None else max(FIRST_ZOOM, min(zoom, BORDER_FULL_ZOOM))
    key = ("durand_line", zoom)
    with _lock:
        cached = _outlines.setdefault(store, {})
        if key not in cached:
            source = store.layer("durand_line")
            lines = source.geometries()
            if zoom < BORDER_FULL_ZOOM:
                tolerance = zoom_tolerance(zoom)
                lines = _on_grid(shapely.simplify(lines, tolerance), tolerance)
            cached[key] = _collection(source, lines)
        return cached[key]


def detail_zoom(zoom: int | float | None, kind: str) -> int | None:
    """The zoom whose outlines (kind "outlines") or border ("border") a map seen at `zoom`
    asks for; None for the first view's (FIRST_ZOOM or less). The page's script (map.js,
    detailedUrl) decides alike.

    >>> [detail_zoom(z, "outlines") for z in (None, 5, 7, 8, 11, 16)]
    [None, None, None, 8, 11, 11]
    >>> [detail_zoom(z, "border") for z in (7, 8, 13.5, 18)]
    [None, 8, 14, 14]
    """
    if zoom is None or math.ceil(zoom) <= FIRST_ZOOM:
        return None
    return min(math.ceil(zoom), OUTLINE_MAX_ZOOM if kind == "outlines" else BORDER_FULL_ZOOM)


def zoom_tolerance(zoom: int) -> float:
    """Degrees that stay below half a pixel at `zoom` anywhere up to 37 N (Web Mercator's
    256-pixel tiles: 360 / 256 / 2**zoom degrees of longitude per pixel).

    >>> round(zoom_tolerance(7), 5), round(zoom_tolerance(14), 6)
    (0.00439, 3.4e-05)
    """
    return 0.5 * 360 / (256 * 2**zoom) / MAX_STRETCH


def _on_grid(geometries: np.ndarray, tolerance: float) -> np.ndarray:
    """Coordinates rounded to the decimals a tolerance needs (an error of at most a quarter of
    it): 3 decimals at 0.004 degrees rather than 6, half the bytes. Shared vertices of
    neighbours round alike, so shared edges stay shared."""
    decimals = min(COORDINATE_DECIMALS, math.ceil(-math.log10(tolerance / 2)))
    return shapely.transform(geometries, lambda xy: np.round(xy, decimals))


def _collection(source: Any, geometries: np.ndarray) -> bytes:
    features = []
    for i, geometry in enumerate(geometries):
        feature = source.feature_at(i)
        features.append(geojson_feature(feature["id"], geometry, feature["properties"]))
    return orjson.dumps({"type": "FeatureCollection", "features": features})


def border_bands(store: Store, distances: tuple[int, ...] = BAND_KM) -> dict[str, Any]:
    """Bands on the Pakistani side of the Durand Line, e.g. 0–10, 10–25 and 25–50 km from it
    (geo.border.border_bands), as a FeatureCollection of one Polygon/MultiPolygon per band.
    Computed once per store.
    """
    with _lock:
        bands = _bands.get(store)
        if bands is None:
            bands = _bands[store] = _band_features(store, distances)
        return bands


def _band_features(store: Store, distances: tuple[int, ...]) -> dict[str, Any]:
    line = shapely.union_all(store.layer("durand_line").geometries())
    pakistan = [shape(f["geometry"]) for f in store.query("countries", id="pakistan")]
    features, previous = [], 0
    for km, band in border.border_bands(line, shapely.union_all(pakistan), distances):
        properties = {"min_km": previous, "max_km": km, "label": f"{previous}–{km} km"}
        features.append(geojson_feature(f"band-{km}", band, properties))
        previous = km
    return {"type": "FeatureCollection", "features": features}


def _in_bbox(
    table: AttackTable, rows: np.ndarray, bbox: tuple[float, float, float, float] | None
) -> np.ndarray:
    """The rows whose point lies in bbox (all of them when there is none)."""
    if bbox is None:
        return rows
    minx, miny, maxx, maxy = bbox
    lon, lat = table.lon[rows], table.lat[rows]
    return rows[(lon >= minx) & (lon <= maxx) & (lat >= miny) & (lat <= maxy)]


def _grid_keys(table: AttackTable, rows: np.ndarray, zoom: int, cell_px: int) -> np.ndarray:
    """One integer per grid cell of `cell_px` screen pixels at `zoom` (Web Mercator metres)."""
    cell = 2 * np.pi * EARTH_RADIUS / (256 * 2**zoom) * cell_px
    column = np.floor(table.x[rows] / cell).astype(np.int64)
    return column * 2**32 + np.floor(table.y[rows] / cell).astype(np.int64)
