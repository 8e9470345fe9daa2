"""The map and embed pages in headless Chromium (Debian's /usr/bin/chromium driven by playwright;
never `playwright install`, which downloads a browser of its own).

Each test serves the app with werkzeug on 127.0.0.1 (port 0) over the session's store and checks
what a person would see: no request leaves the machine, nothing is logged as an error, the three
layers draw, the tehsils draw when switched on, a filter changes what is drawn, popups show data
as text, and the embed page works inside an iframe of another origin. Screenshots go to
tests/artifacts/.
"""

import math
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import shapely
from shapely.geometry import shape

from app import create_app
from tests.helpers import (
    CLASH_AT,
    HOSTILE_AT,
    PAYLOAD,
    READY,
    RESTRICTED_IDS,
    Server,
    browser_missing,
    build_hostile_store,
    build_licence_store,
)

ARTIFACTS = Path(__file__).parent / "artifacts"


# CI installs Chromium (.ci/run): there a missing browser is a failure, elsewhere a skip.
if (missing := browser_missing()) is not None:
    if os.environ.get("CI"):
        pytest.fail(missing, pytrace=False)
    pytest.skip(missing, allow_module_level=True)


@pytest.fixture(scope="module")
def server(store_dir) -> Iterator[Server]:
    running = Server(create_app({"STORE": str(store_dir)}))
    yield running
    running.close()


class Watched:
    """A page that records every request and every console error."""

    def __init__(self, browser, allowed_hosts: set[str]):
        self.page = browser.new_page(viewport={"width": 1280, "height": 800})
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.allowed_hosts = allowed_hosts
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("dialog", self._dialog)

    def _console(self, message) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url', '')})")

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, url: str) -> "Watched":
        self.page.goto(url)
        self.page.wait_for_function(READY, timeout=60_000)
        return self

    def stats(self) -> dict:
        return self.page.evaluate("() => window.kpmapStats")

    def assert_clean(self) -> None:
        foreign = [u for u in self.requests if urlsplit(u).scheme not in ("data", "blob")]
        foreign = [u for u in foreign if urlsplit(u).netloc not in self.allowed_hosts]
        assert not foreign, f"requests to other hosts: {foreign[:5]}"
        assert not self.errors, f"console errors: {self.errors[:5]}"
        assert not self.dialogs, f"a dialog opened (script ran?): {self.dialogs}"

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def watched(browser, server) -> Iterator[Watched]:
    page = Watched(browser, {server.host})
    yield page
    page.close()


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def test_map_page_draws_its_layers_from_the_app_alone(watched, server, store):
    watched.open(server.url + "/")
    stats = watched.stats()
    attacks = store.query("attacks")
    vague = sum(1 for f in attacks if f["properties"]["geo_precision"] == 3)
    assert stats["count"] == len(attacks)
    assert stats["districts"] == len(store.query("districts"))
    assert stats["border"] == len(store.query("durand_line"))
    assert stats["markers"] == len(attacks) - vague and stats["districtOnly"] == vague
    page = watched.page
    # the SVG holds a path per district, the border (casing and line) and the attack symbols
    paths = page.locator(".leaflet-overlay-pane svg path").count()
    assert paths >= stats["districts"] + 2 * stats["border"] + vague
    assert page.locator(".marker-cluster").count() + stats["markers"] > 0
    assert page.locator(".leaflet-tile-loaded").count() > 0  # the app's own basemap
    assert page.locator(".kpmap-legend").is_visible()
    assert page.locator(".leaflet-control-scale").is_visible()
    assert "OpenStreetMap contributors" in page.locator(".leaflet-control-attribution").inner_text()
    assert (
        page.locator("#kpmap-share-iframe")
        .input_value()
        .startswith(f'<iframe src="{server.url}/embed?')
    )
    screenshot(page, "map.png")
    watched.assert_clean()


