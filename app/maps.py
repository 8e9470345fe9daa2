"""The map page `/` and the embed page `/embed` (their templates: templates/map.html, embed.html,
and the folium element's kpmap_layers.html).

The page is a Folium (Leaflet) map whose big layers load by URL from the service, so the HTML
stays small whatever the store's size: districts, tehsils (only once their layer is shown) and
the Durand Line simplified below a pixel for the zoom they are seen at (`/api/map/<layer>.geojson`,
finer ones asked for as the reader zooms in: aggregate.map_outlines, map_border), the matching
attacks from
`/api/map/attacks.json` (columns, a few bytes per attack) or, past CLIENT_LIMIT, gridded per
view from `/api/map/clusters.json`, one attack's whole record for its popup from
`/api/map/attacks/<id>.json`, and the border bands from `/api/map/border-bands.geojson`.
app/static/kpmap/map.js draws them into the layers that `build_map` creates; every text from
data is set there as text, never as HTML. The feeds are app/feeds.py. The first view's districts
and border, and its attacks when they are few (CARRIED_ATTACKS), come in the page itself as the
same feeds' JSON, by URL (`_carried`): the script draws them as soon as the map is made.
"""

import functools
import html
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

import folium
import jinja2
import orjson
from branca.element import Figure
from flask import Blueprint, Response, current_app, render_template, request, url_for
from folium.elements import JSCSSMixin
from folium.plugins import HeatMap, MarkerCluster
from markupsafe import Markup

from app import http
from app.assets import versioned
from app.extensions import get_policy, get_store, resources
from geo import aggregate, settings
from geo.errors import InvalidQuery
from geo.licences import RowPolicy, Withheld
from geo.query import (
    FILTER_PARAMS,
    describe_filters,
    filter_notes,
    parse_filters,
)
from geo.store import Store
from geo.vocab import CATEGORIES, EVENT_TYPES, MILITANT_ATTACK, read_actors

bp = Blueprint("maps", __name__)


# The `layers` parameter's names, and what each shows.
LAYERS = {
    "districts": "Districts (choropleth)",
    "tehsils": "Tehsils (choropleth)",
    "durand_line": "Durand Line (border)",
    "attacks": "Attacks (clusters)",
    "heat": "Attacks (heat map)",
    "bands": "Border bands (10 / 25 / 50 km)",
}
DEFAULT_LAYERS = ("districts", "durand_line", "attacks")
# One colour per group in data/actors.toml order (Tableau 10, then darker tones); "unknown" grey.
ACTOR_COLOURS = (
    "#d62728",
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    # the states' forces and "other" (named groups data/actors.toml lacks): darker blues, a grey
    "#393b79",
    "#5254a3",
    "#6b6ecf",
    "#525252",
)
UNKNOWN_COLOUR = "#7f7f7f"
# Events other than militant attacks have no perpetrator to colour them by: they are drawn as
# hollow rings in their category's colour (dark tones, apart from the groups' bright ones).
CATEGORY_COLOURS = {
    "armed clash": "#4d4d4d",
    "security operation": "#2b5b84",
    "air/drone strike": "#6a3d9a",
    "violence between groups": "#8c6d31",
    "violence against civilians": "#b2182b",
    "other": "#999999",
}
# Short credits for the attribution line, by the source names in the store's manifest.
CREDITS = {
    "OCHA COD-AB Pakistan 2022": (
        "Boundaries: OCHA COD-AB Pakistan 2022 (WFP / UN OCHA via HDX, CC BY-IGO 3.0), "
        "selected and rebuilt by kpmap"
    ),
    "OpenStreetMap": "© OpenStreetMap contributors",
    "GeoNames": "GeoNames (CC BY 4.0)",
}
# Up to this many matching attacks load at once and are clustered in the browser
# (Leaflet.markercluster takes ~1 s per 5,000 on a slow machine); beyond it the server grids them
# for each view. The MAP_CLIENT_LIMIT setting (KPMAP_MAP_CLIENT_LIMIT) overrides it.
CLIENT_LIMIT = settings.default("MAP_CLIENT_LIMIT")
# Up to this many matching attacks come in the page itself (about 100 bytes each), more are
# fetched (/api/map/attacks.json): the page stays small however many the store holds.
CARRIED_ATTACKS = 500
# Publications named in the attribution line before "and N more" (the legend lists them all).
MAX_CREDITED = 6
MAX_ZOOM = 18
BASEMAP_MAX_ZOOM = 14  # the app's own basemap tiles go to z14; Leaflet scales them beyond


