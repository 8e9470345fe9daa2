"""The map's outlines and border at the detail the zoom needs (geo/aggregate.py: map_outlines,
map_border, detail_zoom; app/feeds.py; app/maps.py: the preloads and the kept pages; map.js:
the finer ones asked for as the reader zooms in)."""

import re
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import orjson
import pytest
from shapely.geometry import shape

from app import create_app
from geo import aggregate
from geo.build.districts import shared_border_problems
from tests.helpers import READY, Server, carried_feeds, preloaded_feeds

ROUNDING = 0.5e-3  # the first view's coordinates have 3 decimals


def shapes(body: bytes) -> list:
    return [shape(f["geometry"]) for f in orjson.loads(body)["features"]]


@pytest.mark.parametrize("z", [None, 7, 8, 10, 11, 14])
def test_the_border_is_within_half_a_pixel_of_every_vertex_at_its_zoom(client, store, z):
    url = "/api/map/durand_line.geojson" + (f"?z={z}" if z is not None else "")
    response = client.get(url)
    assert response.status_code == 200 and response.mimetype == "application/geo+json"
    got = orjson.loads(response.data)["features"]
    full = store.query("durand_line")
    assert [f["id"] for f in got] == [f["id"] for f in full]
    assert [f["properties"] for f in got] == [f["properties"] for f in full]  # popups: all of it
    tolerance = aggregate.zoom_tolerance(aggregate.FIRST_ZOOM if z is None else min(z, 14))
    for simplified, original in zip(got, full, strict=True):
        a, b = shape(simplified["geometry"]), shape(original["geometry"])
        assert a.hausdorff_distance(b) <= tolerance + ROUNDING
        if z is not None and z >= aggregate.BORDER_FULL_ZOOM:
            assert a.equals_exact(b, 1e-9)  # zoomed in far: every vertex, as downloaded


def test_the_first_view_loads_a_border_of_a_few_kilobytes(client):
    first = client.get("/api/map/durand_line.geojson").data
    full = client.get("/download/durand_line.geojson").data
    assert len(first) < len(full) / 20
    finer = [len(client.get(f"/api/map/durand_line.geojson?z={z}").data) for z in (8, 10, 12)]
    assert len(first) < finer[0] < finer[1] < finer[2] < len(full)


@pytest.mark.parametrize("layer", ["districts", "tehsils"])
@pytest.mark.parametrize("z", [8, 11, 18])
def test_closer_outlines_still_tile_the_province_and_follow_it_closer(client, store, layer, z):
    body = client.get(f"/api/map/{layer}.geojson?z={z}").data
    found = shapes(body)
    assert all(s.is_valid for s in found)
    frame = gpd.GeoDataFrame({"id": range(len(found))}, geometry=found, crs="EPSG:4326")
    assert shared_border_problems(frame) == []
    tolerance = aggregate.zoom_tolerance(min(z, aggregate.OUTLINE_MAX_ZOOM))
    originals = store.layer(layer).geometries()
    worst = max(a.hausdorff_distance(b) for a, b in zip(found, originals, strict=True))
    assert worst <= tolerance * 2  # coverage simplification keeps to about its tolerance
    first = client.get(f"/api/map/{layer}.geojson").data
    assert len(first) < len(body)


def test_a_bad_zoom_is_a_400(client):
    for url in ("/api/map/durand_line.geojson?z=x", "/api/map/districts.geojson?z=19"):
        response = client.get(url)
        assert response.status_code == 400 and response.is_json


def test_detail_zoom_and_the_scripts_choice_agree():
    script = (Path(aggregate.__file__).parent.parent / "app/static/kpmap/map.js").read_text()
    assert "function detailedUrl" in script and "aggregate.detail_zoom" in script
    assert aggregate.detail_zoom(aggregate.FIRST_ZOOM, "border") is None
    assert aggregate.detail_zoom(20, "outlines") == aggregate.OUTLINE_MAX_ZOOM