def test_attacks_the_page_does_not_carry_are_fetched_once_from_its_head(
    browser, store_dir, store, monkeypatch
):
    """More matching attacks than the page carries: its head preloads their feed and hands it
    to the script (fetchEarly), which draws them from that one request."""
    from app import maps

    monkeypatch.setattr(maps, "CARRIED_ATTACKS", 0)
    server = Server(create_app({"STORE": str(store_dir)}))
    watched = Watched(browser, {server.host})
    try:
        stats = watched.open(server.url + "/").stats()
        vague = sum(1 for f in store.query("attacks") if f["properties"]["geo_precision"] == 3)
        assert stats["markers"] == len(store.query("attacks")) - vague
        feeds = [u for u in watched.requests if "/api/map/attacks.json" in u]
        assert feeds == [server.url + "/api/map/attacks.json"]
        watched.assert_clean()
    finally:
        watched.close()
        server.close()


def test_changing_a_filter_changes_what_is_drawn_and_the_count(watched, server, store):
    page = watched.open(server.url + "/").page
    before = watched.stats()
    page.fill("#f-from", "2024")
    page.click("#kpmap-filters button[type=submit]")
    page.wait_for_url("**/?from=2024*")
    page.wait_for_function(READY, timeout=60_000)
    after = watched.stats()
    expected = len(store.query("attacks", start="2024"))
    assert after["count"] == expected < before["count"]
    assert after["markers"] + after["districtOnly"] == expected
    assert f"{expected} of {before['count']} events" in page.locator("#kpmap-count").inner_text()
    watched.assert_clean()


def test_time_slider_and_heat_map(watched, server):
    page = watched.open(server.url + "/").page
    total = watched.stats()["heatPoints"]
    slider = page.locator(".kpmap-timeline input[type=range]")
    # the first month that has attacks: the slider starts at the earliest one
    slider.evaluate("s => { s.value = s.min; s.dispatchEvent(new Event('input')); }")
    page.wait_for_function(
        "() => /event/.test(document.querySelector('.kpmap-timeline-label').textContent)"
    )
    in_month = watched.stats()["heatPoints"]
    assert 0 < in_month < total
    page.locator(".kpmap-timeline button", has_text="All dates").click()
    page.wait_for_function(f"() => window.kpmapStats.heatPoints === {total}")
    page.locator(".leaflet-control-layers").hover()
    page.locator(".leaflet-control-layers-overlays label", has_text="heat map").click()
    assert page.locator("canvas.leaflet-heatmap-layer").count() == 1
    screenshot(page, "heat.png")
    watched.assert_clean()


def click_map_at(page, lat: float, lon: float, zoom: int) -> None:
    """Centre the map on a point and click there (folium names the map's variable by its div)."""
    map_name = page.locator(".folium-map").get_attribute("id")
    page.evaluate(
        """([name, lat, lon, zoom]) => new Promise(done => {
          const m = window[name];
          m.once("moveend", () => setTimeout(done, 300));  // let the new view's paths draw
          m.setView([lat, lon], zoom, {animate: false});
        })""",
        [map_name, lat, lon, zoom],
    )
    # and the layers redrawn at the new zoom's detail: a popup opened on a layer that is then
    # redrawn is closed with it
    page.wait_for_function("() => !window.kpmapStats.detailPending", timeout=30_000)
    box = page.locator(".folium-map").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def test_tehsils_layer_switched_on_draws_its_polygons_and_popups(watched, server, store):
    page = watched.open(server.url + "/").page
    assert "tehsils" not in watched.stats()  # not loaded while off
    page.locator(".leaflet-control-layers").hover()
    page.locator(".leaflet-control-layers-overlays label", has_text="Tehsils").click()
    tehsils = store.query("tehsils")
    page.wait_for_function(f"() => window.kpmapStats.tehsils === {len(tehsils)}", timeout=30_000)
    assert page.locator(".leaflet-kpmapTehsils-pane svg path").count() == len(tehsils)
    # the districts become outlines over the tehsils; the legend shows the tehsils' classes
    outlines = page.locator(".leaflet-overlay-pane svg path[fill='none']").count()
    assert outlines >= len(store.query("districts"))
    legend = page.locator("#kpmap-legend-tehsils")
    assert legend.is_visible() and "in no tehsil's count" in legend.inner_text()
    assert "tehsils" in page.locator("#kpmap-share-link").input_value()

    # A tehsil of a district that has attacks known only to it, away from every attack symbol:
    # its popup names it, its district and P-code, and says those attacks are not counted.
    attacks = store.query("attacks")
    points = shapely.points([f["geometry"]["coordinates"] for f in attacks])
    vague = {f["properties"]["district"] for f in attacks if f["properties"]["tehsil"] is None}
    tehsil, inside = next(
        (t, point)
        for t in tehsils
        if t["properties"]["district"] in vague
        and shapely.distance(point := shape(t["geometry"]).representative_point(), points).min()
        > 0.05
    )
    click_map_at(page, inside.y, inside.x, 11)
    popup = page.locator(".leaflet-popup-content .kpmap-popup")
    popup.wait_for(timeout=10_000)
    text = popup.inner_text()
    district = store.feature("districts", tehsil["properties"]["district"])["properties"]["name"]
    assert popup.locator("h3").inner_text() == tehsil["properties"]["name"]
    assert district in text and tehsil["properties"]["pcode"] in text
    assert "Former Frontier Region" in text and "in no tehsil's count" in text
    screenshot(page, "tehsils.png")
    watched.assert_clean()


