"""XYZ tiles (MVT and PNG), TileJSON, and /embed/tiles, a map that shows them working.

    /tiles/<layer>/{z}/{x}/{y}.mvt | .png | @2x.png   attacks, districts, tehsils, durand_line,
                                                     basemap
    /tiles/<layer>.json[?format=png]                 TileJSON 3.0.0
    /embed/tiles                                     Leaflet over the service's own PNG tiles

Attack tiles take the map's filters (geo.query) as query parameters; other layers ignore the
query string. Every tile answers 200, an empty one with an empty body (MVT) or a transparent PNG,
with a strong ETag (If-None-Match -> 304), Cache-Control and CORS `*`. Bad addresses answer 400
and unknown layers or formats 404, as JSON (app.errors).

Vector tiles are sent in the content coding the client prefers (app.http's negotiation), from
the coded bodies the tile caches keep (geo.tiles.cache: each made once per tile), never
compressed again per request; the ETag names the coding (`"abc-gzip"`).

A tile already in a cache is answered by `FastTiles`, a WSGI middleware in front of Flask: an
unfiltered GET or HEAD with at most If-None-Match as a condition, the headers the Flask view and
app.http's hooks would give (tests/test_tiles_fast.py compares the two), at a fraction of the
cost. Everything else (a miss, a filter, a range, another condition, a bad address) goes on to
the view below.
"""

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, current_app, render_template, request, url_for
from werkzeug.exceptions import NotFound
from werkzeug.http import parse_etags

from app import http
from app.extensions import get_store, get_tile_cache, get_tiler, live_store, tile_cache_of
from geo import tiles
from geo.errors import InvalidQuery
from geo.query import FILTER_PARAMS, parse_filters, shown
from geo.tiles.cache import CachedTile, TileCache, TileKey, etag_of

bp = Blueprint("tiles", __name__)
log = logging.getLogger(__name__)

# "12.png" -> ("12", ".png"); y is checked by tiles.parse_tile, so "1.5.png" is a 400, not a 404.
_TILE_NAME = re.compile(r"^(?P<y>[^@]*?)(?P<ext>@2x\.png|\.png|\.mvt)$")


@bp.get("/tiles/<layer>/<z>/<x>/<name>")
def tile(layer: str, z: str, x: str, name: str) -> Response:
    tiles.mvt_layers(layer)  # an unknown layer is a 404 whatever else is wrong
    match = _TILE_NAME.match(name)
    if not match:
        raise NotFound(f"no tile format in {shown(name)}; tiles end in .mvt, .png or @2x.png")
    address = tiles.parse_tile(z, x, match["y"])
    fmt = match["ext"].removeprefix(".")
    filters = _filters(layer)
    key = TileKey(layer, *address, fmt, tiles.filter_key(filters))
    cache = get_tile_cache()
    cached = cache.get(key)
    if cached is None:
        tiler = get_tiler()
        data = tiler.tile(layer, address, fmt, filters)
        try:
            cached = cache.put(key, data, on_disk=not tiler.is_empty(data, fmt))
        except OSError as exc:  # a full or read-only disk: serve the tile, uncached on disk
            log.warning("tile %s not written to the disk cache: %s", key.path(), exc)
            cached = cache.get(key) or CachedTile(data, etag_of(data))
    return _respond_tile(cache, key, cached)


@bp.get("/tiles/<layer>.json")
def tilejson(layer: str) -> Response:
    tiles.mvt_layers(layer)
    fmt = request.args.get("format", "mvt")
    if fmt not in tiles.FORMATS:
        raise InvalidQuery(f"format must be one of: {', '.join(tiles.FORMATS)}")
    suffix = fmt if fmt.startswith("@") else f".{fmt}"
    # PUBLIC_URL, not the Host header: this answer is cached by browsers and proxies.
    root = current_app.config.get("PUBLIC_URL") or request.url_root.rstrip("/")
    template = f"{root}/tiles/{layer}/{{z}}/{{x}}/{{y}}{suffix}{_filter_query(layer)}"
    document = tiles.tilejson(get_store(), layer, template, fmt)
    body = current_app.json.dumps(document).encode()
    return _respond(CachedTile(body, etag_of(body)), "application/json", max_age=300)


