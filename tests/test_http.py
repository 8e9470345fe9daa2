"""app/http.py, app/extensions.py, wsgi.py and the HTTP defects of issue 14 (item 7): zoom
digits, full disks under the caches, ids holding "/", Allow on 405, CORS on errors, q=0 in
Accept-Encoding, byte ranges on downloads, and links that never come from the Host header."""

import ast
import errno
import gc
import gzip
import importlib
import sys
from pathlib import Path

import orjson
import pytest

from app import create_app
from geo.ogc.html import render_html

ROOT = Path(__file__).parent.parent


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# --- the package's plan -------------------------------------------------------------------------


def test_blueprints_import_the_shared_resources_from_extensions_never_from_app():
    for path in (ROOT / "app").glob("*.py"):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "app":
                for alias in node.names:  # only submodules: `from app import http`
                    assert (ROOT / "app" / f"{alias.name}.py").exists(), (path.name, alias.name)


def test_the_factory_has_no_process_wide_side_effects(store_dir, monkeypatch):
    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(1))
    create_app({"STORE": str(store_dir)})
    assert frozen == []


def test_wsgi_makes_the_app_then_freezes_it(store_dir, monkeypatch):
    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(1))
    monkeypatch.setenv("KPMAP_STORE", str(store_dir))
    monkeypatch.delitem(sys.modules, "wsgi", raising=False)
    wsgi = importlib.import_module("wsgi")
    assert frozen == [1]
    assert wsgi.app.test_client().get("/ogc").status_code == 200
    assert "wsgi:app" in (ROOT / "Makefile").read_text(encoding="utf-8")


# --- zoom digits --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("/?zoom=²", "zoom must be a whole number"),
        ("/embed?zoom=²", "zoom must be a whole number"),
        ("/?zoom=٣", "zoom must be a whole number"),
        ("/api/map/clusters.json?z=²&view=60,25,80,40", "z must be a whole number"),
    ],
)
def test_a_zoom_in_other_digits_is_a_400_not_a_500(client, url, says):
    response = client.get(url, headers={"Accept": "text/html"})
    assert response.status_code == 400
    assert says in response.get_data(as_text=True)


# --- a full disk under the caches ----------------------------------------------------------------


def test_a_full_disk_under_the_tile_cache_still_serves_tiles(store_dir, tmp_path, monkeypatch):
    from geo.tiles import cache

    client = create_app({"STORE": str(store_dir), "TILE_CACHE_DIR": str(tmp_path)}).test_client()
    monkeypatch.setattr(cache, "write_atomic", enospc)
    response = client.get("/tiles/districts/5/22/13.png")
    assert response.status_code == 200 and response.data.startswith(b"\x89PNG")
    assert client.get("/tiles/districts/5/22/13.png").status_code == 200  # from memory


def test_an_unwritable_tile_cache_does_not_stop_the_app(store_dir, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder should be")
    client = create_app({"STORE": str(store_dir), "TILE_CACHE_DIR": str(blocked)}).test_client()
    assert client.get("/tiles/districts/0/0/0.mvt").status_code == 200


def test_a_full_download_cache_falls_back_to_a_temporary_file(store_dir, tmp_path, monkeypatch):
    from app import downloads

    cache = tmp_path / "cache"
    real_write = downloads.write_geopackage

    def write(path, parts):
        if cache in Path(path).parents:
            enospc()
        real_write(path, parts)

    monkeypatch.setattr(downloads, "write_geopackage", write)
    client = create_app({"STORE": str(store_dir), "DOWNLOAD_CACHE_DIR": str(cache)}).test_client()
    response = client.get("/download/kpmap.gpkg?from=2000")  # the whole store's is the build's
    assert response.status_code == 200 and response.data.startswith(b"SQLite format 3")
    response.close()
    assert not list(cache.glob("*.gpkg")) and not list(cache.glob(".kpmap-*"))


def test_no_disk_at_all_is_a_503_with_retry_after(store_dir, tmp_path, monkeypatch):
    from app import downloads

    monkeypatch.setattr(downloads, "write_geopackage", enospc)
    client = create_app(
        {"STORE": str(store_dir), "DOWNLOAD_CACHE_DIR": str(tmp_path)}
    ).test_client()
    response = client.get("/download/kpmap.gpkg?from=2000")  # the whole store's is the build's
    assert response.status_code == 503 and response.is_json
    assert response.headers["Retry-After"] and "disk space" in response.get_json()["description"]
    # a range of a GeoJSON cannot be written either: the whole answer, streamed, instead
    monkeypatch.setattr(downloads, "atomic_path", enospc)
    monkeypatch.setattr(downloads.tempfile, "mkdtemp", enospc)
    whole = client.get("/download/districts.geojson", headers={"Range": "bytes=0-9"})
    assert whole.status_code == 200
    assert orjson.loads(whole.data)["type"] == "FeatureCollection"


# --- feature ids holding "/" ----------------------------------------------------------------------


def test_an_id_holding_a_slash_is_reachable_by_the_link_the_list_gives(app, monkeypatch):
    from app.extensions import KEY

    store = app.extensions[KEY].live.current()
    client = app.test_client()
    layer = store.layer("attacks")
    first = store.query("attacks")[0]
    monkeypatch.setitem(layer.by_id, "ged/2024/1", layer.by_id[first["id"]])
    fake = {"type": "FeatureCollection", "features": [{**first, "id": "ged/2024/1"}]}
    base = "http://localhost/ogc"
    page = render_html(fake, "t", base, f"{base}/collections/attacks/items")
    assert "/items/ged%2F2024%2F1?f=html" in page
    response = client.get("/ogc/collections/attacks/items/ged%2F2024%2F1?f=json")
    assert response.status_code == 200 and response.get_json()["id"] == first["id"]
    assert client.get("/ogc/collections/attacks/items/ged/2024/1").status_code == 200


# --- 405, CORS on errors ------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/ogc", "/ogc/collections/attacks/items", "/download/kpmap.gpkg"])
def test_a_405_says_which_methods_are_allowed(client, url):
    response = client.post(url)
    assert response.status_code == 405 and response.is_json
    assert {"GET", "HEAD"} <= {m.strip() for m in response.headers["Allow"].split(",")}
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    "url",
    [
        "/ogc/no/such/resource/at/all",
        "/download/attacks.geojson?from=soon",
        "/tiles/attacks/0/0/0.png?actor=nobody",
        "/tiles/a/b",
    ],
)
def test_error_answers_carry_cors(client, url):
    response = client.get(url)
    assert response.status_code in (400, 404)
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_pages_are_not_opened_to_other_origins(client):
    assert "Access-Control-Allow-Origin" not in client.get("/").headers