@dataclass(frozen=True)
class MapView:
    """How the map is shown (not which attacks): the page's own parameters."""

    metric: str = "attacks"
    layers: tuple[str, ...] = DEFAULT_LAYERS
    center: tuple[float, float] | None = None
    zoom: int | None = None
    embed: bool = False


@dataclass
class Urls:
    """Where the page's script and the map's layers come from (the app may sit under a prefix)."""

    static: str = "/static"
    page: str = "/"
    embed: str = "/embed"
    districts: str = "/api/map/districts.geojson"
    tehsils: str = "/api/map/tehsils.geojson"
    border: str = "/api/map/durand_line.geojson"
    durand_line: str = "/download/durand_line.geojson"  # every vertex, as a download
    attacks: str = "/api/map/attacks.json"
    clusters: str = "/api/map/clusters.json"
    attack: str = "/api/map/attacks/"
    bands: str = "/api/map/border-bands.geojson"
    basemap: str = "/tiles/basemap/{z}/{x}/{y}.png"


def parse_view(args, embed: bool = False) -> MapView:
    """The view parameters `metric`, `layers`, `center` ("lat,lon") and `zoom`; InvalidQuery
    says what is allowed. Filters are parsed by geo.query.parse_filters."""
    metric = (args.get("metric") or "attacks").strip()
    if metric not in aggregate.METRICS:
        raise InvalidQuery(f"metric must be one of: {', '.join(aggregate.METRICS)}")
    layers: tuple[str, ...] = DEFAULT_LAYERS
    if args.get("layers", "").strip() == "none":
        layers = ()
    elif args.get("layers", "").strip():
        layers = tuple(dict.fromkeys(v.strip() for v in args["layers"].split(",") if v.strip()))
        unknown = [v for v in layers if v not in LAYERS]
        if unknown:
            raise InvalidQuery(
                f"layers may list only: {', '.join(LAYERS)} (comma-separated), or be none; "
                f"{len(unknown)} unknown name(s) given"
            )
    center = None
    if args.get("center", "").strip():
        try:
            lat, lon = (float(v) for v in args["center"].split(","))
        except ValueError:
            lat = lon = float("nan")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InvalidQuery("center must be latitude,longitude, e.g. center=34.0,71.5")
        center = (lat, lon)
    zoom = None
    if args.get("zoom", "").strip():
        zoom = parse_zoom("zoom", args["zoom"].strip())
    return MapView(metric=metric, layers=layers, center=center, zoom=zoom, embed=embed)


def parse_zoom(key: str, text: str) -> int:
    """A zoom level, 0 to MAX_ZOOM, in ASCII digits (str.isdigit also takes "²" and "٣")."""
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_ZOOM:
        raise InvalidQuery(f"{key} must be a whole number from 0 to {MAX_ZOOM}")
    return int(text)


@dataclass(frozen=True)
class Summary:
    """What the filters match: the count, and per-district and per-tehsil totals for the
    choropleths; `unplaced` counts, per district, the matching attacks known only to the
    district, which are in no tehsil's totals."""

    count: int
    total: int
    totals: dict[str, dict[str, int]]
    time_range: tuple[int, int] | None
    tehsil_totals: dict[str, dict[str, int]]
    unplaced: dict[str, int]
    # The matching attacks whose records are not handed out (geo.licences): counted above, drawn
    # only as clusters and heat.
    withheld: Withheld = Withheld()


