"""Downloads (/download/...) and OGC API – Features (/ogc/...): thin views over geo.export and
geo.ogc. Each view parses its arguments, selects features from the store, and answers through
`_send`, which adds the HTTP behaviour every data endpoint shares: a weak ETag from the store's
manifest and the request (304 on If-None-Match), Cache-Control, gzip for JSON and CSV when the
client accepts it, and `Access-Control-Allow-Origin: *` so other sites can use the data.
"""

import atexit
import hashlib
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson
from flask import Blueprint, Response, current_app, request
from werkzeug.datastructures import MultiDict

from app import get_policy, get_store
from geo.errors import InvalidQuery, LayerNotFound
from geo.export import csv_chunks, geojson_chunks, write_geopackage
from geo.licences import Withheld
from geo.ogc import documents, params
from geo.ogc.html import render_html
from geo.ogc.openapi import openapi_document
from geo.query import (
    FILTER_PARAMS,
    area_filters,
    describe_filters,
    filter_notes,
    parse_filters,
    shown,
)
from geo.renders import RenderCache, render_key
from geo.store import FeatureNotFound, Store

bp = Blueprint("api", __name__)

API_TITLE = "kpmap: militant violence in Khyber Pakhtunkhwa"
API_DESCRIPTION = (
    "Districts of Khyber Pakhtunkhwa, the Durand Line and its fence, and geocoded attacks, "
    "as OGC API – Features collections (GeoJSON and HTML)."
)
# Bump when a response's bytes change for the same store and request, so cached ETags expire.
FORMAT_VERSION = "1"
CACHE_CONTROL = "public, max-age=300"
# The OGC resources pick HTML or JSON by Accept; JSON and CSV are gzipped by Accept-Encoding.
VARY = "Accept, Accept-Encoding"
GZIP_TYPES = ("application/json", params.GEOJSON, params.OPENAPI_JSON, "text/csv")
GZIP_MIN_BYTES = 1024
# zlib level 1: several times faster than the default and ~10% larger on GeoJSON, so a stream
# is not held back by its compression.
GZIP_LEVEL = 1
FILE_CHUNK = 1 << 20
# Where GeoPackages are kept between requests (DOWNLOAD_CACHE_DIR overrides it; geo.renders).
# In the shared temp folder it is one folder per user, private, so that no other local user can
# plant a file there.
DEFAULT_DOWNLOAD_CACHE = Path(tempfile.gettempdir()) / (
    f"kpmap-downloads-{os.getuid()}" if hasattr(os, "getuid") else "kpmap-downloads"
)
RENDERS_KEY = "kpmap.renders"
GEOPACKAGE = "application/geopackage+sqlite3"


@bp.after_request
def allow_any_origin(response: Response) -> Response:
    """Read-only public data: any site may fetch it (errors included, so clients see why)."""
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Expose-Headers"] = (
        "ETag, Content-Disposition, Kpmap-Withheld, Kpmap-Withheld-Reason"
    )
    return response


# --- downloads --------------------------------------------------------------------------------


@bp.get("/download/<layer>.geojson")
def download_geojson(layer: str):
    store = get_store()
    name = _layer_name(store, layer)
    kwargs, skipped = _download_filters(name)
    etag = _etag("geojson")
    if _not_modified(etag):
        return _not_modified_response(etag)
    positions, withheld = _selection(store, name, kwargs)
    metadata = _metadata(store, name, kwargs, skipped, positions, withheld)
    chunks = geojson_chunks(store.layer(name), positions, {"metadata": metadata})
    return _send(chunks, params.GEOJSON, etag, filename=_filename(store, name, "geojson"))