# --- Accept-Encoding q-values --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/download/attacks.geojson",
        "/download/attacks.csv",
        "/ogc/api",
        "/api/map/border-bands.geojson",
        "/tiles/basemap/5/22/13.mvt",
        "/",
    ],
)
@pytest.mark.parametrize(
    "header", ["gzip;q=0", "gzip;q=0, identity", "GZIP;Q=0", "gzip;q=0, *;q=0"]
)
def test_a_refused_coding_is_never_sent(client, url, header):
    response = client.get(url, headers={"Accept-Encoding": header})
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    assert "Accept-Encoding" in response.headers["Vary"]
    response.close()


def test_q_values_choose_among_codings(client):
    import brotli

    response = client.get("/ogc/api", headers={"Accept-Encoding": "gzip;q=0.5, br;q=0.9"})
    assert response.headers["Content-Encoding"] == "br"
    assert orjson.loads(brotli.decompress(response.data))["openapi"]
    # a named refusal wins over the wildcard
    other = client.get("/download/attacks.csv", headers={"Accept-Encoding": "gzip;q=0, *"})
    assert other.headers.get("Content-Encoding") != "gzip"
    other.close()


# --- byte ranges on downloads ---------------------------------------------------------------------


def test_geopackage_ranges(client):
    whole = client.get("/download/kpmap.gpkg")
    assert whole.headers["Accept-Ranges"] == "bytes"
    body = whole.get_data()
    part = client.get("/download/kpmap.gpkg", headers={"Range": "bytes=100-1123"})
    assert part.status_code == 206 and part.get_data() == body[100:1124]
    assert part.headers["Content-Range"] == f"bytes 100-1123/{len(body)}"
    assert part.headers["Access-Control-Allow-Origin"] == "*"
    tail = client.get("/download/kpmap.gpkg", headers={"Range": f"bytes={len(body) - 10}-"})
    assert tail.status_code == 206 and tail.get_data() == body[-10:]
    past = client.get("/download/kpmap.gpkg", headers={"Range": f"bytes={len(body) + 5}-"})
    assert past.status_code == 416
    assert past.headers["Content-Range"] == f"bytes */{len(body)}"
    for response in (whole, part, tail, past):
        response.close()


@pytest.mark.parametrize(
    "url",
    ["/download/attacks.csv", "/download/attacks.geojson", "/download/attacks.csv?actor=TTP"],
)
def test_a_generated_download_resumes_where_it_stopped(client, url):
    whole = client.get(url)
    assert whole.headers["Accept-Ranges"] == "bytes"
    full = whole.get_data()
    cut = len(full) // 3
    # a resumed download asks for the rest, gzip or not: the bytes are the identity bytes
    rest = client.get(url, headers={"Range": f"bytes={cut}-", "Accept-Encoding": "gzip"})
    assert rest.status_code == 206 and "Content-Encoding" not in rest.headers
    assert rest.headers["Content-Range"] == f"bytes {cut}-{len(full) - 1}/{len(full)}"
    resumed = full[:cut] + rest.get_data()
    if url.endswith(".geojson"):  # generated_at may differ by a second, in the same width
        assert len(resumed) == len(full)
        a, b = orjson.loads(resumed), orjson.loads(full)
        a["metadata"].pop("generated_at"), b["metadata"].pop("generated_at")
        assert a == b
    else:
        assert resumed == full
    for response in (whole, rest):
        response.close()