@pytest.mark.parametrize(
    ("url", "expected", "fetched"),
    [
        ("/", ["/api/map/districts.geojson", "/api/map/durand_line.geojson"], []),
        ("/?zoom=5", ["/api/map/districts.geojson", "/api/map/durand_line.geojson"], []),
        ("/?zoom=9", ["/api/map/districts.geojson?z=9", "/api/map/durand_line.geojson?z=9"], []),
        (
            "/?zoom=16&layers=districts,tehsils",
            ["/api/map/districts.geojson?z=11", "/api/map/durand_line.geojson?z=14"],
            ["/api/map/tehsils.geojson?z=11"],
        ),
    ],
)
def test_the_page_carries_what_its_script_asks_for_first(client, url, expected, fetched):
    """The first view's districts, border and (few) attacks come in the page, by the URLs the
    script asks for them at, and are what those URLs answer; the tehsils, when shown, are
    preloaded and handed to the script from the page's head (fetchEarly)."""
    html = client.get(url).data.decode()
    carried = carried_feeds(html)
    assert list(carried) == [*expected, "/api/map/attacks.json"]
    for feed, data in carried.items():
        assert data == orjson.loads(client.get(feed).data), feed
    assert preloaded_feeds(html) == fetched
    early = re.search(r"<script>kpmap\.fetchEarly\((\[.*?\])\);</script>", html)
    assert (orjson.loads(early.group(1)) if early else []) == fetched


def test_more_attacks_than_the_page_carries_are_preloaded_and_fetched_early(store_dir, monkeypatch):
    from app import maps

    monkeypatch.setattr(maps, "CARRIED_ATTACKS", 0)
    html = create_app({"STORE": str(store_dir)}).test_client().get("/?from=2020").data.decode()
    assert "/api/map/attacks.json?from=2020" not in carried_feeds(html)
    assert preloaded_feeds(html) == ["/api/map/attacks.json?from=2020"]
    # the page's head hands the same to its script before the map is made (fetchEarly)
    early = re.search(r"<script>kpmap\.fetchEarly\((\[.*?\])\);</script>", html)
    assert early is not None and orjson.loads(early.group(1)) == preloaded_feeds(html)


def test_no_text_in_carried_data_can_end_its_script_element():
    from app.maps import KpmapLayers

    hostile = {"name": "</script><script>alert(1)</script><!--"}
    element = KpmapLayers(
        static="/static",
        layers={},
        config={},
        legend={},
        carried={"/api/map/x.json": orjson.dumps(hostile)},
        preload=[],
    )
    head = str(element._template.module.header(element, {}))  # the element's part of <head>
    assert "<script>alert(1)" not in head and "<!--" not in head
    assert carried_feeds(head) == {"/api/map/x.json": hostile}


def test_a_page_is_rendered_once_per_store_version_and_request(store_dir, monkeypatch):
    from app import maps

    rendered = []
    real = maps._render_page
    monkeypatch.setattr(maps, "_render_page", lambda *a: rendered.append(1) or real(*a))
    client = create_app({"STORE": str(store_dir)}).test_client()
    first = client.get("/?from=2020").data
    assert client.get("/?from=2020").data == first and len(rendered) == 1
    other = client.get("/?from=2021").data
    assert other != first and len(rendered) == 2
    assert client.get("/?from=bad").status_code == 400  # errors are never kept
    assert client.get("/?from=bad").status_code == 400 and len(rendered) == 4
    for i in range(maps.PAGES):  # bounded: the least recently asked for go first
        client.get(f"/?center=34,{70 + i / 100}")
    before = len(rendered)
    client.get("/?from=2020")
    assert len(rendered) == before + 1


# --- in the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detail_server(store_dir) -> Iterator[Server]:
    running = Server(create_app({"STORE": str(store_dir)}))
    yield running
    running.close()


def test_zooming_in_asks_for_a_finer_border_and_outlines(browser, detail_server):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.goto(detail_server.url + "/")
    page.wait_for_function(READY, timeout=60_000)
    # the first view's border and outlines come in the page: no request for them
    assert not [u for u in asked if "/api/map/durand_line.geojson" in u]
    assert not [u for u in asked if "/api/map/districts.geojson" in u]
    page.evaluate(
        """() => new Promise(done => {
            const m = Object.values(window).find(v => v instanceof L.Map);
            m.once("zoomend", () => setTimeout(done, 500));
            m.setView([34.0, 71.5], 12);
        })"""
    )
    page.wait_for_function(
        "() => performance.getEntriesByType('resource').some(e => e.name.endsWith('z=12'))",
        timeout=30_000,
    )
    page.wait_for_load_state("networkidle")
    assert any(u.endswith("/api/map/durand_line.geojson?z=12") for u in asked)
    assert any(u.endswith("/api/map/districts.geojson?z=11") for u in asked)
    stats = page.evaluate("() => window.kpmapStats")
    assert stats["border"] == 3 and stats["districts"] == 35  # redrawn, not added to
    paths = page.locator(".leaflet-overlay-pane svg path").count()
    assert paths < 35 + 2 * 3 + 50
    page.close()