def summarise(store: Store, filters: dict[str, Any], policy: RowPolicy | None = None) -> Summary:
    table = aggregate.attack_table(store)
    rows = aggregate.select(store, filters)
    span = None
    if len(rows):
        span = (int(table.start[rows].min()), int(table.end[rows].max()))
    policy = policy if policy is not None else RowPolicy.from_setting("")
    return Summary(
        len(rows),
        len(table),
        aggregate.district_totals(table, rows),
        span,
        tehsil_totals=aggregate.tehsil_totals(table, rows),
        unplaced=aggregate.tehsil_unplaced(table, rows),
        withheld=policy.split(store.layer("attacks"), rows)[1],
    )


def build_map(
    store: Store,
    filters: dict[str, Any],
    view: MapView = MapView(),
    *,
    urls: Urls | None = None,
    online_basemap: str = "",
    client_limit: int = CLIENT_LIMIT,
    policy: RowPolicy | None = None,
) -> folium.Map:
    """The Folium map for these filters (store.query keyword arguments) and this view.

    Nothing from the store's big layers is written into the map's script: the page's script
    loads them by URL, the first view's from the page itself (`_carried`). The map carries the
    counts and colour classes it needs to draw the legend. Up to `client_limit` matching attacks
    are clustered in the browser; more are gridded by the server for each view
    (/api/map/clusters.json), and so are they whenever any of them come from a dataset whose
    terms allow only aggregates (`policy`, geo.licences; default: no licences):
    the browser then never holds such an attack's point, id or record.
    """
    urls = urls or Urls()
    policy = policy if policy is not None else RowPolicy.from_setting("")
    summary = summarise(store, filters, policy)
    district_names = {f["id"]: f["properties"]["name"] for f in store.query("districts")}
    metric_values = [t[view.metric] for t in summary.totals.values()]
    classes = aggregate.colour_classes(metric_values)
    # Tehsils get classes of their own: their counts are a fraction of their districts'.
    tehsil_values = [t[view.metric] for t in summary.tehsil_totals.values()]
    tehsil_classes = aggregate.colour_classes(tehsil_values)
    actors = actor_table(present=aggregate.attack_table(store).actors)

    m = folium.Map(
        location=list(view.center) if view.center else _centre(store),
        zoom_start=view.zoom if view.zoom is not None else 7,
        tiles=None,
        control_scale=True,
        max_zoom=MAX_ZOOM,
        min_zoom=4,
        font_size="0.8125rem",
    )
    bounds = store.layer("districts").bounds
    if view.center is None and view.zoom is None and bounds is not None:
        minx, miny, maxx, maxy = bounds
        m.fit_bounds([[miny, minx], [maxy, maxx]])
    _add_basemaps(m, urls, online_basemap, attribution=attribution_text(store))
    withheld_note = withheld_text(summary.withheld, policy)

    metric_label = aggregate.METRICS[view.metric]
    districts = folium.FeatureGroup(
        name=f"Districts: {metric_label} per district", show="districts" in view.layers
    ).add_to(m)
    tehsils = folium.FeatureGroup(
        name=f"Tehsils: {metric_label} per tehsil", show="tehsils" in view.layers
    ).add_to(m)
    bands = folium.FeatureGroup(name=LAYERS["bands"], show="bands" in view.layers).add_to(m)
    border = folium.FeatureGroup(name=LAYERS["durand_line"], show="durand_line" in view.layers)
    border.add_to(m)
    attacks = folium.FeatureGroup(name=LAYERS["attacks"], show="attacks" in view.layers).add_to(m)
    # chunkedLoading keeps the page responsive while 100,000 markers are clustered
    clusters = MarkerCluster(control=False, options={"chunkedLoading": True}).add_to(attacks)
    heat = HeatMap(
        [],
        name=LAYERS["heat"],
        show="heat" in view.layers,
        radius=20,
        blur=15,
        min_opacity=0.35,
        # leaflet.heat dims points by 2**(max_zoom - zoom): full strength from the KP-wide view
        max_zoom=8,
    ).add_to(m)
    folium.LayerControl(collapsed=view.embed).add_to(m)

    config = {
        "embed": view.embed,
        "metric": view.metric,
        "metricLabel": metric_label,
        "count": summary.count,
        "clientLimit": client_limit,
        # Attacks whose records may not leave the server: the server clusters every view.
        "aggregateOnly": summary.withheld.count > 0,
        "timeRange": summary.time_range,
        "totals": summary.totals,
        "classes": classes,
        "tehsilTotals": summary.tehsil_totals,
        "tehsilClasses": tehsil_classes,
        "unplaced": summary.unplaced,
        "zeroColour": aggregate.ZERO_COLOUR,
        "actors": actors,
        "unknownColour": UNKNOWN_COLOUR,
        "attackCategory": MILITANT_ATTACK,
        "categoryColours": CATEGORY_COLOURS,
        "districtNames": district_names,
        "query": filter_query(filters),
        "view": {"layers": list(view.layers), "metric": view.metric},
        # Zooms from which the page asks for finer outlines and border (aggregate.map_outlines
        # and map_border), each simplified below a pixel at its zoom.
        "detail": {
            "firstZoom": aggregate.FIRST_ZOOM,
            "outlineMaxZoom": aggregate.OUTLINE_MAX_ZOOM,
            "borderFullZoom": aggregate.BORDER_FULL_ZOOM,
        },
        "urls": {
            "page": urls.page,
            "embed": urls.embed,
            "districts": urls.districts,
            "tehsils": urls.tehsils,
            "border": urls.border,
            "durand_line": urls.durand_line,
            "attacks": urls.attacks,
            "clusters": urls.clusters,
            "attack": urls.attack,
            "bands": urls.bands,
        },
    }
    present_categories = set(aggregate.attack_table(store).categories)
    legend = {
        "count": summary.count,
        "total": summary.total,
        "metric_label": metric_label,
        "classes": classes,
        "tehsil_classes": tehsil_classes,
        "tehsils_shown": "tehsils" in view.layers,
        "unplaced": sum(summary.unplaced.values()),
        "zero_colour": aggregate.ZERO_COLOUR,
        "actors": [a for a in actors.values() if a["used"]] or list(actors.values()),
        "categories": [
            {"name": name, "colour": colour, "used": name in present_categories}
            for name, colour in CATEGORY_COLOURS.items()
        ],
        "page_link": urls.page + _query_suffix(filters, view) if view.embed else "",
        "publications": cited_publications(store),
        "datasets": dataset_attributions(store),
        "embed": view.embed,
        "withheld": withheld_note,
    }
    KpmapLayers(
        static=urls.static,
        layers={
            "districts": districts,
            "tehsils": tehsils,
            "bands": bands,
            "border": border,
            "attacks": attacks,
            "clusters": clusters,
            "heat": heat,
        },
        config=config,
        legend=legend,
        carried=_carried(store, urls, view, filters, policy, config),
        preload=_preloads(urls, view, config),
    ).add_to(m)
    return m


