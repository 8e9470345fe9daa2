"""app/maps.py, geo/aggregate.py, app/assets.py: the map page, the embed page and their feeds.

The generated HTML is checked for the pieces that matter (local asset links, layer URLs, the
legend, escaping), never as a snapshot. tests/test_browser.py drives the same pages in Chromium.
"""

import gzip
import re

import geopandas as gpd
import orjson
import pytest
import shapely

from app import assets, create_app
from app.maps import MapView, build_map, parse_view
from geo import aggregate
from geo.build.districts import shared_border_problems
from geo.errors import InvalidQuery
from geo.query import parse_filters
from tests.helpers import (
    ESCAPED,
    PAYLOAD,
    build_hostile_store,
    carried_feeds,
    preloaded_feeds,
    without_carried_feeds,
)


@pytest.fixture(scope="module")
def hostile_client(tmp_path_factory):
    return create_app({"STORE": str(build_hostile_store(tmp_path_factory))}).test_client()


def page(client, url: str = "/") -> str:
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def rendered(m) -> str:
    return m.get_root().render()


# --- assets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/", "/embed"])
def test_pages_link_only_local_assets(client, url):
    carried = carried_feeds(page(client, url))
    html = without_carried_feeds(page(client, url))  # the data's own source URLs aside
    assert not re.search(r"https?://", html), re.search(r".{60}https?://.{60}", html)
    assert not re.search(r"""(src|href)\s*=\s*["']?//""", html)
    assert "url(//" not in html
    scripts = re.findall(r"""<script[^>]+src="([^"]+)\"""", html)
    styles = re.findall(r"""<link rel="stylesheet" href="([^"]+)\"""", html)
    assert scripts and styles, "the page links no script or stylesheet"
    assert all(link.startswith("/static/") for link in scripts + styles), scripts + styles
    assert "/api/map/districts.geojson" in carried  # the app's own feeds, in the page
    # the tehsils are off by default: they are not asked for until they are switched on
    assert "/api/map/tehsils.geojson" not in carried


def test_every_linked_asset_is_installed_and_served(client):
    """The files app/assets.py names exist (make assets) and the app serves them."""
    missing = assets.missing_vendor_files()
    assert not missing, f"run `make assets` (npm ci + app/install_assets.py): {missing}"
    html = page(client)
    for link in re.findall(r"""<(?:script|link)[^>]+(?:src|href)="(/static/[^"]+)\"""", html):
        response = client.get(link)
        assert response.status_code == 200, link
        response.close()


def test_the_page_loads_only_what_the_map_uses(client):
    """Leaflet, its cluster and heat plugins and the app's own files: none of the Bootstrap,
    jQuery or icon fonts folium would add, which cost ~480 KB before the map can draw."""
    html = page(client)
    links = re.findall(r'<(?:script|link)[^>]+(?:src|href)="/static/vendor/([^"?]+)', html)
    assert sorted(links) == sorted(assets.vendor_paths())
    assert not re.search(r"jquery|bootstrap|fontawesome|awesome-markers", html, re.IGNORECASE)