def test_the_whole_layer_is_kept_for_ranges(store_dir, tmp_path):
    client = create_app(
        {"STORE": str(store_dir), "DOWNLOAD_CACHE_DIR": str(tmp_path)}
    ).test_client()
    first = client.get("/download/districts.geojson", headers={"Range": "bytes=0-99"})
    assert first.status_code == 206 and len(first.get_data()) == 100
    (kept,) = tmp_path.glob("kpmap-districts-*.geojson")
    again = client.get("/download/districts.geojson", headers={"Range": "bytes=0-"})
    assert again.get_data() == kept.read_bytes()
    filtered = client.get(
        "/download/districts.geojson?bbox=70,33,72,35", headers={"Range": "bytes=0-9"}
    )
    assert filtered.status_code == 206 and len(filtered.get_data()) == 10
    assert len(list(tmp_path.glob("kpmap-*"))) == 1  # a filtered one is never kept
    for response in (first, again, filtered):
        response.close()


def test_a_streamed_download_is_still_gzipped_without_range(client):
    response = client.get("/download/attacks.geojson", headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert "Accept-Ranges" not in response.headers  # ranges are of the identity bytes
    assert orjson.loads(gzip.decompress(response.data))["type"] == "FeatureCollection"


# --- links never come from the Host header -------------------------------------------------------


def links(doc) -> list[str]:
    return [link["href"] for link in doc["links"]]


def test_public_url_names_every_link(store_dir):
    app = create_app({"STORE": str(store_dir), "PUBLIC_URL": "https://kpmap.example.org/maps/"})
    client = app.test_client()
    evil = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    for url in ("/ogc", "/ogc/collections/attacks/items?limit=1"):
        hrefs = links(client.get(url, headers=evil).get_json())
        assert hrefs and all(h.startswith("https://kpmap.example.org/maps/ogc") for h in hrefs)
    tilejson = client.get("/tiles/attacks.json", headers=evil).get_json()
    assert tilejson["tiles"][0].startswith("https://kpmap.example.org/maps/tiles/attacks/")


def test_forwarded_headers_are_believed_only_when_the_setting_says_so(store_dir, client):
    forwarded = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    assert all("evil" not in h for h in links(client.get("/ogc", headers=forwarded).get_json()))
    trusting = create_app({"STORE": str(store_dir), "TRUSTED_PROXIES": 1}).test_client()
    hrefs = links(trusting.get("/ogc", headers=forwarded).get_json())
    assert all(h.startswith("https://evil.example/ogc") for h in hrefs)


def test_the_etag_changes_with_the_links_host(client):
    a = client.get("/ogc", headers={"Host": "a.example"}).headers["ETag"]
    b = client.get("/ogc", headers={"Host": "b.example"}).headers["ETag"]
    assert a != b


def test_a_malformed_public_url_stops_the_app_at_start(store_dir):
    with pytest.raises(ValueError, match="PUBLIC_URL"):
        create_app({"STORE": str(store_dir), "PUBLIC_URL": "kpmap.example.org"})


# --- the CSP builder ---------------------------------------------------------------------------


def test_one_csp_builder():
    from app.http import CONTENT_SECURITY_POLICY, content_security_policy

    framed = content_security_policy("*", ["https://tile.openstreetmap.org"])
    assert "frame-ancestors *" in framed and "frame-ancestors 'self'" in CONTENT_SECURITY_POLICY
    assert "img-src 'self' data: blob: https://tile.openstreetmap.org" in framed
    assert "default-src 'self'" in framed


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00%2B01:00", "9999-12-31T23:00:00-05:00"])
def test_a_datetime_with_no_utc_date_is_a_400_not_a_500(client, moment):
    """Found by schemathesis: converting these instants to UTC leaves the calendar."""
    response = client.get(f"/ogc/collections/attacks/items?datetime={moment}")
    assert response.status_code == 400
    assert "datetime" in response.get_json()["description"]


@pytest.mark.parametrize(
    "url",
    [
        "/download/districts.geojson?district=" + "," * 100,  # 101 items, as the document counts
        "/download/durand_line.geojson?from=%C3%A4",  # not applied to the line, still malformed
        "/download/tehsils.geojson?to=2024-13",
    ],
)
def test_downloads_refuse_what_the_document_refuses(client, url):
    """Found by schemathesis (ST201): values the OpenAPI document rules out were accepted."""
    response = client.get(url)
    assert response.status_code == 400 and response.is_json