def attacks_body(store: Store, filters: dict[str, Any], policy: RowPolicy) -> bytes:
    """The attacks that match the filters as columns (aggregate.compact_attacks), the body of
    /api/map/attacks.json. Point by point, this feed would hand out rows: those the licences
    withhold are left out (the page draws them through clusters.json instead) and counted."""
    rows = aggregate.select(store, filters)
    rows, withheld = policy.split(store.layer("attacks"), rows)
    data = aggregate.compact_attacks(aggregate.attack_table(store), rows)
    data["withheld"] = withheld.count
    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)


def _carried(
    store: Store,
    urls: Urls,
    view: MapView,
    filters: dict[str, Any],
    policy: RowPolicy,
    config: dict[str, Any],
) -> dict[str, bytes]:
    """The feeds the page carries itself, by the URL its script would ask for them at (for a
    view with a zoom, the outlines and border of that zoom): the districts and the border, whose
    size does not grow with the store, and the matching attacks when they are few
    (CARRIED_ATTACKS). Drawn as soon as the map is made, they wait neither for a request nor
    for the tasks that read its answer, which the basemap tiles' answers share."""
    found = {
        detailed(urls.districts, view.zoom, "outlines"): aggregate.map_outlines(
            store, "districts", aggregate.detail_zoom(view.zoom, "outlines")
        ),
        detailed(urls.border, view.zoom): aggregate.map_border(
            store, aggregate.detail_zoom(view.zoom, "border")
        ),
    }
    if _client_side(config) and config["count"] <= CARRIED_ATTACKS:
        found[_attacks_url(urls, config)] = attacks_body(store, filters, policy)
    return found