@bp.get("/embed/tiles")
def embed() -> Response:
    """A full-window Leaflet map of the service's PNG tiles, for people and for other sites."""
    query = _filter_query("attacks")
    layers = {
        name: url_for("tiles.tile", layer=name, z="{z}", x="{x}", name="{y}.png")
        .replace("%7B", "{")
        .replace("%7D", "}")
        + (query if name == "attacks" else "")
        for name in tiles.TILE_LAYERS
    }
    html = render_template(
        "embed_tiles.html",
        layers=layers,
        attribution=tiles.attribution(get_store(), tiles.EXPORT_LAYERS),
        center=tiles.center(get_store()),
        max_zoom=tiles.MAX_ZOOM,
    )
    response = Response(html, mimetype="text/html")
    # Other sites may frame this page (that is what it is for); everything else stays as strict.
    response.headers["Content-Security-Policy"] = http.content_security_policy("*")
    return response


def _filters(layer: str) -> dict:
    """The map's filters for attack tiles (InvalidQuery for a bad one); {} for other layers."""
    if layer != "attacks":
        return {}
    filters = parse_filters(request.args)
    if "bbox" in filters:
        raise InvalidQuery("tiles take no bbox: a tile's z/x/y is its extent")
    return filters


def _filter_query(layer: str) -> str:
    """The request's filter parameters, checked, as a query string to hand on ("" if none)."""
    if not _filters(layer):
        return ""
    pairs = [(k, v) for k, v in request.args.items(multi=True) if k in FILTER_PARAMS and v]
    return "?" + urlencode(pairs)


def _respond_tile(cache: TileCache, key: TileKey, cached: CachedTile) -> Response:
    """A tile, in the coding negotiated (kept coded by the cache), or 304."""
    max_age = int(current_app.config["TILE_MAX_AGE"])
    coding = http.negotiate(http.CODINGS) if cached.codable else None
    etag = f"{cached.etag}-{coding}" if coding else cached.etag
    mimetype = tiles.FORMATS[key.ext][0]
    if http.not_modified(cached.etag):
        response = http.not_modified_response(etag, max_age=max_age)
        # The 200's type (not sent with a 304): its Vary is then the 200's too.
        response.mimetype = mimetype
        return response
    body = cache.coded(key, cached, coding) if coding else cached.data
    response = http.respond(body, mimetype, etag=etag, max_age=max_age)
    if coding:
        # app.http's compression path leaves a body that names its coding as it is.
        response.headers["Content-Encoding"] = coding
    return response


def _respond(cached: CachedTile, mimetype: str, max_age: int | None = None) -> Response:
    if max_age is None:
        max_age = int(current_app.config["TILE_MAX_AGE"])
    if http.not_modified(cached.etag):
        return http.not_modified_response(cached.etag, max_age=max_age)
    return http.respond(cached.data, mimetype, etag=cached.etag, max_age=max_age)


# --- the fast path for cached tiles ----------------------------------------------------------

# An unfiltered tile address in canonical digits (anything else goes to the view, which says
# what is wrong with it); TileKey.ext is the format.
_FAST_TILE = re.compile(
    r"^/tiles/(?P<layer>[a-z_]+)/(?P<z>0|[1-9][0-9]?)/(?P<x>0|[1-9][0-9]{0,4})/"
    r"(?P<y>0|[1-9][0-9]{0,4})(?:\.(?P<ext>mvt|png)|(?P<retina>@2x\.png))$"
)
# Requests the view answers, whatever the cache holds: byte ranges, and the conditions other
# than If-None-Match (werkzeug's make_conditional decides those).
_VIEW_HEADERS = frozenset(
    {
        "HTTP_RANGE",
        "HTTP_IF_RANGE",
        "HTTP_IF_MATCH",
        "HTTP_IF_MODIFIED_SINCE",
        "HTTP_IF_UNMODIFIED_SINCE",
    }
)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict, StartResponse], Iterable[bytes]]


