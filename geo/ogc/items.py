"""OGC API – Features requests as plain functions over plain arguments, without any web framework
(as pygeoapi's api/itemtypes.py): the web layer (app/ogc.py) passes the store, the licence
policy, the query parameters as (name, value) pairs, the media type the Accept header prefers,
and the API's base URL; it gets back an `Answer` (body and media type) and does the HTTP
(ETag, 304, compression, CORS).

    query = items_query(store, "attacks", [("limit", "10")], preferred=None)
    answer = items(store, policy, query, "https://kpmap.example.org/ogc")

What leaves the server is decided the same way everywhere: the API and the downloads share
`selection`, `sources` and `attribution` (geo.downloads, which the build uses too) and
`layer_name` (here).
"""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from geo.downloads import attribution, selection, sources
from geo.errors import InvalidQuery, LayerNotFound
from geo.export import geojson_chunks
from geo.licences import RowPolicy
from geo.ogc import documents, params
from geo.ogc.html import render_html
from geo.ogc.openapi import openapi_document
from geo.query import FILTER_PARAMS, filter_notes, parse_filters, shown
from geo.store import FeatureNotFound, Store

TITLE = "kpmap: militant violence in Khyber Pakhtunkhwa"
DESCRIPTION = (
    "Districts of Khyber Pakhtunkhwa, the Durand Line and its fence, and geocoded attacks, "
    "as OGC API – Features collections (GeoJSON and HTML)."
)
# What the Accept header may choose among, in the server's order of preference.
MEDIA_TYPES = (params.JSON, params.GEOJSON, params.OPENAPI_JSON, params.HTML)


class Args(Mapping[str, str]):
    """Query parameters as (name, value) pairs, read as geo.query reads them (get, getlist):
    a Mapping of each name's first value, plus getlist."""

    def __init__(self, pairs: Iterable[tuple[str, str]]):
        self.pairs = list(pairs)

    def getlist(self, key: str) -> list[str]:
        return [v for k, v in self.pairs if k == key]

    def __contains__(self, key: object) -> bool:
        return any(k == key for k, _ in self.pairs)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k for k, _ in self.pairs))

    def __len__(self) -> int:
        return len(dict.fromkeys(k for k, _ in self.pairs))

    def __getitem__(self, key: str) -> str:
        """The first value given for key (as werkzeug's MultiDict answers)."""
        for k, v in self.pairs:
            if k == key:
                return v
        raise KeyError(key)


@dataclass(frozen=True)
class Answer:
    body: bytes
    media_type: str


@dataclass(frozen=True)
class ItemsQuery:
    """A checked items request: the collection, encoding, page and Store.select arguments."""

    name: str
    fmt: str
    limit: int
    offset: int
    kwargs: dict[str, Any]
    args: Args


# --- shared with the downloads ------------------------------------------------------------------


def layer_name(store: Store, name: str) -> str:
    """A layer the store holds; anything else (../../etc/passwd, NUL bytes) is a 404 that
    never touches the file system: layers are looked up only among those loaded."""
    if name not in store.layer_names:
        raise LayerNotFound(
            f"no layer {shown(name)}; the layers are: {', '.join(store.layer_names)}"
        )
    return name


def withheld_notice(store: Store, policy: RowPolicy, name: str) -> dict[str, Any] | None:
    """What the licences withhold of a whole collection (None for layers without rows)."""
    _, withheld = selection(store, policy, name, {})
    return None if withheld is None else withheld.notice(policy.datasets)


# --- requests -----------------------------------------------------------------------------------


def output_format(
    pairs: Iterable[tuple[str, str]], preferred: str | None, allowed: Iterable[str], what: str
) -> str:
    """json or html: from `f`, else from the media type Accept prefers (JSON unless HTML).

    Checks first that every query parameter is one of `allowed` (/req/core/query-param-unknown:
    a parameter the API does not define is a 400, not silently ignored).
    """
    args = Args(pairs)
    allowed = tuple(allowed)
    for key in args:
        if key not in allowed:
            raise InvalidQuery(
                f"unknown parameter {shown(key)} for {what}; allowed: {', '.join(allowed)}"
            )
    f = args.get("f")
    if f is not None:
        if f not in ("json", "html"):
            raise InvalidQuery("f must be json or html")
        return f
    return "html" if preferred == params.HTML else "json"


def encode(doc: dict[str, Any], fmt: str, title: str, base: str, json_type: str = params.JSON):
    if fmt == "html":
        return Answer(render_html(doc, title, base).encode(), params.HTML)
    return Answer(orjson.dumps(doc), json_type)


def landing(base: str, fmt: str) -> Answer:
    return encode(documents.landing_page(base, fmt, TITLE, DESCRIPTION), fmt, TITLE, base)


def conformance(base: str, fmt: str) -> Answer:
    return encode(documents.conformance(base, fmt), fmt, "Conformance", base)


def api_definition(store: Store, base: str, fmt: str) -> Answer:
    schemas = {name: store.layer(name).schema for name in store.layer_names}
    doc = openapi_document(store.manifest, schemas, base, TITLE)
    return encode(doc, fmt, "API definition", base, json_type=params.OPENAPI_JSON)


