"""The map's filters, parsed once for the map page, the downloads, the OGC API and the tiles.

    kwargs = parse_filters(request.args)              # for the attacks layer
    features = store.query("attacks", **kwargs)
    metadata = {"filters": describe_filters(kwargs)}

The query parameters are declared once, in FILTERS (name, what it takes, an example): the map,
the downloads, the OGC API, the tiles and the OpenAPI document read them from there, and a test
checks docs/api.md's filters table against it. All are optional; lists are comma-separated or
repeated, and mean "any of".

Parameters outside this list are ignored, not errors: the map page and the tiles have their own
parameters (basemap, zoom, f, limit, ...) in the same query string, and each view checks those
itself. An empty value (`actor=`) means "no filter", as an empty form field does.

A filter that the layer cannot take (an actor on the districts layer) and any value that is not
allowed raise InvalidQuery (400) with a message that lists what is allowed. Messages echo at
most a short, sanitised copy of the value (see `shown`), since the map page shows them in HTML.
"""

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from geo.dates import PERIOD, period
from geo.districts import DistrictName, name_index, resolve_district
from geo.errors import InvalidQuery, LayerNotFound
from geo.store.files import parse_bbox
from geo.store.schemas import LAYERS
from geo.vocab import CATEGORIES, EVENT_TYPES, read_actors


@dataclass(frozen=True)
class Filter:
    name: str  # the query parameter
    help: str  # what it takes (docs/api.md's table and the OpenAPI document say the same)
    example: str


FILTERS: tuple[Filter, ...] = (
    Filter("bbox", "minx,miny,maxx,maxy in WGS 84 longitude/latitude", "bbox=70,33,72,35"),
    Filter("from", "first day, inclusive: YYYY-MM-DD, YYYY-MM or YYYY", "from=2024-01"),
    Filter("to", "last day, inclusive: YYYY-MM-DD, YYYY-MM or YYYY", "to=2024-04"),
    Filter(
        "actor",
        "perpetrator group keys from data/actors.toml (any case), comma-separated",
        "actor=ISKP,TTP",
    ),
    Filter("category", "event categories: " + ", ".join(CATEGORIES), "category=armed clash"),
    Filter("event_type", "attack types: " + ", ".join(EVENT_TYPES), "event_type=suicide bombing"),
    Filter(
        "district",
        "district ids, names, aliases or P-codes (PK501-PK535); a district created since 2022 "
        "selects the polygon that holds it, a former district every polygon it became, and the "
        "answer says so",
        "district=D.I. Khan,PK502",
    ),
    Filter("max_border_km", "only events within N km of the Durand Line", "max_border_km=25"),
)
# The filter namespace, in the order describe_filters lists them.
FILTER_PARAMS: tuple[str, ...] = tuple(f.name for f in FILTERS)
FILTER_HELP: dict[str, str] = {f.name: f.help for f in FILTERS}
# Guards against absurd inputs; no legitimate filter comes near them.
MAX_VALUE_LENGTH = 2000
MAX_LIST_ITEMS = 100

# What `shown` keeps of a value; everything else becomes "?" so no markup survives.
_UNSAFE = re.compile(r"[^A-Za-z0-9 _.,:;/()+\-]")