class FastTiles:
    """WSGI middleware: a tile already in the caches, answered without Flask.

    Flask's request context, routing, view and after-request hooks cost several times what
    reading a cached tile does; here a cached tile costs a regular expression, a dict look-up
    and a header list. The answer is the one the view gives: the same status, body and
    headers (the shared ones made once, as app.http's hooks make them).
    """

    def __init__(self, app: Flask, wsgi_app: WSGIApp):
        self.app = app
        self.wsgi_app = wsgi_app  # what answers everything else (Flask)
        self.live = live_store(app)
        # The store served and its tile cache, looked up again when the store changes.
        self._served: tuple[Any, TileCache] | None = None
        max_age = int(app.config["TILE_MAX_AGE"])
        shared = [("Cache-Control", f"public, max-age={max_age}")]
        shared += [
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Expose-Headers", http.EXPOSED_HEADERS),
        ]
        shared += [
            ("Content-Security-Policy", http.CONTENT_SECURITY_POLICY),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "strict-origin-when-cross-origin"),
        ]
        self.shared = shared
        # MVT is a compressible type: its answers vary with Accept-Encoding, coded or not.
        self.vary = {
            fmt: [("Vary", "Accept-Encoding")] if mimetype in http.COMPRESSIBLE else []
            for fmt, (mimetype, _) in tiles.FORMATS.items()
        }

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if (method == "GET" or method == "HEAD") and not environ.get("QUERY_STRING"):
            match = _FAST_TILE.match(environ.get("PATH_INFO", ""))
            if match and environ.keys().isdisjoint(_VIEW_HEADERS):
                try:
                    answer = self.answer(match, environ)
                except Exception:  # noqa: BLE001 - the view answers it, errors and all
                    log.exception("the tile fast path failed; the view answers")
                    answer = None
                if answer is not None:
                    status, headers, body = answer
                    start_response(status, headers)
                    return [body] if method == "GET" else []
        return self.wsgi_app(environ, start_response)

    def answer(self, match: re.Match, environ: dict) -> tuple[str, list, bytes] | None:
        layer = match["layer"]
        if layer not in tiles.TILE_LAYERS:
            return None
        z, x, y = int(match["z"]), int(match["x"]), int(match["y"])
        if z > tiles.MAX_ZOOM or x >> z or y >> z:
            return None
        fmt = match["ext"] or "@2x.png"
        key = TileKey(layer, z, x, y, fmt)
        store = self.live.current()  # once per request, as get_store() takes it
        served = self._served
        if served is None or served[0] is not store:
            served = self._served = (store, tile_cache_of(self.app, store))
        cache = served[1]
        cached = cache.get(key)
        if cached is None:
            return None
        coding = None
        if cached.codable:
            coding = http.negotiate_header(environ.get("HTTP_ACCEPT_ENCODING", ""))
        etag = f'"{cached.etag}-{coding}"' if coding else f'"{cached.etag}"'
        condition = environ.get("HTTP_IF_NONE_MATCH")
        if condition and http.none_match(parse_etags(condition), cached.etag):
            return "304 NOT MODIFIED", [("ETag", etag), *self.vary[fmt], *self.shared], b""
        body = cache.coded(key, cached, coding) if coding else cached.data
        headers = [
            ("Content-Type", tiles.FORMATS[fmt][0]),
            ("Content-Length", str(len(body))),
            ("ETag", etag),
            *self.vary[fmt],
            *self.shared,
        ]
        if coding:
            headers.append(("Content-Encoding", coding))
        return "200 OK", headers, body


@bp.record_once
def _install_fast_path(state: Any) -> None:
    """Put FastTiles in front of the app when the blueprint is registered."""
    app = state.app
    app.wsgi_app = FastTiles(app, app.wsgi_app)