def collections(store: Store, policy: RowPolicy, base: str, fmt: str) -> Answer:
    withheld = {name: withheld_notice(store, policy, name) for name in store.layer_names}
    doc = documents.collections(store.manifest, list(store.layer_names), base, fmt, withheld)
    return encode(doc, fmt, "Collections", base)


def collection(store: Store, policy: RowPolicy, name: str, base: str, fmt: str) -> Answer:
    notice = withheld_notice(store, policy, name)
    doc = documents.collection(store.manifest, name, base, fmt, notice)
    return encode(doc, fmt, doc["title"], base)


def items_query(
    store: Store, collection_id: str, pairs: Iterable[tuple[str, str]], preferred: str | None
) -> ItemsQuery:
    """Check an items request: the collection, every parameter, limit and offset, bbox,
    datetime and the layer's property filters (InvalidQuery or LayerNotFound says what is
    wrong)."""
    name = layer_name(store, collection_id)
    args = Args(pairs)
    schema = store.layer(name).schema
    filters = (*schema.filterable, *schema.range_filters)
    fmt = output_format(
        args.pairs, preferred, (*params.ITEMS_PARAMS, *filters), f"the items of {name}"
    )
    limit = params.parse_limit(args.get("limit"))
    offset = params.parse_offset(args.get("offset"))
    return ItemsQuery(name, fmt, limit, offset, _items_filters(store, name, filters, args), args)


def items(store: Store, policy: RowPolicy, query: ItemsQuery, base: str) -> Answer:
    """One page of a collection's features, with numberMatched, links, notes, and what the
    licences withheld (/req/core/fc-response)."""
    name, args = query.name, query.args
    positions, withheld = selection(store, policy, name, query.kwargs)
    page = positions[query.offset : query.offset + query.limit]
    members: dict[str, Any] = {
        "numberMatched": len(positions),
        "numberReturned": len(page),
        "timeStamp": documents.timestamp(),
        "links": documents.items_links(
            base, name, args.pairs, query.fmt, query.offset, query.limit, len(positions)
        ),
    }
    layer = store.layer(name)
    prefetch = getattr(layer, "prefetch", None)  # a database's: the page in one query
    if prefetch is not None:
        prefetch(page)
    if "district" in (*layer.schema.filterable, *layer.schema.range_filters):
        if notes := filter_notes(args):
            members["notes"] = notes  # a successor or former district: which polygons it selected
    if withheld is not None:
        members["withheld"] = withheld.notice(policy.datasets)
        members["attribution"] = attribution(sources(store, policy, name, page))
    if query.fmt == "html":
        doc = {"type": "FeatureCollection", **members}
        doc["features"] = [layer.feature_at(i) for i in page.tolist()]
        title = f"{layer.schema.title}: features"
        html = render_html(doc, title, base, f"{base}/collections/{name}/items")
        return Answer(html.encode(), params.HTML)
    return Answer(b"".join(geojson_chunks(layer, page, members)), params.GEOJSON)


def item(
    store: Store, policy: RowPolicy, collection_id: str, feature_id: str, base: str, fmt: str
) -> Answer:
    """One feature, found by its id or (an attack) the id of any record linked into it; a
    withheld attack raises RowWithheld (403)."""
    name = layer_name(store, collection_id)
    layer = store.layer(name)
    position = layer.position(feature_id)
    if position is None:
        raise FeatureNotFound(
            f"collection {name} has no feature {shown(feature_id)}; list them at "
            f"/ogc/collections/{name}/items"
        )
    feature = dict(layer.feature_at(position))
    if name == "attacks":
        policy.check(layer, position, str(feature["id"]))
        feature["attribution"] = attribution(sources(store, policy, name, np.array([position])))
    feature["links"] = documents.feature_links(base, name, str(feature["id"]), fmt)
    title = f"{layer.schema.title}: {feature['id']}"
    return encode(feature, fmt, title, base, json_type=params.GEOJSON)


def _items_filters(store: Store, name: str, filters: tuple[str, ...], args: Args) -> dict[str, Any]:
    """Store.select arguments from bbox, datetime and the property filters.

    The map's filters (bbox, actor, event_type, district, max_border_km) go through
    geo.query, so the API accepts exactly what the map does (district names and aliases
    too); other properties with a closed set of values are checked against it.
    """
    shared = Args(
        (k, v) for k, v in args.pairs if k == "bbox" or (k in FILTER_PARAMS and k in filters)
    )
    kwargs = parse_filters(shared, name)
    for key in filters:
        if key in FILTER_PARAMS or key not in args:
            continue
        values = [v.strip() for item in args.getlist(key) for v in item.split(",") if v.strip()]
        if any(ord(c) < 32 for v in values for c in v):
            raise InvalidQuery(f"{key} contains control characters (e.g. NUL); remove them")
        if values:
            kwargs[key] = params.check_enumeration(key, values)
    if args.get("datetime"):
        start, end = params.parse_datetime(args["datetime"])
        # /req/core/fc-time-response C: features without time match any datetime.
        if store.layer(name).schema.time:
            if start:
                kwargs["start"] = start
            if end:
                kwargs["end"] = end
    return kwargs
