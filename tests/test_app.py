"""app/__init__.py, app/errors.py, app/security.py: the factory, error answers, headers."""

import pytest

from app import create_app, get_store


def test_factory_opens_the_store_once(app):
    with app.app_context():
        assert get_store() is get_store()
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
