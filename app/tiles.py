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

import re
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, render_template_string, request, url_for
from werkzeug.exceptions import NotFound

from app import POLICY_KEY, STORE_KEY, get_store
from app.security import CONTENT_SECURITY_POLICY
from geo import tiles
from geo.errors import InvalidQuery
from geo.query import FILTER_PARAMS, parse_filters, shown
from geo.store import Store
from geo.tiles.cache import CachedTile, TileCache, TileKey, etag_of, store_version

bp = Blueprint("tiles", __name__)

TILER_KEY = "kpmap.tiler"
CACHE_KEY = "kpmap.tilecache"
# "12.png" -> ("12", ".png"); y is checked by tiles.parse_tile, so "1.5.png" is a 400, not a 404.
_TILE_NAME = re.compile(r"^(?P<y>[^@]*?)(?P<ext>@2x\.png|\.png|\.mvt)$")


@bp.record_once
def _set_up(state) -> None:
    """[live-store hook 4] One Tiler and one TileCache per store version (geo.store.live:
    made for a new store before it is served, forgotten with the old one)."""
    app = state.app
    live = app.extensions[STORE_KEY]
    directory = app.config.get("TILE_CACHE_DIR") or None
    policy = app.extensions[POLICY_KEY]
    max_bytes = int(app.config["TILE_MEMORY_MB"]) * 2**20

    def tiler_of(store: Store) -> tiles.Tiler:
        return live.derived(TILER_KEY, store, lambda s: tiles.Tiler(s, policy))

    def cache_of(store: Store) -> TileCache:
        def make(s: Store) -> TileCache:
            version = store_version(s.manifest, tiler_of(s).cache_version())
            # Only the version served (or about to be) may point nginx's `current` at itself.
            publish = live.serves(s)
            return TileCache(directory, version, tiles.TILE_LAYERS, max_bytes, publish=publish)

        return live.derived(CACHE_KEY, store, make)

    app.extensions[TILER_KEY], app.extensions[CACHE_KEY] = tiler_of, cache_of
    cache_of(live.current())
    live.warm.append(cache_of)


@bp.after_request
def _cors(response: Response) -> Response:
    # Tiles and TileJSON are for other sites' maps: any origin may read them, errors included.
    if request.path.startswith("/tiles/"):
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response


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
    store = get_store()  # [live-store hook 4] this request's version's cache and tiler
    cache: TileCache = current_app.extensions[CACHE_KEY](store)
    cached = cache.get(key)
    if cached is None:
        tiler: tiles.Tiler = current_app.extensions[TILER_KEY](store)
        data = tiler.tile(layer, address, fmt, filters)
        cached = cache.put(key, data, on_disk=not tiler.is_empty(data, fmt))
    return _respond(cached, tiles.FORMATS[fmt][0])


@bp.get("/tiles/<layer>.json")
def tilejson(layer: str) -> Response:
    tiles.mvt_layers(layer)
    fmt = request.args.get("format", "mvt")
    if fmt not in tiles.FORMATS:
        raise InvalidQuery(f"format must be one of: {', '.join(tiles.FORMATS)}")
    suffix = fmt if fmt.startswith("@") else f".{fmt}"
    template = f"{request.url_root}tiles/{layer}/{{z}}/{{x}}/{{y}}{suffix}{_filter_query(layer)}"
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
    html = render_template_string(
        EMBED_PAGE,
        layers=layers,
        attribution=tiles.attribution(get_store(), tiles.EXPORT_LAYERS),
        center=tiles.center(get_store()),
        max_zoom=tiles.MAX_ZOOM,
    )
    response = Response(html, mimetype="text/html")
    # Other sites may frame this page (that is what it is for); everything else stays as strict.
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
        "frame-ancestors 'self'", "frame-ancestors *"
    )
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
    if request.if_none_match.contains_weak(cached.etag):
        response = Response(status=304)
    else:
        response = Response(cached.data, mimetype=mimetype)
    response.set_etag(cached.etag)
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    return response


EMBED_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kpmap tiles</title>
<link rel="stylesheet" href="{{ url_for('static', filename='vendor/leaflet/dist/leaflet.css') }}">
<script src="{{ url_for('static', filename='vendor/leaflet/dist/leaflet.js') }}"></script>
<style>html, body, #map { height: 100%; margin: 0; } #map { background: #cfd8dc; }</style>
</head>
<body>
<div id="map" role="application" aria-label="Map of Khyber Pakhtunkhwa from kpmap's tiles"></div>
<script>
(function () {
  var layers = {{ layers | tojson }};
  var options = {maxNativeZoom: {{ max_zoom }}, maxZoom: 18};
  var m = L.map("map", {center: [{{ center[1] }}, {{ center[0] }}], zoom: {{ center[2] }}});
  var basemap = L.tileLayer(layers.basemap, Object.assign({
    attribution: {{ attribution | e | tojson }}
  }, options)).addTo(m);
  var overlays = {
    "Districts (attacks, all years)":
      L.tileLayer(layers.districts, Object.assign({opacity: 0.7}, options)),
    "Tehsils (attacks placed to the tehsil, all years)":
      L.tileLayer(layers.tehsils, Object.assign({opacity: 0.7}, options)),
    "Durand Line": L.tileLayer(layers.durand_line, options).addTo(m),
    "Attacks": L.tileLayer(layers.attacks, options).addTo(m)
  };
  L.control.layers({"kpmap basemap": basemap}, overlays, {collapsed: false}).addTo(m);
  L.control.scale().addTo(m);
})();
</script>
</body>
</html>
"""