def _preloads(urls: Urls, view: MapView, config: dict[str, Any]) -> list[str]:
    """The feeds the page's script fetches as soon as it runs that the page does not carry: the
    tehsils when they are shown (twice the districts' bytes, and no part of what the page
    waits for), and the matching attacks when the browser clusters more than CARRIED_ATTACKS."""
    wanted = []
    if "tehsils" in view.layers:
        wanted.append(detailed(urls.tehsils, view.zoom, "outlines"))
    if _client_side(config) and config["count"] > CARRIED_ATTACKS:
        wanted.append(_attacks_url(urls, config))
    return wanted


def _client_side(config: dict[str, Any]) -> bool:
    """Whether the page clusters the matching attacks itself (from attacks.json), as map.js
    decides; otherwise the server grids them for each view."""
    return config["count"] <= config["clientLimit"] and not config["aggregateOnly"]


def _attacks_url(urls: Urls, config: dict[str, Any]) -> str:
    return urls.attacks + ("?" + config["query"] if config["query"] else "")


def detailed(url: str, zoom: int | None, kind: str = "border") -> str:
    """The URL of the outlines or the border the page asks for at `zoom`, as map.js's
    detailedUrl makes it (aggregate.detail_zoom)."""
    found = aggregate.detail_zoom(zoom, kind)
    return url if found is None else f"{url}?z={found}"


def _centre(store: Store) -> list[float]:
    bounds = store.layer("districts").bounds
    if bounds is None:  # a store always has KP's districts (geo.build); this keeps types honest
        return [34.5, 71.5]
    minx, miny, maxx, maxy = bounds
    return [(miny + maxy) / 2, (minx + maxx) / 2]


def _add_basemaps(m: folium.Map, urls: Urls, online: str, attribution: str) -> None:
    """The app's own basemap, and an online one first when ONLINE_BASEMAP names one."""
    if online:
        provider = online_provider(online)
        folium.TileLayer(
            tiles=provider.build_url(),
            attr=provider.html_attribution + " · " + attribution,
            name=provider.name,
            max_zoom=MAX_ZOOM,
            max_native_zoom=min(provider.get("max_zoom", MAX_ZOOM), MAX_ZOOM),
        ).add_to(m)
    folium.TileLayer(
        tiles=urls.basemap,
        attr=attribution,
        name="kpmap basemap (served by this app)",
        max_zoom=MAX_ZOOM,
        max_native_zoom=BASEMAP_MAX_ZOOM,
        show=not online,
    ).add_to(m)


def online_provider(name: str):
    """The xyzservices provider ONLINE_BASEMAP names; ValueError says how to find names."""
    import xyzservices.providers as providers

    try:
        provider = providers.query_name(name)
    except ValueError:
        raise ValueError(
            f"ONLINE_BASEMAP={name!r} is not an xyzservices provider (e.g. OpenStreetMap.Mapnik; "
            "list them with `python -c 'import xyzservices.providers as p; print(p.flatten())'`)"
        ) from None
    if provider.requires_token():
        raise ValueError(f"ONLINE_BASEMAP={name!r} needs an API key, which kpmap does not hold")
    return provider