def test_district_popup_gives_pcode_frontier_region_and_successors(watched, server, store):
    district = next(
        d
        for d in store.query("districts")
        if d["properties"]["successors"] and d["properties"]["frontier_region"]
    )
    props = district["properties"]
    inside = shape(district["geometry"]).representative_point()
    page = watched.open(server.url + "/?layers=districts").page
    click_map_at(page, inside.y, inside.x, 9)
    popup = page.locator(".leaflet-popup-content .kpmap-popup")
    popup.wait_for(timeout=10_000)
    text = popup.inner_text()
    assert popup.locator("h3").inner_text() == props["name"]
    assert props["pcode"] in text and props["frontier_region"] in text
    # figures with thousands separators, as toLocaleString("en") writes them (map.js's n)
    assert f"{math.floor(props['area_km2'] + 0.5):,} km²" in text
    links = popup.locator(".kpmap-popup-successors a").evaluate_all("a => a.map(l => l.href)")
    for successor in props["successors"]:
        assert successor["name"] in text and successor["citation"]["publication"] in text
        if successor["citation"]["url"].startswith(("http://", "https://")):
            assert successor["citation"]["url"] in links
    watched.assert_clean()


def test_border_bands_draw_on_request(watched, server):
    page = watched.open(server.url + "/?layers=durand_line,bands&max_border_km=25").page
    page.wait_for_function("() => window.kpmapStats.bands === 3")
    watched.assert_clean()


