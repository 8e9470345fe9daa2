"""XYZ tiles (MVT and PNG), TileJSON, and /embed/tiles, a map that shows them working.

    /tiles/<layer>/{z}/{x}/{y}.mvt | .png | @2x.png   attacks, districts, tehsils, durand_line,
                                                     basemap
    /tiles/<layer>.json[?format=png]                 TileJSON 3.0.0
    /embed/tiles                                     Leaflet over the service's own PNG tiles

Attack tiles take the map's filters (geo.query) as query parameters; other layers ignore the
query string. Every tile answers 200, an empty one with an empty body (MVT) or a transparent PNG,
with a strong ETag (If-None-Match -> 304), Cache-Control and CORS `*`. Bad addresses answer 400
and unknown layers or formats 404, as JSON (app.errors).
"""

import logging
import re
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, render_template, request, url_for
from werkzeug.exceptions import NotFound

from app import http
from app.extensions import get_store, get_tile_cache, get_tiler
from geo import tiles
from geo.errors import InvalidQuery
from geo.query import FILTER_PARAMS, parse_filters, shown
from geo.tiles.cache import CachedTile, TileKey, etag_of

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
            cached = CachedTile(data, etag_of(data))
    return _respond(cached, tiles.FORMATS[fmt][0])


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


def _respond(cached: CachedTile, mimetype: str, max_age: int | None = None) -> Response:
    if max_age is None:
        max_age = int(current_app.config["TILE_MAX_AGE"])
    if http.not_modified(cached.etag):
        return http.not_modified_response(cached.etag, max_age=max_age)
    return http.respond(cached.data, mimetype, etag=cached.etag, max_age=max_age)