def actor_table(present: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Each group key -> display name, colour, and whether the store has attacks by it, in
    data/actors.toml order (so a group keeps its colour whatever the filters)."""
    table = {}
    for key, entry in _actors().items():
        table[key] = {**entry, "used": key in present}
    return table


@functools.cache
def _actors() -> dict[str, dict[str, str]]:
    colours = iter(ACTOR_COLOURS)
    table = {}
    for key, entry in read_actors().items():
        colour = UNKNOWN_COLOUR if key == "unknown" else next(colours, UNKNOWN_COLOUR)
        table[key] = {"key": key, "name": entry["name"], "colour": colour}
    return table


def filter_query(filters: dict[str, Any]) -> str:
    """The filters as a query string (lists comma-separated), for the data URLs and share links."""
    pairs = []
    for key, value in describe_filters(filters).items():
        if isinstance(value, list | tuple):
            value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        elif isinstance(value, float):
            value = f"{value:g}"
        pairs.append((key, value))
    return urlencode(pairs)


def _query_suffix(filters: dict[str, Any], view: MapView) -> str:
    query = filter_query(filters)
    extra = {"metric": view.metric} if view.metric != "attacks" else {}
    if view.layers != DEFAULT_LAYERS:
        extra["layers"] = ",".join(view.layers)
    query = "&".join(q for q in (query, urlencode(extra)) if q)
    return "?" + query if query else ""


def withheld_text(withheld: Withheld, policy: RowPolicy) -> str:
    """What the page says of matching attacks drawn only as aggregates ("" when there are none)."""
    if not withheld.count:
        return ""
    names = ", ".join(policy.datasets[k].name for k in sorted(withheld.by_dataset))
    if withheld.count == 1:
        some = "1 matching attack comes"
    else:
        some = f"{withheld.count:,} matching attacks come"
    return (
        f"{some} from {names}, whose terms do not let this service hand out their records: they "
        "are counted in the totals and drawn only in clusters and the heat map, with no popup, "
        "and left out of the downloads (the operator's KPMAP_LICENSED_DATASETS setting lifts "
        "this for a licensed dataset)."
    )


def attribution_text(store: Store) -> str:
    """Every source's credit and the cited publications' names, as escaped HTML for Leaflet's
    attribution line (the legend and the page list each publication with its date). An attack
    dataset (ACLED, UCDP, ...) is credited as its terms ask (data/datasets.toml), since the map
    draws and counts its events."""
    credits: dict[str, None] = {}
    for entry in store.manifest.get("layers", {}).values():
        for source in entry.get("sources", []):
            name = source.get("name", "")
            if source.get("dataset") == "authored":
                continue  # credited below, publication by publication
            if source.get("dataset"):
                # the short credit here; the page's sources give the whole attribution
                credit = source.get("credit") or source["attribution"]
            else:
                credit = CREDITS.get(name) or f"{name} ({source.get('licence', 'see its terms')})"
            credits[credit] = None
    names = list(dict.fromkeys(p for p, _ in cited_publications(store)))
    shown = ", ".join(names[:MAX_CREDITED])
    if len(names) > MAX_CREDITED:
        shown += f" and {len(names) - MAX_CREDITED} more"
    text = " · ".join(credits)
    if shown:
        text += " · attacks and figures: " + shown
    return html.escape(text, quote=True)


def dataset_attributions(store: Store) -> list[dict[str, str]]:
    """Each attack dataset's whole attribution (with its access date, release and kpmap's
    changes) and the URL of its terms, for the page's and the legend's sources."""
    found: dict[str, dict[str, str]] = {}
    for entry in store.manifest.get("layers", {}).values():
        for source in entry.get("sources", []):
            if source.get("dataset") and source["dataset"] != "authored":
                found.setdefault(
                    source["dataset"],
                    {"text": source["attribution"], "terms_url": source.get("terms_url", "")},
                )
    return list(found.values())


def cited_publications(store: Store) -> list[tuple[str, str]]:
    """(publication, date) of every publication the attacks, facts and border attributes cite."""
    found = set(aggregate.attack_table(store).publications)
    citations = [fact.get("citation") or {} for fact in store.facts]
    for line in store.query("durand_line"):
        props = line["properties"]
        citations.append(props.get("reported_length_source") or {})
        citations += [f.get("citation") or {} for f in props.get("fence", [])]
    found |= {(c.get("publication", ""), c.get("date", "")) for c in citations}
    return sorted(p for p in found if p[0])


# The folium element's own template environment (folium renders it, not Flask), over the app's
# template folder.
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True
)


class KpmapLayers(JSCSSMixin):
    """The page's own script and style, the legend, and the call that loads and draws the layers
    into the Leaflet layers folium created (passed by their JavaScript names)."""

    _template = _ENV.get_template("kpmap_layers.html")

    def __init__(
        self,
        static: str,
        layers: dict,
        config: dict,
        legend: dict,
        carried: dict[str, bytes],
        preload: list[str],
    ):
        super().__init__()
        self._name = "KpmapLayers"
        # JSON in a <script> element: "<" only occurs in its strings, where \u003c means the
        # same, so no "</script>" or "<!--" in the data can end the element early.
        self.carried = {
            url: Markup(body.decode().replace("<", "\\u003c")) for url, body in carried.items()
        }
        self.preload = preload
        self.layers = layers
        self.config = config
        self.legend = legend
        own = Path(__file__).parent / "static" / "kpmap"
        self.default_js = [("kpmap_js", versioned(f"{static}/kpmap/map.js", own / "map.js"))]
        self.default_css = [("kpmap_css", versioned(f"{static}/kpmap/map.css", own / "map.css"))]


# --- views ---------------------------------------------------------------------------------


@bp.get("/")
def index() -> Response:
    return _page("map.html", embed=False)


@bp.get("/embed")
def embed() -> Response:
    response = _page("embed.html", embed=True)
    # Any site may frame the embed page (set before app.security's defaults, which it keeps).
    response.headers["Content-Security-Policy"] = http.content_security_policy(frame_ancestors="*")
    return response


def _page(template: str, embed: bool) -> Response:
    store = get_store()
    online = current_app.config.get("ONLINE_BASEMAP", "")
    policy = get_policy()
    # The same request on the same store version is the same page: rendered once (folium is
    # the slowest step of a page) and kept among the PAGES most recently asked for.
    key = (template, request.script_root, request.full_path, policy.key)
    pages = resources().live.derived("map-pages", store, lambda s: _Pages())
    body = pages.get(key, lambda: _render_page(store, policy, template, embed, online))
    response = Response(body, mimetype="text/html")
    if online:
        response.headers["Content-Security-Policy"] = http.content_security_policy(
            img_hosts=[_origin(online_provider(online).build_url())],
            frame_ancestors="*" if embed else "'self'",
        )
    return response


def _render_page(store: Store, policy: RowPolicy, template: str, embed: bool, online: str) -> str:
    filters = parse_filters(request.args)
    view = parse_view(request.args, embed=embed)
    urls = _urls()
    limit = int(current_app.config["MAP_CLIENT_LIMIT"])
    m = build_map(
        store, filters, view, urls=urls, online_basemap=online, client_limit=limit, policy=policy
    )
    root = cast(Figure, m.get_root())
    root.render()  # collects every element's script and style links into the header
    summary = summarise(store, filters, policy)
    return render_template(
        template,
        header=root.header.render(),
        body=root.html.render(),
        script=root.script.render(),
        summary=summary,
        notes=filter_notes(request.args),
        withheld=withheld_text(summary.withheld, policy),
        form=_form(store, filters, view),
        share_query=_query_suffix(filters, view),
        iframe_snippet=iframe_snippet(urls.embed + _query_suffix(filters, view)),
        publications=cited_publications(store),
        datasets=dataset_attributions(store),
        credits=attribution_text(store),
        urls=urls,
        downloads=_downloads(filters),
    )


# Rendered pages kept per store version.
PAGES = 64


class _Pages:
    """The most recently asked-for PAGES rendered pages of one store version (thread-safe; a
    page asked for twice at once is rendered twice, and kept once)."""

    def __init__(self) -> None:
        self._pages: OrderedDict[tuple, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, render: Callable[[], str]) -> str:
        with self._lock:
            if key in self._pages:
                self._pages.move_to_end(key)
                return self._pages[key]
        body = render()
        with self._lock:
            self._pages[key] = body
            while len(self._pages) > PAGES:
                self._pages.popitem(last=False)
        return body


def _urls() -> Urls:
    root = request.script_root
    return Urls(
        static=root + (current_app.static_url_path or "/static"),
        page=url_for("maps.index"),
        embed=url_for("maps.embed"),
        districts=url_for("feeds.map_outlines", layer="districts"),
        tehsils=url_for("feeds.map_outlines", layer="tehsils"),
        border=url_for("feeds.map_border"),
        durand_line=f"{root}/download/durand_line.geojson",
        attacks=url_for("feeds.attacks_feed"),
        clusters=url_for("feeds.clusters_feed"),
        attack=url_for("feeds.attacks_feed").removesuffix(".json") + "/",
        bands=url_for("feeds.border_bands"),
        basemap=f"{root}/tiles/basemap/{{z}}/{{x}}/{{y}}.png",
    )


def iframe_snippet(src: str) -> str:
    """The <iframe> element that embeds the map (the page's script makes `src` absolute)."""
    return (
        f'<iframe src="{html.escape(src, quote=True)}" width="100%" height="480" '
        'style="border:0" loading="lazy" title="kpmap: attacks in Khyber Pakhtunkhwa"></iframe>'
    )


def _downloads(filters: dict[str, Any]) -> dict[str, str]:
    """Links to the downloads of what the map shows (app.api serves them, same filters)."""
    root = request.script_root
    query = filter_query(filters)
    suffix = "?" + query if query else ""
    return {
        "attacks (GeoJSON)": f"{root}/download/attacks.geojson{suffix}",
        "attacks (CSV)": f"{root}/download/attacks.csv{suffix}",
        "districts": f"{root}/download/districts.geojson",
        "tehsils": f"{root}/download/tehsils.geojson",
        "Durand Line": f"{root}/download/durand_line.geojson",
        "all layers (GeoPackage)": f"{root}/download/kpmap.gpkg",
    }


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _form(store: Store, filters: dict[str, Any], view: MapView) -> dict[str, Any]:
    """What the filter form shows: the choices, and the current values."""
    given = describe_filters(filters)
    districts = sorted(
        ((f["id"], f["properties"]["name"]) for f in store.query("districts")), key=lambda d: d[1]
    )
    return {
        "from": given.get("from", ""),
        "to": given.get("to", ""),
        "actor": set(given.get("actor", [])),
        "event_type": set(given.get("event_type", [])),
        "category": set(given.get("category", [])),
        "district": set(given.get("district", [])),
        "max_border_km": f"{given['max_border_km']:g}" if "max_border_km" in given else "",
        "metric": view.metric,
        "actors": list(actor_table().values()),
        "event_types": EVENT_TYPES,
        "categories": CATEGORIES,
        "districts": districts,
        "metrics": aggregate.METRICS,
        "layers": ",".join(view.layers) if view.layers != DEFAULT_LAYERS else "",
        "center": f"{view.center[0]:.4f},{view.center[1]:.4f}" if view.center else "",
        "zoom": "" if view.zoom is None else str(view.zoom),
        "params": FILTER_PARAMS,
    }