def parse_filters(args: Mapping[str, str], layer: str = "attacks") -> dict[str, Any]:
    """Keyword arguments for `store.query(layer, ...)` from the map's query parameters.

    Returns only the filters given, e.g. {"bbox": (70.0, 33.0, 72.0, 35.0), "start": "2024-01",
    "actor": ["ISKP"]}. On the districts layer `district` becomes `id`. Raises InvalidQuery for a
    bad value or a filter the layer cannot take, LayerNotFound for an unknown layer.
    """
    if layer not in LAYERS:
        raise LayerNotFound(f"no layer {shown(layer)}; the layers are: {', '.join(LAYERS)}")
    given = {key: _values(args, key) for key in FILTER_PARAMS}
    given = {key: values for key, values in given.items() if values}
    if layer != "attacks":
        allowed = area_filters(layer)
        for key in given:
            if key not in allowed:
                raise InvalidQuery(
                    f"layer {layer} cannot be filtered by {key}; its filters are: "
                    + ", ".join(allowed)
                )
    kwargs: dict[str, Any] = {}
    for key, values in given.items():
        if key == "bbox":
            kwargs["bbox"] = parse_bbox_text(_single(key, values))
        elif key == "from":
            kwargs["start"] = parse_date(key, _single(key, values))
        elif key == "to":
            kwargs["end"] = parse_date(key, _single(key, values))
        elif key == "actor":
            kwargs["actor"] = [_actor(v) for v in values]
        elif key == "category":
            kwargs["category"] = [_choice(key, v, CATEGORIES) for v in values]
        elif key == "event_type":
            kwargs["event_type"] = [_choice(key, v, EVENT_TYPES) for v in values]
        elif key == "district":
            ids = [i for v in values for i in _district(v).ids]
            kwargs["id" if layer == "districts" else "district"] = list(dict.fromkeys(ids))
        elif key == "max_border_km":
            kwargs["max_border_km"] = _distance(_single(key, values))
    if "start" in kwargs and "end" in kwargs:
        # A month or year covers all its days: from=2024-03&to=2024 is a window, not an error.
        if _first_day(kwargs["start"]) > _last_day(kwargs["end"]):
            raise InvalidQuery(f"from={kwargs['start']} is after to={kwargs['end']}")
    return kwargs


def area_filters(layer: str) -> tuple[str, ...]:
    """The map filters a layer other than attacks takes: the districts and tehsils layers can be
    filtered by district too (on districts it selects the polygons themselves)."""
    return ("bbox", "district") if layer in ("districts", "tehsils") else ("bbox",)


