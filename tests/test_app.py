"""app/__init__.py, app/errors.py, app/http.py: the factory, error answers, headers."""

import pytest

from app import create_app, get_store


def test_factory_opens_the_store_once(store_dir, monkeypatch):
    """The store is opened when the app is made, never again per request."""
    from geo.store import Store

    opened = []
    real_open = Store.open.__func__
    monkeypatch.setattr(
        Store, "open", classmethod(lambda cls, p: opened.append(p) or real_open(cls, p))
    )
    app = create_app({"STORE": str(store_dir), "TESTING": True})
    client = app.test_client()
    for url in ("/ogc/collections", "/download/districts.geojson", "/tiles/districts/0/0/0.mvt"):
        assert client.get(url).status_code == 200
    assert len(opened) == 1
    with app.app_context():
        assert "districts" in get_store().layer_names


def test_environment_names_the_store(store_dir, monkeypatch):
    monkeypatch.setenv("KPMAP_STORE", str(store_dir))
    assert create_app().config["STORE"] == str(store_dir)


def test_a_missing_store_fails_at_start_not_per_request(tmp_path):
    from geo.errors import StoreNotFound

    with pytest.raises(StoreNotFound, match="kpmap build"):
        create_app({"STORE": str(tmp_path / "none")})


def test_unknown_page_is_html_404_and_api_404_is_json(client):
    page = client.get("/no-such-page", headers={"Accept": "text/html"})
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "Traceback" not in page.get_data(as_text=True)
    api = client.get("/ogc/no-such-thing")
    assert api.status_code == 404 and api.is_json
    assert api.get_json()["status"] == 404


def test_security_headers(client):
    response = client.get("/no-such-page")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"]


@pytest.mark.parametrize(
    ("url", "encoding"),
    [("/", "gzip"), ("/static/vendor/leaflet/dist/leaflet.js", "br")],
)
def test_pages_and_scripts_are_compressed_for_clients_that_take_it(client, url, encoding):
    import gzip

    import brotli

    plain = client.get(url)
    assert plain.status_code == 200 and "Content-Encoding" not in plain.headers
    packed = client.get(url, headers={"Accept-Encoding": encoding})
    assert packed.headers["Content-Encoding"] == encoding
    assert "Accept-Encoding" in packed.headers["Vary"]
    body = packed.get_data()
    assert len(body) < len(plain.get_data()) / 2
    unpack = gzip.decompress if encoding == "gzip" else brotli.decompress
    if url != "/":  # the page itself differs between requests (its element ids are random)
        assert unpack(body) == plain.get_data()
    else:
        assert b"<title>kpmap" in unpack(body)
    plain.close()
    packed.close()


def test_a_compressed_script_still_answers_304_to_its_etag(client):
    url = "/static/vendor/leaflet/dist/leaflet.js"
    first = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert first.headers["Content-Encoding"] == "gzip"
    again = client.get(
        url, headers={"Accept-Encoding": "gzip", "If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304 and not again.get_data()
    first.close()
    again.close()


def test_vector_tiles_are_compressed_and_still_answer_304(client):
    import gzip

    url = "/tiles/basemap/5/22/13.mvt"
    plain = client.get(url).get_data()
    packed = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.get_data()) == plain
    again = client.get(
        url, headers={"Accept-Encoding": "gzip", "If-None-Match": packed.headers["ETag"]}
    )
    assert again.status_code == 304