def test_embed_page_works_inside_an_iframe_of_another_site(browser, server):
    host_page = (
        f'<!doctype html><title>another site</title><h1>A story</h1><iframe id="map" '
        f'src="{server.url}/embed?from=2024&zoom=7&center=33.9,71.5" width="900" height="560">'
        "</iframe>"
    ).encode()

    def other_site(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [host_page]

    other = Server(other_site)
    watched = Watched(browser, {server.host, other.host})
    try:
        watched.page.goto(other.url + "/")
        frame = watched.page.frame_locator("#map")
        frame.locator(".kpmap-legend").wait_for(timeout=60_000)
        inner = next(f for f in watched.page.frames if f.url.startswith(server.url + "/embed"))
        inner.wait_for_function(READY, timeout=60_000)
        stats = inner.evaluate("() => window.kpmapStats")
        assert stats["districts"] > 0 and stats["border"] > 0
        assert stats["markers"] + stats["districtOnly"] == stats["count"] > 0
        assert frame.locator("#kpmap-panel").count() == 0  # no page chrome in the embed
        screenshot(watched.page, "embed.png")
        watched.assert_clean()
    finally:
        watched.close()
        other.close()


def test_server_side_clusters_when_there_are_many_attacks(browser, store_dir):
    """Past MAP_CLIENT_LIMIT the server grids the attacks per view; here the limit is 0."""
    server = Server(create_app({"STORE": str(store_dir), "MAP_CLIENT_LIMIT": 0}))
    watched = Watched(browser, {server.host})
    try:
        watched.open(server.url + "/")
        stats = watched.stats()
        assert stats["cells"] + stats["markers"] > 0
        assert stats["districtOnly"] > 0
        assert "/api/map/clusters.json?" in " ".join(watched.requests)
        asked = " ".join(watched.requests).count("/api/map/clusters.json?")
        box = watched.page.locator(".folium-map").bounding_box()
        watched.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        watched.page.mouse.wheel(0, -400)  # zoom in: a new view asks the server again
        watched.page.wait_for_function(f"() => window.kpmapStats.draws > {stats['draws']}")
        assert " ".join(watched.requests).count("/api/map/clusters.json?") > asked
        watched.assert_clean()
    finally:
        watched.close()
        server.close()


def test_restricted_attacks_are_drawn_only_as_server_clusters(browser, tmp_path_factory, store):
    """ACLED and GTD rows (stand-ins) without a licence: the page asks the server for clusters,
    never for the point feed or a restricted record, and still draws and counts them all."""
    server = Server(create_app({"STORE": str(build_licence_store(tmp_path_factory, store))}))
    watched = Watched(browser, {server.host})
    try:
        watched.open(server.url + "/")
        stats = watched.stats()
        asked = " ".join(watched.requests)
        assert "/api/map/clusters.json?" in asked and "/api/map/attacks.json" not in asked
        assert not any(fid in asked for fid in RESTRICTED_IDS)
        assert stats["cells"] > 0 and stats["districtOnly"] > 0
        note = watched.page.locator("#kpmap-withheld").inner_text()
        assert "come from ACLED, GTD" in note
        screenshot(watched.page, "licences.png")
        watched.assert_clean()
    finally:
        watched.close()
        server.close()


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory) -> Iterator[Server]:
    running = Server(create_app({"STORE": str(build_hostile_store(tmp_path_factory))}))
    yield running
    running.close()


def open_popup_at(watched: "Watched", server: "Server", at: tuple[float, float]):
    """Open the map centred on `at` (lon, lat) at zoom 11, click the marker there, and return
    the page and its popup once shown."""
    lon, lat = at
    page = watched.open(f"{server.url}/?center={lat},{lon}&zoom=11").page
    box = page.locator(".folium-map").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    popup = page.locator(".leaflet-popup-content .kpmap-popup")
    popup.wait_for(timeout=30_000)
    return page, popup


def test_popup_shows_markup_in_data_as_text(browser, hostile_server):
    watched = Watched(browser, {hostile_server.host})
    try:
        page, popup = open_popup_at(watched, hostile_server, HOSTILE_AT)
        text = popup.inner_text()
        assert PAYLOAD in text and "<script>alert(2)</script>" in text
        assert popup.locator("img, script, b").count() == 0
        links = popup.locator("a").evaluate_all("links => links.map(a => a.href)")
        assert links == ["https://example.org/report?a=1&b=2"]  # javascript: never a link
        screenshot(page, "popup.png")
        page.wait_for_timeout(300)  # an onerror handler would have fired by now
        # the example.org link is only a link: nothing was fetched from it
        watched.assert_clean()
    finally:
        watched.close()


def test_a_clash_is_a_ring_whose_popup_names_parties_not_a_perpetrator(browser, hostile_server):
    watched = Watched(browser, {hostile_server.host})
    try:
        page, popup = open_popup_at(watched, hostile_server, CLASH_AT)
        text = popup.inner_text()
        assert "armed clash" in text and "no perpetrator named" in text
        assert f"Government of Pakistan v {PAYLOAD}" in text  # a party's name is text, too
        assert "side B 4" in text and "out of order" in text
        assert popup.locator("img, script").count() == 0
        screenshot(page, "clash-popup.png")
        watched.assert_clean()
    finally:
        watched.close()