def describe_filters(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The filters applied, under their query parameter names, for a download's metadata.

    >>> describe_filters({"start": "2024-01", "actor": ["ISKP"], "bbox": (70.0, 33.0, 72.0, 35.0)})
    {'bbox': [70.0, 33.0, 72.0, 35.0], 'from': '2024-01', 'actor': ['ISKP']}
    """
    names = {"start": "from", "end": "to", "id": "district"}
    described = {names.get(key, key): value for key, value in kwargs.items()}
    if "bbox" in described:
        described["bbox"] = list(described["bbox"])
    return {key: described[key] for key in FILTER_PARAMS if key in described}


def filter_notes(args: Mapping[str, str]) -> list[str]:
    """What the filters selected that their values do not say by name: a district created after
    the boundaries were drawn selects the polygon that holds it, a former district all the
    polygons it became. Values are checked by parse_filters first; unknown ones are skipped."""
    notes = []
    for value in _values(args, "district"):
        resolved = resolve_district(value)
        if resolved is not None and resolved.note:
            notes.append(resolved.note)
    return list(dict.fromkeys(notes))


def shown(value: Any, limit: int = 40) -> str:
    """A short copy of a user's value that is safe to put in any message, HTML included.

    >>> shown("<script>alert(1)</script>")
    "'?script?alert(1)?/script?'"
    """
    text = str(value)
    cut = text[:limit]
    return "'" + _UNSAFE.sub("?", cut) + ("..." if len(text) > limit else "") + "'"


def parse_bbox_text(text: str) -> tuple[float, float, float, float]:
    """Check "minx,miny,maxx,maxy" (or 6 numbers with heights, which are dropped).

    >>> parse_bbox_text("70,33,72,35")
    (70.0, 33.0, 72.0, 35.0)
    """
    parts = text.split(",")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(parts) not in (4, 6) or len(numbers) != len(parts):
        raise InvalidQuery(
            f"bbox {shown(text)} must be 4 comma-separated numbers: minx,miny,maxx,maxy "
            "(longitude/latitude), or 6 with minimum and maximum heights"
        )
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if not all(math.isfinite(n) for n in numbers):
        raise InvalidQuery("bbox must be finite numbers: minx,miny,maxx,maxy")
    if numbers[0] > numbers[2]:
        # The OGC API allows this for a box across the antimeridian; KP is far from it.
        raise InvalidQuery(
            f"bbox minx {numbers[0]:g} is greater than maxx {numbers[2]:g}: use "
            "minx,miny,maxx,maxy (boxes across the antimeridian are not supported)"
        )
    # parse_bbox checks ranges and order; its messages echo only the numbers, so stay safe.
    return parse_bbox(tuple(numbers))


def parse_date(key: str, text: str) -> str:
    """A checked date of day, month or year precision, returned as given (trimmed)."""
    match = PERIOD.match(text)
    if match:
        try:
            _first_day(text)
            return text
        except ValueError:
            raise InvalidQuery(
                f"{key}={shown(text)} does not exist as a date; use YYYY-MM-DD, YYYY-MM or YYYY"
            ) from None
    raise InvalidQuery(
        f"{key}={shown(text)} is not understood; use YYYY-MM-DD, or YYYY-MM or YYYY for a "
        "whole month or year"
    )


@functools.cache
def actor_keys() -> tuple[str, ...]:
    """The canonical group keys (data/actors.toml), read once."""
    return tuple(read_actors())


def _values(args: Mapping[str, str], key: str) -> list[str]:
    """Every non-empty value of `key`, whether repeated (a=1&a=2) or comma-separated."""
    raw = args.getlist(key) if hasattr(args, "getlist") else [args.get(key)]
    values: list[str] = []
    for item in raw:
        if item is None:
            continue
        if not isinstance(item, str):
            item = str(item)
        if len(item) > MAX_VALUE_LENGTH:
            raise InvalidQuery(f"{key} is longer than {MAX_VALUE_LENGTH} characters")
        if any(ord(c) < 32 or ord(c) == 127 for c in item):
            raise InvalidQuery(f"{key} contains control characters (e.g. NUL); remove them")
        if key == "bbox":
            values.append(item.strip())
        else:
            values += [v.strip() for v in item.split(",")]
    # Empty items count too ("a,,b" is three), as the OpenAPI document's maxItems counts them.
    if len(values) > MAX_LIST_ITEMS:
        raise InvalidQuery(f"{key} lists more than {MAX_LIST_ITEMS} values")
    return [v for v in values if v]


def _single(key: str, values: list[str]) -> str:
    if len(values) != 1:
        raise InvalidQuery(f"{key} takes one value, not {len(values)}")
    return values[0]


def _actor(value: str) -> str:
    keys = {k.casefold(): k for k in actor_keys()}
    try:
        return keys[value.casefold()]
    except KeyError:
        raise InvalidQuery(
            f"actor {shown(value)} is not a known group; allowed: {', '.join(actor_keys())}"
        ) from None


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> str:
    """One of a closed set of values (event types, categories), any case and spacing."""
    choices = {t.casefold(): t for t in allowed}
    try:
        return choices[" ".join(value.split()).casefold()]
    except KeyError:
        raise InvalidQuery(
            f"{key} {shown(value)} is not allowed; allowed: {', '.join(allowed)}"
        ) from None


def _district(value: str) -> DistrictName:
    resolved = resolve_district(value)
    if resolved is None:
        ids = sorted({i for name in name_index().values() for i in name.ids})
        raise InvalidQuery(
            f"district {shown(value)} is not a district of Khyber Pakhtunkhwa; use an id, a "
            "name or a P-code (PK501-PK535), e.g. " + ", ".join(ids[:5]) + ", ..."
        )
    return resolved


def _distance(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise InvalidQuery(f"max_border_km={shown(text)} must be a number >= 0 (kilometres)")
    return number


def _first_day(text: str) -> date:
    return period(text).first


def _last_day(text: str) -> date:
    return period(text).last