@bp.get("/download/<layer>.csv")
def download_csv(layer: str):
    store = get_store()
    name = _layer_name(store, layer)
    if name != "attacks":
        raise LayerNotFound(
            f"CSV is offered for the attacks layer only; download {name} as "
            f"/download/{name}.geojson or in /download/kpmap.gpkg"
        )
    kwargs, _ = _download_filters(name)
    etag = _etag("csv")
    if _not_modified(etag):
        return _not_modified_response(etag)
    positions, withheld = _selection(store, name, kwargs)
    # Each row carries its dataset's attribution, so that a row copied out of the file still
    # credits its source; what was withheld is said in the headers (a CSV has no metadata).
    credits = {s["dataset"]: s["attribution"] for s in _sources(store, name) if "dataset" in s}
    chunks = csv_chunks(store.layer(name), positions, attribution=credits)
    response = _send(chunks, "text/csv", etag, filename=_filename(store, name, "csv"))
    response.headers["Kpmap-Withheld"] = str(withheld.count)
    if withheld.count:
        reason = withheld.notice(get_policy().datasets)["reason"]
        response.headers["Kpmap-Withheld-Reason"] = reason.encode("ascii", "replace").decode()
    return response


@bp.get("/download/kpmap.gpkg")
def download_geopackage():
    """Every layer in one GeoPackage. [live-store hook 5] Rendered once per store version,
    licences and filters, and kept for every worker (geo.renders: one writer per key, the others
    wait; at most MAX_RENDERS at once, then 503 + Retry-After). A HEAD never renders: it gets
    the kept file's length, or no Content-Length before the file exists."""
    store = get_store()
    selections = []
    for name in store.layer_names:
        kwargs, skipped = _download_filters(name)
        selections.append((name, kwargs, skipped))
    etag = _etag("gpkg")
    if _not_modified(etag):
        return _not_modified_response(etag)
    filename = _filename(store, "kpmap", "gpkg")
    # Everything the file's bytes depend on besides the store (its version names the file).
    key = render_key(
        "gpkg", FORMAT_VERSION, get_policy().key, selections, filter_notes(request.args)
    )
    cache = _renders()
    if request.method == "HEAD":
        kept = cache.peek(store.version, key, ".gpkg")
        if kept is None:
            return _send(iter(()), GEOPACKAGE, etag, filename)  # the size is not known yet
        with kept:
            return _send(iter(()), GEOPACKAGE, etag, filename, os.fstat(kept.fileno()).st_size)
    f = cache.get(
        store.version, key, ".gpkg", lambda path: _write_geopackage(store, selections, path)
    )
    return _send_file(f, etag, filename)


def _write_geopackage(store: Store, selections: list, path: Path) -> None:
    parts = []
    for name, kwargs, skipped in selections:
        positions, withheld = _selection(store, name, kwargs)
        metadata = _metadata(store, name, kwargs, skipped, positions, withheld)
        # "kpmap_" and not "kpmap:": GDAL reads a ":" in a metadata key as the end of the key,
        # which made every item one key "kpmap" and QGIS showed only one of them.
        flat = {f"kpmap_{k}": orjson.dumps(v).decode() for k, v in metadata.items()}
        parts.append((store.layer(name), positions, flat))
    write_geopackage(path, parts)