def test_static_files_carry_their_version_and_are_kept_for_good(client):
    html = page(client)
    links = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(/static/[^"]+)"', html)
    assert links and all(re.search(r"\?v=[\w.]+$", link) for link in links), links
    assert "/static/vendor/leaflet/dist/leaflet.js?v=1.9.4" in links
    versioned_file = client.get(links[0])
    assert versioned_file.status_code == 200
    assert "immutable" in versioned_file.headers["Cache-Control"]
    assert "max-age=31536000" in versioned_file.headers["Cache-Control"]
    plain = client.get(links[0].split("?")[0])
    assert "immutable" not in plain.headers.get("Cache-Control", "")
    versioned_file.close()
    plain.close()


def test_localise_folium_names_files_under_the_given_base():
    import folium

    assets.localise_folium("/prefix/static/vendor")
    try:
        assert all(url.startswith("/prefix/static/vendor/") for _, url in folium.Map.default_js)
    finally:
        assets.localise_folium()


# --- what the map holds ---------------------------------------------------------------------


def test_build_map_loads_its_layers_by_url(store):
    html = rendered(build_map(store, {}))
    for url in (
        "/api/map/districts.geojson",
        "/api/map/tehsils.geojson",
        "/download/durand_line.geojson",
        "/api/map/attacks.json",
        "/api/map/clusters.json",
        "/api/map/border-bands.geojson",
        "/tiles/basemap/{z}/{x}/{y}.png",
    ):
        assert url in html, url
    # no feature is pasted into the page's script or markup: the page carries the first
    # view's feeds only as data its script takes by URL (as it would fetch them)
    carried = carried_feeds(html)
    assert set(carried) == {
        "/api/map/districts.geojson",
        "/api/map/durand_line.geojson",
        "/api/map/attacks.json",
    }
    assert '"coordinates"' not in without_carried_feeds(html)
    assert "L.markerClusterGroup" in html and "L.heatLayer" in html
    assert "L.control.layers" in html and "L.control.scale" in html


def test_filters_go_into_the_data_urls(store):
    filters = parse_filters({"from": "2024", "actor": "iskp", "max_border_km": "50"})
    html = rendered(build_map(store, filters))
    assert "from=2024\\u0026actor=ISKP\\u0026max_border_km=50" in html


def test_legend_counts_classes_groups_and_symbols(store):
    total = len(store.query("attacks"))
    html = rendered(build_map(store, parse_filters({"from": "2024"})))
    matched = len(store.query("attacks", start="2024"))
    assert f"<strong>{matched}</strong>\n    of {total} events match the filters" in html
    legend = html[html.index('id="kpmap-legend"') :]
    assert "Districts: events" in legend
    assert "Islamic State Khorasan Province" in legend  # the groups the store holds
    for symbol in (
        "place known",
        "near a place",
        "district only",
        "Durand Line",
        "km of the border",
    ):
        assert symbol in legend
    assert "The Asian Politico (2024-05-02)" in legend  # the cited publications, with dates
    killed = rendered(build_map(store, {}, MapView(metric="killed")))
    assert "Districts: people killed (best estimate)" in killed


def test_attribution_credits_every_source(store):
    html = rendered(build_map(store, {}))
    for credit in (
        "OCHA COD-AB Pakistan 2022 (WFP / UN OCHA via HDX, CC BY-IGO 3.0)",
        "OpenStreetMap contributors",
        "GeoNames (CC BY 4.0)",
        "The Express Tribune",
        "The Asian Politico",
    ):
        assert credit in html, credit


@pytest.mark.parametrize("url", ["/", "/embed", "/?layers=tehsils"])
def test_the_page_no_longer_credits_geoboundaries(client, url):
    """The boundaries come from OCHA's COD-AB now; nothing on the page may say otherwise."""
    assert "geoboundaries" not in page(client, url).lower()


def test_tehsils_layer_is_off_by_default_and_on_by_the_layers_parameter(client):
    default = page(client)
    assert "Tehsils: events per tehsil" in default  # in the layer control, unticked
    assert '"layers": ["districts", "durand_line", "attacks"]' in default
    assert '<div id="kpmap-legend-tehsils" hidden>' in default

    shown = page(client, "/?layers=districts,tehsils&metric=killed")
    assert "Tehsils: people killed (best estimate) per tehsil" in shown
    assert '"layers": ["districts", "tehsils"]' in shown
    assert '<div id="kpmap-legend-tehsils">' in shown
    assert "/api/map/tehsils.geojson" in preloaded_feeds(shown)
    assert "layers=districts%2Ctehsils" in shown  # kept in the share link


def test_tehsil_choropleth_and_legend_follow_the_filters(store):
    attacks = store.query("attacks", start="2024")
    unplaced = [f for f in attacks if f["properties"]["tehsil"] is None]
    assert unplaced, "the store should hold attacks known only to their district"
    html = rendered(build_map(store, parse_filters({"from": "2024"})))
    config = orjson.loads(re.search(r"kpmap\.start\([^,]+, \{[^}]*\}, (\{.*\})\);", html)[1])
    counted = sum(t["attacks"] for t in config["tehsilTotals"].values())
    assert counted + sum(config["unplaced"].values()) == len(attacks)
    assert config["tehsilClasses"] and config["urls"]["tehsils"] == "/api/map/tehsils.geojson"
    legend = " ".join(html[html.index('id="kpmap-legend-tehsils"') :].split())
    assert (
        f"{len(unplaced)} matching attacks, known only to their district, are in no tehsil's count."
        in legend
    )


def test_view_parameters_and_the_layer_switches(store):
    view = parse_view({"layers": "heat,bands", "center": "34.5,71.5", "zoom": "9"}, embed=True)
    html = rendered(build_map(store, {}, view))
    assert "[34.5, 71.5]" in html and '"zoom": 9' in html
    assert '"layers": ["heat", "bands"]' in html
    assert '"collapsed": true' in html  # the embed page's layer control starts folded


def test_count_in_the_page_follows_the_filters(client, store):
    everything = page(client)
    some = page(client, "/?from=2024")
    n_all, n_some = len(store.query("attacks")), len(store.query("attacks", start="2024"))
    assert n_some < n_all
    assert f"<strong>{n_all}</strong>\n    of {n_all} events match these filters" in everything
    assert f"<strong>{n_some}</strong>\n    of {n_all} events match these filters" in some


def test_share_panel_gives_the_link_and_the_iframe_snippet(client):
    html = page(client, "/?actor=ISKP&metric=killed")
    assert 'id="kpmap-share-link" readonly value="/?actor=ISKP&amp;metric=killed"' in html
    assert "&lt;iframe src=&#34;/embed?actor=ISKP&amp;amp;metric=killed&#34;" in html


# --- safety ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/", "/embed"])
def test_data_is_escaped_in_the_page(hostile_client, url):
    html = page(hostile_client, url)
    assert PAYLOAD not in html
    assert "<script>alert(2)" not in html
    assert ESCAPED in html  # the publication is listed, as text
    assert "javascript:" not in html


def test_data_feeds_carry_the_text_as_data(hostile_client):
    """Feeds are JSON (the page's script sets their text with textContent)."""
    feed = hostile_client.get("/api/map/attacks/synthetic-hostile-1.json")
    assert feed.mimetype == "application/json"
    assert feed.get_json()["properties"]["location"] == PAYLOAD


@pytest.mark.parametrize(
    ("query", "allowed"),
    [
        ("from=yesterday", "YYYY-MM-DD"),
        ("actor=%3Cscript%3E", "ISKP"),
        ("max_border_km=-5", "number &gt;= 0"),
        ("event_type=picnic", "suicide bombing"),
        ("district=Atlantis", "district"),
        ("metric=deaths", "attacks, killed, injured"),
        ("layers=roads", "districts, tehsils, durand_line, attacks, heat, bands"),
        ("center=north", "latitude,longitude"),
        ("zoom=99", "0 to 18"),
    ],
)
@pytest.mark.parametrize("path", ["/", "/embed"])
def test_bad_parameters_get_a_400_page_saying_what_is_allowed(client, path, query, allowed):
    response = client.get(f"{path}?{query}", headers={"Accept": "text/html"})
    text = response.get_data(as_text=True)
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert allowed in text
    assert "<script>" not in text
    assert "kpmap-legend" not in text  # an error page, not an empty map


def test_parse_view_rejects_what_it_cannot_show():
    assert parse_view({}).layers == ("districts", "durand_line", "attacks")
    assert parse_view({"layers": "none"}).layers == ()
    with pytest.raises(InvalidQuery, match="zoom"):
        parse_view({"zoom": "-1"})


def test_embed_may_be_framed_by_any_site(client):
    embed = client.get("/embed").headers["Content-Security-Policy"]
    assert "frame-ancestors *" in embed
    assert "default-src 'self'" in embed and "script-src 'self' 'unsafe-inline'" in embed
    main = client.get("/").headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in main


def test_online_basemap_is_opt_in_and_allowed_by_the_csp(store_dir):
    app = create_app({"STORE": str(store_dir), "ONLINE_BASEMAP": "OpenStreetMap.Mapnik"})
    response = app.test_client().get("/")
    html = response.get_data(as_text=True)
    assert "https://tile.openstreetmap.org/{z}/{x}/{y}.png" in html
    assert "/tiles/basemap/{z}/{x}/{y}.png" in html  # the app's own stays as the alternative
    csp = response.headers["Content-Security-Policy"]
    assert "img-src 'self' data: blob: https://tile.openstreetmap.org" in csp


def test_an_unknown_online_basemap_stops_the_app_at_start(store_dir):
    with pytest.raises(ValueError, match="ONLINE_BASEMAP='No.Such.Provider' is not an xyzservices"):
        create_app({"STORE": str(store_dir), "ONLINE_BASEMAP": "No.Such.Provider"})


# --- feeds ----------------------------------------------------------------------------------


def test_attacks_feed_holds_the_matching_attacks_as_columns(client, store):
    data = client.get("/api/map/attacks.json?from=2024").get_json()
    expected = store.query("attacks", start="2024")
    assert data["count"] == len(expected)
    assert sorted(data["id"]) == sorted(f["id"] for f in expected)
    for column in ("lon", "lat", "actor", "district", "killed", "precision", "start", "end"):
        assert len(data[column]) == data["count"], column


def test_attacks_feed_bad_filter_is_a_json_400(client):
    response = client.get(
        "/api/map/attacks.json?to=soon",
    )
    assert response.status_code == 400 and response.is_json


def test_attack_feature_and_its_404(client, store):
    first = store.query("attacks")[0]
    assert client.get(f"/api/map/attacks/{first['id']}.json").get_json()["id"] == first["id"]
    missing = client.get(
        "/api/map/attacks/nope.json",
    )
    assert missing.status_code == 404 and missing.is_json


def test_clusters_feed_accounts_for_every_attack(client, store):
    attacks = store.query("attacks")
    data = client.get("/api/map/clusters.json?z=6&view=60,25,80,40&heat=1").get_json()
    vague = sum(1 for f in attacks if f["properties"]["geo_precision"] == 3)
    drawn = sum(data["cells"]["count"]) + data["points"]["count"]
    assert data["count"] == len(attacks)
    assert drawn == len(attacks) - vague
    assert sum(d["count"] for d in data["district_only"].values()) == vague
    assert sum(data["heat"]["count"]) == len(attacks)


@pytest.mark.parametrize("query", ["z=99", "z=7&view=1,2,3", "z=7&window=a,b", "z=7&from=x"])
def test_clusters_feed_rejects_bad_input(client, query):
    response = client.get(
        f"/api/map/clusters.json?{query}",
    )
    assert response.status_code == 400


def test_big_feeds_are_gzipped(client):
    response = client.get("/api/map/border-bands.geojson", headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert orjson.loads(gzip.decompress(response.data))["type"] == "FeatureCollection"


def test_border_bands_are_nested_and_on_the_pakistani_side(store):
    import shapely
    from shapely.geometry import shape

    bands = aggregate.border_bands(store)["features"]
    assert [b["properties"]["label"] for b in bands] == ["0–10 km", "10–25 km", "25–50 km"]
    pakistan = shapely.union_all(
        [shape(f["geometry"]) for f in store.query("countries", id="pakistan")]
    )
    for band in bands:
        geom = shape(band["geometry"])
        assert geom.is_valid and not geom.is_empty
        assert geom.difference(pakistan.buffer(0.01)).area < 1e-6  # nothing in Afghanistan
    # bands do not overlap: each is a ring outside the one before
    assert shape(bands[0]["geometry"]).intersection(shape(bands[1]["geometry"])).area < 1e-6


# --- mapdata helpers ------------------------------------------------------------------------


def test_attack_table_spans_are_days_since_1970(store):
    from datetime import date

    table = aggregate.attack_table(store)
    attacks = store.query("attacks")
    assert list(table.ids) == [f["id"] for f in attacks]
    for i, feat in enumerate(attacks):
        props = feat["properties"]
        if props["date_precision"] != "month":  # day, or a range of days
            first = date.fromisoformat(props["date"])
            last = date.fromisoformat(props["date_end"] or props["date"])
            epoch = date(1970, 1, 1)
            assert (table.start[i], table.end[i]) == ((first - epoch).days, (last - epoch).days)
        assert table.precision[i] == props["geo_precision"]


def test_colour_classes():
    assert aggregate.colour_classes([0, 0]) == []
    classes = aggregate.colour_classes(list(range(1, 101)))
    assert len(classes) == 5 and classes[0]["min"] == 1 and classes[-1]["max"] == 100
    assert all(a["max"] + 1 == b["min"] for a, b in zip(classes, classes[1:], strict=False))


def test_tehsil_totals_leave_out_attacks_known_only_to_their_district(store):
    table = aggregate.attack_table(store)
    everything = aggregate.select(store, {})
    totals = aggregate.tehsil_totals(table, everything)
    # unfiltered, they are the totals the build stored on each tehsil
    stored = {f["id"]: f["properties"]["attacks"] for f in store.query("tehsils")}
    assert {tid: t["attacks"] for tid, t in totals.items()} == {
        tid: n for tid, n in stored.items() if n
    }
    expected: dict[str, int] = {}
    for f in store.query("attacks"):
        if f["properties"]["tehsil"] is None:
            district = f["properties"]["district"]
            expected[district] = expected.get(district, 0) + 1
    assert aggregate.tehsil_unplaced(table, everything) == expected
    some = aggregate.select(store, {"start": "2024"})
    in_tehsils = sum(t["attacks"] for t in aggregate.tehsil_totals(table, some).values())
    assert in_tehsils + sum(aggregate.tehsil_unplaced(table, some).values()) == len(some)


def test_the_tehsils_the_map_loads_carry_what_their_popups_show(client, store):
    response = client.get("/api/map/tehsils.geojson")
    assert response.status_code == 200 and response.mimetype == "application/geo+json"
    features = orjson.loads(response.data)["features"]
    assert len(features) == len(store.query("tehsils"))
    districts = {f["id"] for f in store.query("districts")}
    for feat in features:
        props = feat["properties"]
        assert props["district"] in districts
        assert re.fullmatch(r"PK5\d{4}", props["pcode"])
        assert props["former_frontier_region"] == (props["frontier_region"] is not None)
        assert props["area_km2"] > 0 and props["source"]


def test_district_totals_follow_the_filters(store):
    table = aggregate.attack_table(store)
    rows = aggregate.select(store, {"start": "2024"})
    totals = aggregate.district_totals(table, rows)
    assert sum(t["attacks"] for t in totals.values()) == len(rows)


@pytest.mark.parametrize("layer", ["districts", "tehsils"])
def test_the_map_outlines_are_simplified_but_still_tile_the_province(client, store, layer):
    full = client.get(f"/download/{layer}.geojson").data
    response = client.get(f"/api/map/{layer}.geojson")
    assert response.status_code == 200 and len(response.data) < len(full) / 4
    shapes = [
        shapely.geometry.shape(f["geometry"]) for f in orjson.loads(response.data)["features"]
    ]
    assert all(s.is_valid for s in shapes)
    frame = gpd.GeoDataFrame({"id": range(len(shapes))}, geometry=shapes, crs="EPSG:4326")
    assert shared_border_problems(frame) == []  # shared edges stay shared: no gaps, no overlaps
    union = shapely.union_all(shapes)
    province = shapely.union_all(store.layer("districts").geometries())
    assert union.symmetric_difference(province).area < 0.002 * province.area
    assert client.get("/api/map/countries.geojson").status_code == 404


def test_events_that_are_not_attacks_are_drawn_apart_and_filtered_by_category(hostile_client):
    html = page(hostile_client)
    legend = " ".join(html[html.index("Other conflict events") :].split())
    assert "armed clash" in legend.split("</ul>")[0]
    assert "violence between groups" not in legend.split("</ul>")[0]  # none in this store
    assert 'name="category" value="armed clash"' in html
    feed = orjson.loads(hostile_client.get("/api/map/attacks.json").data)
    i = feed["id"].index("synthetic-clash-1")
    assert feed["categories"][feed["category"][i]] == "armed clash"
    assert feed["actors"][feed["actor"][i]] == ""  # no perpetrator: drawn by category
    only = orjson.loads(hostile_client.get("/api/map/attacks.json?category=Armed%20Clash").data)
    assert only["id"] == ["synthetic-clash-1"]
    url = "/api/map/attacks.json?category=militant attack"
    attacks = orjson.loads(hostile_client.get(url).data)
    assert "synthetic-clash-1" not in attacks["id"] and "synthetic-hostile-1" in attacks["id"]
    props = orjson.loads(hostile_client.get("/api/map/attacks/synthetic-clash-1.json").data)[
        "properties"
    ]
    assert props["actor"] is None and props["parties"][1]["group"] == "TTP"
    assert props["deaths"]["side_b"] == 4 and props["district_reported"]
    bad = hostile_client.get("/api/map/attacks.json?category=drone")
    assert bad.status_code == 400 and b"air/drone strike" in bad.data
