"""What each store layer holds, and `validate_store`, which lists every problem in a store."""

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import shapely

from geo.geojson import read_json, to_shape
from geo.store import integrity

# What a store folder holds (manifest, layer files, saved indexes): bumped whenever that changes,
# so that a store built by another version is rebuilt rather than misread. 5: the manifest's
# `files` records every file's sha256 and size (geo.store.integrity).
STORE_FORMAT = "kpmap-store/5"
NUMBER = (int, float)
OPTIONAL_STR = (str, type(None))
OPTIONAL_INT = (int, type(None))


@dataclass(frozen=True)
class LayerSchema:
    """A layer's geometry types and required properties (name -> allowed JSON types)."""

    name: str
    title: str
    geometry_types: tuple[str, ...]
    properties: dict[str, tuple[type, ...]]
    # (start, end) property names of the layer's time span, for layers that have one.
    time: tuple[str, str] | None = None
    # Properties a query may filter on with ?name=value.
    filterable: tuple[str, ...] = field(default=())
    # Numeric filters: query argument -> (property, comparison); e.g. max_border_km <= a limit.
    range_filters: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Numeric properties kept as arrays (every range filter's, and the figures the maps total).
    numbers: tuple[str, ...] = ()
    # A list property whose entries' "id"s also answer for the feature (attacks: `linked`, the
    # records of other datasets linked into it).
    aliases: str | None = None

    def __post_init__(self):
        unindexed = [p for p, _ in self.range_filters.values() if p not in self.numbers]
        if unindexed:
            raise ValueError(f"{self.name}: range filters on {unindexed} need them in numbers")


# Attack totals the build adds to each district and tehsil.
AREA_TOTALS = {
    key: (int,)
    for key in ("attacks", "killed_low", "killed_best", "killed_high")
    + ("injured_low", "injured_high")
}

LAYERS: dict[str, LayerSchema] = {
    "districts": LayerSchema(
        name="districts",
        title="Districts of Khyber Pakhtunkhwa",
        geometry_types=("Polygon", "MultiPolygon"),
        properties={
            "id": (str,),
            "pcode": (str,),
            "name": (str,),
            "aliases": (list,),
            "successors": (list,),
            "former_fata": (bool,),
            "frontier_region": OPTIONAL_STR,
            "area_km2": NUMBER,
            "source": (str,),
            **AREA_TOTALS,
            "facts": (list,),
        },
        filterable=("id", "pcode", "name", "former_fata"),
    ),
    "tehsils": LayerSchema(
        name="tehsils",
        title="Tehsils of Khyber Pakhtunkhwa",
        geometry_types=("Polygon", "MultiPolygon"),
        properties={
            "id": (str,),
            "pcode": (str,),
            "name": (str,),
            "district": (str,),
            "district_pcode": (str,),
            "former_frontier_region": (bool,),
            "frontier_region": OPTIONAL_STR,
            "area_km2": NUMBER,
            "source": (str,),
            **AREA_TOTALS,
        },
        filterable=("id", "pcode", "name", "district", "former_frontier_region"),
    ),
    "durand_line": LayerSchema(
        name="durand_line",
        title="Durand Line (Afghanistan–Pakistan border) and its fence",
        geometry_types=("LineString", "MultiLineString"),
        properties={
            "id": (str,),
            "name": (str,),
            "province": (str,),
            "measured_length_km": NUMBER,
            "measured_total_km": NUMBER,
            "reported_length_km": NUMBER,
            "reported_length_source": (dict,),
            "length_note": (str,),
            "fence": (list,),
            "source": (str,),
        },
        filterable=("id", "province"),
    ),
    "countries": LayerSchema(
        name="countries",
        title="Afghanistan and Pakistan (outlines for the basemap)",
        geometry_types=("Polygon", "MultiPolygon"),
        properties={"id": (str,), "name": (str,), "source": (str,)},
        filterable=("id", "name"),
    ),
    "attacks": LayerSchema(
        name="attacks",
        title="Attacks in Khyber Pakhtunkhwa",
        geometry_types=("Point",),
        properties={
            "id": (str,),
            "date": (str,),
            "date_precision": (str,),
            "date_end": OPTIONAL_STR,
            "location": (str,),
            "district": (str,),
            "tehsil": OPTIONAL_STR,
            "border_sliver_km": (int, float, type(None)),
            "geo_precision": (int,),
            # the perpetrator, where the source names one ("unknown": an attack the source
            # does not attribute); null when the event has no perpetrator (see `parties`)
            "actor": OPTIONAL_STR,
            "claimed": (bool, type(None)),
            "category": (str,),
            "parties": (list,),
            "deaths": (dict, type(None)),
            "district_reported": OPTIONAL_STR,
            "flags": (list,),
            "dataset": OPTIONAL_STR,
            "release": OPTIONAL_STR,
            "event_type": (str,),
            "target": (str,),
            "killed_low": OPTIONAL_INT,
            "killed_best": OPTIONAL_INT,
            "killed_high": OPTIONAL_INT,
            "injured_low": OPTIONAL_INT,
            "injured_high": OPTIONAL_INT,
            "description": (str,),
            "sources": (list,),
            "distance_to_border_km": NUMBER,
            "former_fata": (bool,),
            "origin": (str,),
            # every dataset whose rows the feature holds, comma-separated ("acled,ucdp" for an
            # event linked across two): licences (geo.licences) are decided by it
            "origins": (str,),
            "linked": (list,),
        },
        time=("date", "date_end"),
        filterable=(
            "id",
            "actor",
            "category",
            "event_type",
            "target",
            "district",
            "tehsil",
            "claimed",
            "origin",
            "origins",
            "date_precision",
            "geo_precision",
        ),
        range_filters={"max_border_km": ("distance_to_border_km", "<=")},
        aliases="linked",
        numbers=(
            "distance_to_border_km",
            "killed_low",
            "killed_best",
            "killed_high",
            "injured_low",
            "injured_high",
        ),
    ),
}


def validate_store(store: Path, features: bool = True) -> list[str]:
    """Every problem in the store at `store`: manifest, schema, geometry and RFC 7946 rules.

    Returns an empty list for a good store; never stops at the first problem. Without
    `features`, only the manifest and every file against its recorded hash (the build
    validated the features it wrote; a file unchanged since is as valid): seconds, not a
    minute, for a million attacks.
    """
    problems: list[str] = []
    shown, store = store, Path(store).resolve()  # the folder a store link points to
    try:
        manifest = json.loads((store / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"manifest.json: cannot be read: {exc}"]
    if not isinstance(manifest, dict):
        return ["manifest.json: not a JSON object"]
    if manifest.get("format") != STORE_FORMAT:
        problems.append(f"manifest.json: format {manifest.get('format')!r} is not {STORE_FORMAT!r}")
    # Every file against its recorded sha256 first: one line per damaged file, what to run.
    problems += integrity.problems(store, manifest, shown)
    layers = manifest.get("layers", {})
    for name in LAYERS:
        if name not in layers:
            problems.append(f"manifest.json: layer {name!r} is missing")
    for name, entry in layers.items():
        if name not in LAYERS:
            problems.append(f"manifest.json: unknown layer {name!r}")
            continue
        if not features:
            continue
        layer_problems, count = validate_layer_file(store / entry["file"], LAYERS[name])
        problems += [f"{name}: {p}" for p in layer_problems]
        if count is not None and count != entry.get("count"):
            problems.append(
                f"{name}: manifest says {entry.get('count')} features, file has {count}"
            )
    return problems


def validate_layer_file(path: Path, schema: LayerSchema) -> tuple[list[str], int | None]:
    """Every problem in one layer file, and its feature count (None if it has no feature list)."""
    try:
        collection = read_json(path)
    except (OSError, ValueError) as exc:
        return [f"{path.name}: cannot be read as JSON: {exc}"], None
    if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection":
        return [f"{path.name}: not a GeoJSON FeatureCollection"], None
    problems = []
    if "crs" in collection:
        problems.append(f"{path.name}: has a 'crs' member (RFC 7946 §4: WGS 84 only, no crs)")
    features = collection.get("features")
    if not isinstance(features, list):
        return problems + [f"{path.name}: 'features' is not a list"], None
    return problems + validate_features(features, schema), len(features)


def validate_features(
    features: Iterable[Any],
    schema: LayerSchema,
    first: int = 0,
    seen: set[Any] | None = None,
) -> list[str]:
    """Every problem in a layer's features (schema, ids, geometry), e.g. before they are written.

    For a layer checked in parts (a build writes a million attacks a chunk at a time): `first`
    is the number of the first feature, and `seen` the ids of the parts before (it is updated).

    Each feature is first checked at a glance (below): one that passes has no problem that
    validate_feature would find; any other is checked in full, for the same messages.
    """
    problems = []
    seen = set() if seen is None else seen
    glance = _Glance(schema)
    for i, feat in enumerate(features, first):
        found = [] if glance(feat) else validate_feature(feat, schema)
        fid = feat.get("id") if isinstance(feat, dict) else None
        if isinstance(fid, str | int):  # other ids are reported above, and may be unhashable
            if fid in seen:
                found.append("duplicate id")
            seen.add(fid)
        if found:
            where = f"feature #{i} ({fid!r})" if isinstance(feat, dict) else f"feature #{i}"
            problems += [f"{where}: {p}" for p in found]
    return problems


class _Glance:
    """Does a feature certainly pass validate_feature? Asked in a few microseconds: the types of
    its properties, taken all at once, are looked up among the combinations already judged, and
    a Point's coordinates are compared directly. Only exact types pass (a subclass, a missing
    property or any other geometry is left to validate_feature), so a pass is never wrong."""

    def __init__(self, schema: LayerSchema):
        self.keys = tuple(schema.properties)
        self.allowed = tuple(schema.properties.values())
        self.point = schema.geometry_types == ("Point",)
        self.judged: dict[tuple[type, ...], bool] = {}

    def __call__(self, feat: Any) -> bool:
        if type(feat) is not dict or feat.get("type") != "Feature":
            return False
        fid = feat.get("id")
        props = feat.get("properties")
        if (type(fid) is not str and type(fid) is not int) or type(props) is not dict:
            return False
        types = tuple(map(type, map(props.get, self.keys, repeat(_MISSING))))
        good = self.judged.get(types)
        if good is None:
            good = self.judged[types] = all(
                t in allowed for t, allowed in zip(types, self.allowed, strict=True)
            )
        if not good or ("id" in props and props["id"] != fid):
            return False
        geometry = feat.get("geometry")
        if not self.point or type(geometry) is not dict or geometry.get("type") != "Point":
            return False
        position = geometry.get("coordinates")
        if type(position) is not list or len(position) != 2:
            return False
        lon, lat = position
        return (
            (type(lon) is float or type(lon) is int)
            and (type(lat) is float or type(lat) is int)
            and -180 <= lon <= 180  # NaN fails the comparison: validate_feature words it
            and -90 <= lat <= 90
        )


_MISSING = object()


def validate_feature(feat: Any, schema: LayerSchema) -> list[str]:
    """Every problem in one GeoJSON feature against the layer schema."""
    if not isinstance(feat, dict) or feat.get("type") != "Feature":
        return ["not a GeoJSON Feature"]
    problems = []
    if not isinstance(feat.get("id"), str | int) or isinstance(feat.get("id"), bool):
        problems.append("has no string or number id")
    props = feat.get("properties")
    if not isinstance(props, dict):
        problems.append("properties is not an object")
        props = {}
    for key, types in schema.properties.items():
        value = props.get(key, _MISSING)
        if type(value) in types:  # the common case, decided without isinstance
            continue
        if value is _MISSING:
            problems.append(f"property {key!r} is missing")
        elif not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            allowed = " or ".join(t.__name__ for t in types)
            problems.append(f"property {key!r} is {type(value).__name__}, expected {allowed}")
    if "id" in props and "id" in feat and props["id"] != feat["id"]:
        problems.append("properties.id differs from the feature id")
    problems += validate_geometry(feat.get("geometry"), schema.geometry_types)
    return problems


def validate_geometry(geometry: Any, allowed: tuple[str, ...]) -> list[str]:
    """Type, coordinate range, ring closure and orientation (RFC 7946 §3.1.6), OGC validity."""
    if not isinstance(geometry, dict) or geometry.get("type") not in allowed:
        kind = geometry.get("type") if isinstance(geometry, dict) else type(geometry).__name__
        return [f"geometry type {kind} is not one of {', '.join(allowed)}"]
    if geometry["type"] == "Point":
        return _point_problems(geometry.get("coordinates"))
    problems = []
    coords = geometry.get("coordinates") or []
    polygons = {"Polygon": [coords], "MultiPolygon": coords}.get(geometry["type"], [])
    for polygon in polygons:
        for k, ring in enumerate(polygon):
            if len(ring) < 4 or ring[0] != ring[-1]:
                problems.append("a polygon ring is not closed or has fewer than 4 positions")
                continue
            exterior = k == 0
            if (_signed_area(ring) > 0) != exterior:
                which = "exterior ring is clockwise" if exterior else "hole is counter-clockwise"
                problems.append(f"{which} (RFC 7946 §3.1.6: exterior rings counter-clockwise)")
    try:
        shape = to_shape(geometry)
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        return problems + [f"geometry cannot be read: {exc}"]
    minx, miny, maxx, maxy = shape.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        problems.append(f"coordinates out of longitude/latitude range: bounds {shape.bounds}")
    if not shape.is_valid:
        problems.append(f"invalid geometry: {shapely.is_valid_reason(shape)}")
    return problems


def _point_problems(position: Any) -> list[str]:
    """A Point checked without shapely: a store may hold a million of them."""
    if (
        not isinstance(position, list)
        or len(position) not in (2, 3)
        or not all(isinstance(v, int | float) and math.isfinite(v) for v in position)
    ):
        return [f"point coordinates {position!r} are not [longitude, latitude]"]
    lon, lat = position[:2]
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        return [f"point ({lon}, {lat}) is out of longitude/latitude range"]
    return []


def _signed_area(ring: list[list[float]]) -> float:
    """Shoelace area: positive for a counter-clockwise ring in lon/lat."""
    return (
        sum(
            x0 * y1 - x1 * y0
            for (x0, y0, *_), (x1, y1, *_) in zip(ring[:-1], ring[1:], strict=True)
        )
        / 2
    )