def _renders() -> RenderCache:
    """The app's render cache in DOWNLOAD_CACHE_DIR (or, when that cannot be used, in a
    private temporary folder of this process's)."""
    cache = current_app.extensions.get(RENDERS_KEY)
    if cache is None:
        folder = _download_cache()
        if folder is None:
            folder = Path(tempfile.mkdtemp(prefix="kpmap-downloads-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
        cache = RenderCache(
            folder,
            max_bytes=int(current_app.config["DOWNLOAD_CACHE_MB"]) * 2**20,
            max_renders=int(current_app.config["MAX_RENDERS"]),
        )
        cache = current_app.extensions.setdefault(RENDERS_KEY, cache)
    return cache


def _download_cache() -> Path | None:
    """The folder downloads are kept in, made if need be; None if it cannot be used."""
    configured = current_app.config.get("DOWNLOAD_CACHE_DIR")
    folder = Path(configured or DEFAULT_DOWNLOAD_CACHE)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not configured and hasattr(os, "getuid") and folder.stat().st_uid != os.getuid():
            return None  # someone else's folder under our name in the shared temp folder
    except OSError:
        return None
    return folder


def _send_file(f: BinaryIO, etag: str, filename: str) -> Response:
    """A GeoPackage streamed from an already open file, so it may be replaced or removed
    meanwhile; the file is closed with the response."""
    try:
        length = os.fstat(f.fileno()).st_size
        response = _send(_read_chunks(f), GEOPACKAGE, etag, filename, length=length)
    except BaseException:
        f.close()
        raise
    response.call_on_close(f.close)
    return response


def _download_filters(name: str) -> tuple[dict[str, Any], list[str]]:
    """The map's filters for one layer. Attack-only filters (actor, from, ...) are not errors
    on the other layers' downloads, since the map passes the same filters to every download;
    they are reported in the metadata as not applied."""
    args = request.args
    skipped: list[str] = []
    if name != "attacks":
        allowed = area_filters(name)
        skipped = [k for k in FILTER_PARAMS if k not in allowed and args.get(k)]
        args = MultiDict([(k, v) for k, v in args.items(multi=True) if k in allowed])
    return parse_filters(args, name), skipped


def _selection(
    store: Store, name: str, kwargs: dict[str, Any]
) -> tuple[np.ndarray, Withheld | None]:
    """The positions a download or the API may hand out, and what the licences withheld (None
    for the layers that hold no dataset's rows: the others count attacks, they hold none)."""
    positions = store.select(name, **kwargs)
    if name != "attacks":
        return positions, None
    return get_policy().split(store.layer(name), positions)


def _sources(store: Store, name: str, positions: np.ndarray | None = None) -> list[dict]:
    """The layer's sources from the manifest; for attacks, only the datasets the rows at
    `positions` come from (a dataset whose rows were all withheld is named in `withheld`)."""
    sources = store.manifest["layers"][name].get("sources", [])
    if name != "attacks" or positions is None:
        return sources
    present = set(get_policy().present(store.layer(name), positions))
    return [s for s in sources if "dataset" not in s or s["dataset"] in present]


def _metadata(
    store: Store,
    name: str,
    kwargs: dict[str, Any],
    skipped: list[str],
    positions: np.ndarray,
    withheld: Withheld | None = None,
) -> dict[str, Any]:
    entry = store.manifest["layers"][name]
    sources = _sources(store, name, positions)
    metadata = {
        "title": entry.get("title", name),
        "layer": name,
        "count": len(positions),
        "filters": describe_filters(kwargs),
        "store_built_at": store.manifest.get("built_at"),
        "generated_at": documents.timestamp(),
        "sources": sources,
        "licences": sorted({s["licence"] for s in sources}),
        "attribution": _attribution(sources),
        "crs": "WGS 84 longitude/latitude (RFC 7946)",
    }
    if withheld is not None:
        metadata["withheld"] = withheld.notice(get_policy().datasets)
    if skipped:
        metadata["filters_not_applied"] = skipped
    if "district" not in skipped and (notes := filter_notes(request.args)):
        metadata["filter_notes"] = notes
    return metadata


def _filename(store: Store, name: str, extension: str) -> str:
    day = str(store.manifest.get("built_at", ""))[:10] or "undated"
    return f"kpmap-{name}-{day}.{extension}" if name != "kpmap" else f"kpmap-{day}.{extension}"


def _read_chunks(f: BinaryIO) -> Iterator[bytes]:
    with f:  # closed once read through, or when the response is closed unread
        while chunk := f.read(FILE_CHUNK):
            yield chunk


# --- OGC API – Features -----------------------------------------------------------------------


@bp.get("/ogc")
@bp.get("/ogc/")
def landing():
    fmt = _ogc_format(("f",), "the landing page")
    doc = documents.landing_page(_base(), fmt, API_TITLE, API_DESCRIPTION)
    return _ogc_answer(doc, fmt, API_TITLE)


@bp.get("/ogc/conformance")
def conformance():
    fmt = _ogc_format(("f",), "the conformance classes")
    return _ogc_answer(documents.conformance(_base(), fmt), fmt, "Conformance")


@bp.get("/ogc/api")
def api_definition():
    fmt = _ogc_format(("f",), "the API definition")
    store = get_store()
    schemas = {name: store.layer(name).schema for name in store.layer_names}
    doc = openapi_document(store.manifest, schemas, _base(), API_TITLE)
    return _ogc_answer(doc, fmt, "API definition", json_type=params.OPENAPI_JSON)


@bp.get("/ogc/collections")
def collections():
    fmt = _ogc_format(("f",), "the collections")
    store = get_store()
    withheld = {name: _withheld_notice(store, name) for name in store.layer_names}
    doc = documents.collections(store.manifest, list(store.layer_names), _base(), fmt, withheld)
    return _ogc_answer(doc, fmt, "Collections")


@bp.get("/ogc/collections/<collection_id>")
def collection(collection_id: str):
    store = get_store()
    name = _layer_name(store, collection_id)
    fmt = _ogc_format(("f",), f"the collection {name}")
    doc = documents.collection(store.manifest, name, _base(), fmt, _withheld_notice(store, name))
    return _ogc_answer(doc, fmt, doc["title"])


def _withheld_notice(store: Store, name: str) -> dict[str, Any] | None:
    """What the licences withhold of a whole collection (None for layers without rows)."""
    _, withheld = _selection(store, name, {})
    return None if withheld is None else withheld.notice(get_policy().datasets)


@bp.get("/ogc/collections/<collection_id>/items")
def items(collection_id: str):
    store = get_store()
    name = _layer_name(store, collection_id)
    schema = store.layer(name).schema
    filters = (*schema.filterable, *schema.range_filters)
    fmt = _ogc_format((*params.ITEMS_PARAMS, *filters), f"the items of {name}")
    limit = params.parse_limit(request.args.get("limit"))
    offset = params.parse_offset(request.args.get("offset"))
    kwargs = _items_filters(name, filters)
    etag = _etag(fmt)
    if _not_modified(etag):
        return _not_modified_response(etag)
    positions, withheld = _selection(store, name, kwargs)
    page = positions[offset : offset + limit]
    members = {
        "numberMatched": len(positions),
        "numberReturned": len(page),
        "timeStamp": documents.timestamp(),
        "links": documents.items_links(
            _base(), name, list(request.args.items(multi=True)), fmt, offset, limit, len(positions)
        ),
    }
    if "district" in filters and (notes := filter_notes(request.args)):
        members["notes"] = notes  # a successor or former district: which polygons it selected
    if withheld is not None:
        members["withheld"] = withheld.notice(get_policy().datasets)
        members["attribution"] = _attribution(_sources(store, name, page))
    layer = store.layer(name)
    if fmt == "html":
        doc = {"type": "FeatureCollection", **members}
        doc["features"] = [layer.feature_at(i) for i in page.tolist()]
        title = f"{schema.title}: features"
        html = render_html(doc, title, _base(), f"{_base()}/collections/{name}/items")
        return _send([html.encode()], "text/html", etag)
    return _send([b"".join(geojson_chunks(layer, page, members))], params.GEOJSON, etag)


@bp.get("/ogc/collections/<collection_id>/items/<feature_id>")
def item(collection_id: str, feature_id: str):
    store = get_store()
    name = _layer_name(store, collection_id)
    fmt = _ogc_format(("f",), "a feature")
    layer = store.layer(name)
    position = layer.by_id.get(str(feature_id))
    if position is None:
        raise FeatureNotFound(
            f"collection {name} has no feature {shown(feature_id)}; list them at "
            f"/ogc/collections/{name}/items"
        )
    feature = dict(layer.feature_at(position))
    if name == "attacks":
        get_policy().check(layer, position, str(feature["id"]))
        positions = np.array([position])
        feature["attribution"] = _attribution(_sources(store, name, positions))
    feature["links"] = documents.feature_links(_base(), name, str(feature["id"]), fmt)
    title = f"{store.layer(name).schema.title}: {feature['id']}"
    return _ogc_answer(feature, fmt, title, json_type=params.GEOJSON)


def _attribution(sources: list[dict[str, Any]]) -> str:
    return "; ".join(s["attribution"] for s in sources)


def _items_filters(name: str, filters: tuple[str, ...]) -> dict[str, Any]:
    """Store.select arguments from bbox, datetime and the property filters.

    The map's filters (bbox, actor, event_type, district, max_border_km) go through
    geo.query, so the API accepts exactly what the map does (district names and aliases
    too); other properties with a closed set of values are checked against it.
    """
    args = request.args
    shared = MultiDict(
        [
            (k, v)
            for k, v in args.items(multi=True)
            if k == "bbox" or (k in FILTER_PARAMS and k in filters)
        ]
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
        if get_store().layer(name).schema.time:
            if start:
                kwargs["start"] = start
            if end:
                kwargs["end"] = end
    return kwargs


def _ogc_format(allowed: tuple[str, ...], what: str) -> str:
    """json or html: from `f`, else from the Accept header (JSON unless HTML is preferred).

    Checks first that every query parameter is one of `allowed` (/req/core/query-param-unknown:
    a parameter the API does not define is a 400, not silently ignored).
    """
    for key in request.args:
        if key not in allowed:
            raise InvalidQuery(
                f"unknown parameter {shown(key)} for {what}; allowed: {', '.join(allowed)}"
            )
    f = request.args.get("f")
    if f is not None:
        if f not in ("json", "html"):
            raise InvalidQuery("f must be json or html")
        return f
    best = request.accept_mimetypes.best_match(
        [params.JSON, params.GEOJSON, params.OPENAPI_JSON, params.HTML], default=params.JSON
    )
    return "html" if best == params.HTML else "json"


def _ogc_answer(doc: dict[str, Any], fmt: str, title: str, json_type: str = params.JSON):
    etag = _etag(fmt)
    if _not_modified(etag):
        return _not_modified_response(etag)
    if fmt == "html":
        return _send([render_html(doc, title, _base()).encode()], "text/html", etag)
    return _send([orjson.dumps(doc)], json_type, etag)


def _base() -> str:
    """The landing page's absolute URL, as the client reached this server."""
    return request.host_url.rstrip("/") + "/ogc"


def _layer_name(store: Store, name: str) -> str:
    """A layer the store holds; anything else (../../etc/passwd, NUL bytes) is a 404 that
    never touches the file system: layers are looked up only among those loaded."""
    if name not in store.layer_names:
        raise LayerNotFound(
            f"no layer {shown(name)}; the layers are: {', '.join(store.layer_names)}"
        )
    return name


# --- HTTP behaviour ---------------------------------------------------------------------------


def _etag(representation: str) -> str:
    """Same store, same request, same representation -> same tag. Weak, since a timeStamp or
    gzip may change the bytes but not the meaning (RFC 9110 8.8.1)."""
    manifest = get_store().manifest
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{FORMAT_VERSION}|{manifest.get('built_at')}|{representation}|".encode())
    # The same request answers differently when the operator licenses another dataset; the
    # whole-store GeoPackage kept on disk is named after this tag too.
    digest.update(f"withheld:{get_policy().key}|".encode())
    for name, entry in sorted(manifest.get("layers", {}).items()):
        digest.update(f"{name}:{entry.get('sha256')}|".encode())
    digest.update(request.path.encode())
    for key, value in sorted(request.args.items(multi=True)):
        digest.update(f"&{key}={value}".encode())
    return digest.hexdigest()


def _not_modified(etag: str) -> bool:
    return request.if_none_match.contains_weak(etag)


def _not_modified_response(etag: str) -> Response:
    response = Response(status=304)
    response.set_etag(etag, weak=True)
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["Vary"] = VARY
    return response


def _send(
    chunks: Iterable[bytes],
    mimetype: str,
    etag: str,
    filename: str | None = None,
    length: int | None = None,
) -> Response:
    """A 200 with the shared headers. A list of chunks is sent whole; an iterator streams."""
    headers = {"Cache-Control": CACHE_CONTROL, "Vary": VARY}
    if filename:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    gzip = mimetype in GZIP_TYPES and "gzip" in request.accept_encodings
    if isinstance(chunks, list):
        body = b"".join(chunks)
        if gzip and len(body) >= GZIP_MIN_BYTES:
            body = _gzip_whole(body)
            headers["Content-Encoding"] = "gzip"
        response = Response(body, mimetype=mimetype, headers=headers)
    else:
        if gzip:
            chunks = _gzip_stream(chunks)
            headers["Content-Encoding"] = "gzip"
        elif length is not None:
            headers["Content-Length"] = str(length)
        # A plain generator, not stream_with_context: the chunks need nothing from the request
        # (the store and positions are bound before streaming starts), and a stream that holds
        # the request context breaks when a client, or a test, drops the response unread.
        response = Response(chunks, mimetype=mimetype, headers=headers)
    response.set_etag(etag, weak=True)
    return response


def _gzip_whole(body: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()


def _gzip_stream(chunks: Iterable[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip header and trailer
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()
