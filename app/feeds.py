"""The small feeds the map page's script reads (/api/map/...): the matching attacks as columns,
grid clusters and heat cells for one view, one attack's record for its popup, district and
tehsil outlines and the Durand Line simplified for the zoom they are seen at, and the border
bands. They live under /api so that their errors are JSON (app/errors.py).
"""

import orjson
from flask import Blueprint, Response, request

from app import http
from app.extensions import KEY, get_policy, get_store
from app.maps import attacks_body, parse_zoom
from geo import aggregate
from geo.errors import InvalidQuery
from geo.query import parse_bbox_text, parse_filters
from geo.store import Store

bp = Blueprint("feeds", __name__)


@bp.record_once
def _warm(state) -> None:
    """Simplify the first view's outlines and border as each store is opened, before it is
    served (the first store before gunicorn forks the workers, which then share them), so no
    page waits for them."""
    live = state.app.extensions[KEY].live

    def warm(store: Store) -> None:
        aggregate.map_outlines(store, "districts")
        aggregate.map_border(store)

    warm(live.current())
    live.warm.append(warm)


@bp.get("/api/map/attacks.json")
def attacks_feed() -> Response:
    """The attacks that match the filters, as columns (maps.attacks_body)."""
    return _json(attacks_body(get_store(), parse_filters(request.args), get_policy()))


@bp.get("/api/map/clusters.json")
def clusters_feed() -> Response:
    """The attacks that match the filters, gridded for one view of the map: `z` (zoom),
    `view` (the visible box, minx,miny,maxx,maxy), optional `window` (first,last day since
    1970-01-01, the time slider's month) and `heat=1` (add heat-map cells)."""
    store = get_store()
    table = aggregate.attack_table(store)
    rows = aggregate.select(store, parse_filters(request.args))
    rows = aggregate.in_window(table, rows, _window(request.args.get("window", "")))
    zoom = parse_zoom("z", request.args.get("z", ""))
    view = parse_bbox_text(request.args["view"]) if request.args.get("view") else None
    withheld = get_policy().withheld_mask(store.layer("attacks"))
    data = {
        "count": int(len(rows)),
        "actors": list(table.actors),
        **aggregate.clusters(table, rows, zoom, view, withheld=withheld),
    }
    if request.args.get("heat") == "1":
        data["heat"] = aggregate.heat_cells(table, rows, zoom, view)
    return _json(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY))


def _window(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        first, last = (int(v) for v in text.split(","))
    except ValueError:
        raise InvalidQuery(
            "window must be first,last: two whole numbers of days since 1970-01-01"
        ) from None
    return first, last


@bp.get("/api/map/attacks/<path:attack_id>.json")
def attack_feature(attack_id: str) -> Response:
    """One attack's whole record, for its popup (FeatureNotFound answers 404, an attack whose
    dataset's terms keep its record on the server RowWithheld 403)."""
    store = get_store()
    feature = store.feature("attacks", attack_id)  # FeatureNotFound (404) for an unknown id
    layer = store.layer("attacks")
    position = layer.position(attack_id)
    assert position is not None  # found just above
    get_policy().check(layer, position, attack_id)
    return _json(orjson.dumps(feature))


@bp.get("/api/map/<any(districts, tehsils):layer>.geojson")
def map_outlines(layer: str) -> Response:
    """Districts or tehsils with simplified outlines and every property, for the choropleths;
    `z`, a zoom, for outlines finer than a pixel at it (aggregate.map_outlines)."""
    body = aggregate.map_outlines(get_store(), layer, _zoom())
    return _json(body, mimetype="application/geo+json")


@bp.get("/api/map/durand_line.geojson")
def map_border() -> Response:
    """The Durand Line with every property, simplified below a pixel at the first view's zoom,
    or at `z` (every vertex when zoomed in far: aggregate.map_border)."""
    return _json(aggregate.map_border(get_store(), _zoom()), mimetype="application/geo+json")


def _zoom() -> int | None:
    text = request.args.get("z", "")
    return parse_zoom("z", text) if text else None


@bp.get("/api/map/border-bands.geojson")
def border_bands() -> Response:
    body = orjson.dumps(aggregate.border_bands(get_store()))
    return _json(body, mimetype="application/geo+json")


def _json(body: bytes, mimetype: str = "application/json") -> Response:
    """A JSON answer (app.http compresses it for clients that take it)."""
    return http.respond(body, mimetype, max_age=http.DATA_MAX_AGE)
