"""app/downloads.py and app/ogc.py (downloads and OGC API – Features) and the geo/ modules behind
them: geo/ogc/items.py, geo/export.py, geo/ogc/params.py, geo/ogc/documents.py,
geo/ogc/html.py, geo/ogc/openapi.py.

The OGC tests are named after the requirement of OGC API – Features – Part 1: Core (OGC 17-069r4)
they check, e.g. test_req_core_fc_limit_definition for /req/core/fc-limit-definition.
"""

import csv
import gzip
import io
import json
import math
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import geopandas as gpd
import numpy as np
import orjson
import pytest
import shapely

from app import create_app
from app.extensions import KEY
from geo.export import csv_chunks, neutralise
from geo.ogc import params
from geo.store.schemas import LAYERS

LAYER_NAMES = ("districts", "tehsils", "durand_line", "attacks", "countries")
CORE = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core"


def get_json(client, url, **kw):
    response = client.get(url, **kw)
    assert response.status_code == 200, response.data[:300]
    return orjson.loads(response.data)


def relative(href: str) -> str:
    """A link's path and query, for the test client."""
    parts = urlsplit(href)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def rels(doc) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for link in doc["links"]:
        found.setdefault(link["rel"], []).append(link)
    return found


def plain(value):
    """A value read back by GDAL, made comparable with the stored one."""
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


# --- downloads: GeoJSON -----------------------------------------------------------------------


@pytest.mark.parametrize("layer", LAYER_NAMES)
def test_geojson_download_of_each_layer(client, store, layer):
    response = client.get(f"/download/{layer}.geojson")
    assert response.status_code == 200
    assert response.mimetype == "application/geo+json"
    day = store.manifest["built_at"][:10]
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="kpmap-{layer}-{day}.geojson"'
    )
    doc = orjson.loads(response.data)
    assert doc["type"] == "FeatureCollection" and "crs" not in doc
    assert [f["id"] for f in doc["features"]] == [f["id"] for f in store.query(layer)]
    metadata = doc["metadata"]
    assert metadata["layer"] == layer and metadata["count"] == len(doc["features"])
    assert metadata["filters"] == {}
    assert metadata["sources"] == store.manifest["layers"][layer]["sources"]
    assert metadata["licences"] and metadata["attribution"]
    assert metadata["store_built_at"] == store.manifest["built_at"]


def test_geojson_download_applies_the_map_filters(client, store):
    url = "/download/attacks.geojson?actor=iskp&from=2023&district=Bajour&bbox=69,30,75,37"
    doc = get_json(client, url)
    expected = store.query(
        "attacks", actor="ISKP", start="2023", district="bajaur", bbox=(69, 30, 75, 37)
    )
    assert expected and [f["id"] for f in doc["features"]] == [f["id"] for f in expected]
    assert doc["metadata"]["filters"] == {
        "bbox": [69.0, 30.0, 75.0, 37.0],
        "from": "2023",
        "actor": ["ISKP"],
        "district": ["bajaur"],
    }


def test_other_layers_report_attack_filters_they_did_not_apply(client):
    doc = get_json(client, "/download/districts.geojson?actor=TTP&district=bajaur")
    assert [f["id"] for f in doc["features"]] == ["bajaur"]
    assert doc["metadata"]["filters"] == {"district": ["bajaur"]}
    assert doc["metadata"]["filters_not_applied"] == ["actor"]


def test_a_successor_district_filter_says_which_polygon_it_selected(client):
    doc = get_json(client, "/download/attacks.geojson?district=Upper South Waziristan")
    assert doc["metadata"]["filters"] == {"district": ["south-waziristan"]}
    assert "Upper South Waziristan (created 2022-10)" in doc["metadata"]["filter_notes"][0]
    ogc_doc = get_json(client, "/ogc/collections/tehsils/items?district=Central Dir")
    assert {f["properties"]["district"] for f in ogc_doc["features"]} == {"upper-dir"}
    assert ogc_doc["numberMatched"] == 7
    assert "Central Dir (created 2023-01)" in ogc_doc["notes"][0]
    assert "notes" not in get_json(client, "/ogc/collections/tehsils/items?district=PK503")
    tehsils = get_json(client, "/download/tehsils.geojson?district=Kohistan")
    assert {f["properties"]["district"] for f in tehsils["features"]} == {
        "lower-kohistan",
        "upper-kohistan",
        "kolai-palas",
    }
    assert "Kohistan was split" in tehsils["metadata"]["filter_notes"][0]
    page = client.get("/?district=Paharpur").get_data(as_text=True)
    assert "Paharpur (created 2025-11) is not drawn in the 2022 boundaries" in page


def test_download_streams(client):
    response = client.get("/download/attacks.geojson", buffered=False)
    assert response.is_streamed
    chunks = list(response.response)
    assert len(chunks) >= 3  # head, features, tail: never one string of the whole layer
    response.close()


def test_geojson_round_trip(client, store, tmp_path):
    """download -> geopandas.read_file -> the same features, properties and geometries."""
    for layer in LAYER_NAMES:
        path = tmp_path / f"{layer}.geojson"
        path.write_bytes(client.get(f"/download/{layer}.geojson").data)
        frame = gpd.read_file(path, DATE_AS_STRING="YES")
        originals = store.query(layer)
        assert list(frame["id"]) == [f["id"] for f in originals]
        for (_, row), original in zip(frame.iterrows(), originals, strict=True):
            for key, value in original["properties"].items():
                assert plain(row[key]) == value, (layer, original["id"], key)
            assert row.geometry.equals(shapely.geometry.shape(original["geometry"]))


# --- downloads: CSV ---------------------------------------------------------------------------


def test_csv_download(client, store):
    response = client.get("/download/attacks.csv?actor=ISKP")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "kpmap-attacks-" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.data.decode("utf-8"))))
    expected = store.query("attacks", actor="ISKP")
    assert [r["id"] for r in rows] == [f["id"] for f in expected]
    for row, feature in zip(rows, expected, strict=True):
        lon, lat = feature["geometry"]["coordinates"]
        assert (float(row["longitude"]), float(row["latitude"])) == (lon, lat)
        first = feature["properties"]["sources"][0]
        assert row["sources"].startswith(f"{first['publication']} ({first['date']}): ")
        assert row["killed_best"] == str(feature["properties"]["killed_best"] or "")
        assert row["claimed"] in ("true", "false", "")


def test_csv_only_for_attacks(client):
    response = client.get("/download/districts.csv")
    assert response.status_code == 404
    assert "/download/districts.geojson" in response.get_json()["description"]


class CraftedLayer:
    """A layer of hand-made attacks whose text tries spreadsheet formulas."""

    schema = LAYERS["attacks"]

    def __init__(self, features):
        self.features = features

    def feature_bytes(self, i):
        return orjson.dumps(self.features[i])


def test_csv_neutralises_formulas():
    properties = dict.fromkeys(LAYERS["attacks"].properties, "plain")
    properties |= {
        "location": '=HYPERLINK("http://evil","x")',
        "description": "+cmd|' /C calc'!A0",
        "target": "-2+3",
        "actor": "@SUM(A1:A9)",
        "district": "\tTAB",
        "killed_best": -1,  # a number stays a number
        "sources": [{"publication": "=1+1", "title": "t", "date": "", "url": ""}],
    }
    feature = {
        "type": "Feature",
        "id": "=evil-id",
        "geometry": {"type": "Point", "coordinates": [-0.5, 34.0]},
        "properties": properties,
    }
    text = b"".join(csv_chunks(CraftedLayer([feature]), np.array([0]))).decode()
    (row,) = csv.DictReader(io.StringIO(text))
    for key in ("location", "description", "target", "actor", "district", "sources", "id"):
        assert row[key].startswith("'"), key
    assert row["killed_best"] == "-1" and row["longitude"] == "-0.5"
    assert neutralise("Khar") == "Khar" and neutralise("-x") == "'-x"


# --- downloads: GeoPackage --------------------------------------------------------------------


def test_geopackage_round_trip(client, store, tmp_path):
    response = client.get("/download/kpmap.gpkg")
    assert response.status_code == 200
    assert response.mimetype == "application/geopackage+sqlite3"
    assert re.match(r'attachment; filename="kpmap-\d{4}-\d{2}-\d{2}\.gpkg"',
                    response.headers["Content-Disposition"])  # fmt: skip
    path = tmp_path / "kpmap.gpkg"
    path.write_bytes(response.data)
    for layer in LAYER_NAMES:
        frame = gpd.read_file(path, layer=layer)
        originals = store.query(layer)
        assert list(frame["id"]) == [f["id"] for f in originals]
        for (_, row), original in zip(frame.iterrows(), originals, strict=True):
            for key, value in original["properties"].items():
                read = plain(row[key])
                if isinstance(value, list | dict):
                    read = json.loads(read)  # one scalar per column: JSON text
                assert read == value, (layer, original["id"], key)
            assert row.geometry.equals(shapely.geometry.shape(original["geometry"]))


def test_geopackage_filters_and_cleans_up(client, download_cache, tmp_path):
    response = client.get("/download/kpmap.gpkg?actor=ISKP")
    path = tmp_path / "out.gpkg"
    path.write_bytes(response.data)
    response.close()
    assert set(gpd.read_file(path, layer="attacks")["actor"]) == {"ISKP"}
    assert len(gpd.read_file(path, layer="districts")) == 35  # attack filters: attacks only
    assert not list(download_cache.glob(".*.tmp*"))  # no half-written file is left


def gpkg_app(store_dir, folder, monkeypatch, **config):
    """An app keeping its downloads in `folder`, and the list of GeoPackages it writes."""
    from app import downloads

    written = []
    real_write = downloads.write_geopackage
    monkeypatch.setattr(
        downloads, "write_geopackage", lambda *a: written.append(1) or real_write(*a)
    )
    app = create_app({"STORE": str(store_dir), "DOWNLOAD_CACHE_DIR": str(folder), **config})
    return app, written


def test_a_geopackage_is_written_once_per_store_and_filters(store_dir, tmp_path, monkeypatch):
    app, written = gpkg_app(store_dir, tmp_path, monkeypatch)
    client = app.test_client()
    # (the whole store's is the build's: tests/test_prepared_downloads.py)
    first = client.get("/download/kpmap.gpkg?from=2000").get_data()
    again = client.get("/download/kpmap.gpkg?from=2000").get_data()
    assert len(written) == 1 and first == again
    (kept,) = tmp_path.glob("*.gpkg")
    assert kept.read_bytes() == first and kept.name.startswith(app.extensions[KEY].live.version)
    assert len(gpd.read_file(kept, layer="districts")) == 35
    filtered = client.get("/download/kpmap.gpkg?actor=ISKP").get_data()  # kept too, apart
    assert client.get("/download/kpmap.gpkg?actor=iskp").get_data() == filtered  # same filter
    assert len(written) == 2 and len(list(tmp_path.glob("*.gpkg"))) == 2
    assert not list(tmp_path.glob(".*.tmp*"))  # no half-written files left


def test_concurrent_first_requests_write_one_geopackage(store_dir, tmp_path, monkeypatch):
    app, written = gpkg_app(store_dir, tmp_path, monkeypatch)
    bodies, statuses = [], []

    def ask() -> None:
        response = app.test_client().get("/download/kpmap.gpkg?actor=TTP")
        statuses.append(response.status_code)
        bodies.append(response.get_data())

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [200] * 6 and len(written) == 1 and len(set(bodies)) == 1


def test_head_never_writes_a_geopackage(store_dir, tmp_path, monkeypatch):
    app, written = gpkg_app(store_dir, tmp_path, monkeypatch)
    client = app.test_client()
    head = client.head("/download/kpmap.gpkg?actor=TTP")
    assert head.status_code == 200 and written == [] and not list(tmp_path.glob("*.gpkg"))
    # not written yet, so its length is not known: no Content-Length (0 would be a lie)
    assert "Content-Length" not in head.headers
    assert head.headers["Content-Type"] == "application/geopackage+sqlite3"
    assert head.headers["ETag"] and "attachment" in head.headers["Content-Disposition"]
    body = client.get("/download/kpmap.gpkg?actor=TTP").get_data()
    head = client.head("/download/kpmap.gpkg?actor=TTP")
    assert int(head.headers["Content-Length"]) == len(body) and len(written) == 1


def test_past_max_renders_a_geopackage_is_a_503_with_retry_after(store_dir, tmp_path, monkeypatch):
    app, written = gpkg_app(store_dir, tmp_path, monkeypatch, MAX_RENDERS=1)
    client = app.test_client()
    kept = client.get("/download/kpmap.gpkg?from=2000").get_data()
    renders = app.extensions[KEY].renders
    with renders._slot("elsewhere"):  # another worker's render holds the only slot
        busy = client.get("/download/kpmap.gpkg?actor=TTP")
        assert busy.status_code == 503 and busy.json["code"] == "busy"
        assert int(busy.headers["Retry-After"]) >= 5
        assert "MAX_RENDERS" in busy.json["description"]
        assert busy.headers["Access-Control-Allow-Origin"] == "*"
        assert client.get("/download/kpmap.gpkg?from=2000").get_data() == kept  # still sent
        assert client.get("/download/kpmap.gpkg").status_code == 200  # the build's
    rendered = client.get("/download/kpmap.gpkg?actor=TTP")
    assert rendered.status_code == 200 and rendered.get_data().startswith(b"SQLite format 3")
    assert len(written) == 2


def test_an_unwritable_download_cache_still_answers(store_dir, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder should be")
    client = create_app({"STORE": str(store_dir), "DOWNLOAD_CACHE_DIR": str(blocked)}).test_client()
    response = client.get("/download/kpmap.gpkg")
    assert response.status_code == 200 and response.data.startswith(b"SQLite format 3")
    response.close()


def test_the_default_download_cache_is_private_and_must_be_ours(store_dir, tmp_path, monkeypatch):
    from app import extensions

    folder = tmp_path / "kpmap-downloads-x"
    monkeypatch.setattr(extensions, "DEFAULT_DOWNLOAD_CACHE", folder)
    client = create_app({"STORE": str(store_dir), "DOWNLOAD_CACHE_DIR": ""}).test_client()
    client.get("/download/kpmap.gpkg?from=2000").close()
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert len(list(folder.glob("*.gpkg"))) == 1
    for kept in folder.glob("*.gpkg"):
        kept.unlink()
    # the folder now seems another user's: it is not used, and the download still works
    monkeypatch.setattr(extensions.os, "getuid", lambda: folder.stat().st_uid + 1)
    client = create_app({"STORE": str(store_dir), "DOWNLOAD_CACHE_DIR": ""}).test_client()
    response = client.get("/download/kpmap.gpkg?from=2000")
    assert response.status_code == 200 and response.data.startswith(b"SQLite format 3")
    response.close()
    assert not list(folder.glob("*.gpkg"))


# --- HTTP behaviour ---------------------------------------------------------------------------

DATA_URLS = [
    "/download/attacks.geojson",
    "/download/attacks.csv",
    "/ogc",
    "/ogc/collections",
    "/ogc/collections/attacks/items",
    "/ogc/collections/attacks/items?f=html",
]


@pytest.mark.parametrize("url", DATA_URLS)
def test_etag_and_not_modified(client, url):
    first = client.get(url)
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert etag.startswith('W/"') and "max-age" in first.headers["Cache-Control"]
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    other = client.get(url + ("&" if "?" in url else "?") + "f=json")
    assert other.headers.get("ETag") != etag


@pytest.mark.parametrize("url", [*DATA_URLS, "/ogc/collections/nope", "/download/x.geojson"])
def test_any_origin_may_read(client, url):
    assert client.get(url).headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("url", ["/download/attacks.geojson", "/download/attacks.csv", "/ogc/api"])
def test_gzip_when_accepted(client, url):
    plain_response = client.get(url)
    zipped = client.get(url, headers={"Accept-Encoding": "gzip, deflate"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    body = gzip.decompress(zipped.data)
    if url.endswith(".geojson"):  # generated_at may differ by a second
        a, b = orjson.loads(body), orjson.loads(plain_response.data)
        a["metadata"].pop("generated_at"), b["metadata"].pop("generated_at")
        assert a == b
    else:
        assert body == plain_response.data
    assert "Content-Encoding" not in plain_response.headers


def test_geopackage_is_not_gzipped(client):
    response = client.get("/download/kpmap.gpkg", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in response.headers
    assert response.data.startswith(b"SQLite format 3")


BAD_INPUTS = [
    ("/ogc/collections/attacks/items?bbox=70,33,72", 400, "4 comma-separated numbers"),
    ("/ogc/collections/attacks/items?bbox=72,33,70,35", 400, "greater than maxx"),
    ("/ogc/collections/attacks/items?bbox=70,33,72,95", 400, "latitude -90..90"),
    ("/ogc/collections/attacks/items?datetime=yesterday", 400, "RFC 3339"),
    ("/ogc/collections/attacks/items?datetime=2024-03-01/2024-01-01", 400, "starts after"),
    ("/ogc/collections/attacks/items?datetime=2024-01-01/2024-02-01/2024-03-01", 400, "RFC"),
    ("/ogc/collections/attacks/items?limit=-1", 400, "from 1 to 10000"),
    ("/ogc/collections/attacks/items?limit=0", 400, "from 1 to 10000"),
    (f"/ogc/collections/attacks/items?limit={10**9}", 400, "from 1 to 10000"),
    ("/ogc/collections/attacks/items?limit=10001", 400, "from 1 to 10000"),
    ("/ogc/collections/attacks/items?offset=-3", 400, "offset"),
    ("/ogc/collections/attacks/items?actor=Taliban", 400, "ISKP"),
    ("/ogc/collections/attacks/items?target=tourists", 400, "polio workers"),
    ("/ogc/collections/attacks/items?claimed=maybe", 400, "true, false"),
    ("/ogc/collections/attacks/items?max_border_km=-5", 400, ">= 0"),
    ("/ogc/collections/attacks/items?weather=rain", 400, "unknown parameter"),
    ("/ogc/collections/attacks/items?from=2024", 400, "unknown parameter"),
    ("/ogc/collections/districts/items?actor=TTP", 400, "unknown parameter"),
    ("/ogc/collections/attacks/items?f=xml", 400, "json or html"),
    ("/ogc/collections?bbox=1,2,3,4", 400, "unknown parameter"),
    ("/ogc/collections/attacks/items?actor=TTP%00", 400, "control characters"),
    ("/ogc/collections/attacks/items?id=a%00b", 400, "control characters"),
    ("/ogc/collections/attacks/items?%00=1", 400, "unknown parameter"),
    ("/ogc/collections/attacks/items?actor=%3Cscript%3E", 400, "not a known group"),
    ("/ogc/collections/nope", 404, "the layers are"),
    ("/ogc/collections/nope/items", 404, "the layers are"),
    ("/ogc/collections/attacks/items/no-such-attack", 404, "no feature"),
    ("/ogc/collections/attacks/items/%00", 404, "no feature"),
    ("/ogc/collections/..%2F..%2Fetc%2Fpasswd/items", 404, ""),
    ("/ogc/collections/%2E%2E/items", 404, "the layers are"),
    ("/ogc/collections/attacks%00/items", 404, "the layers are"),
    ("/download/nope.geojson", 404, "the layers are"),
    ("/download/../../etc/passwd.geojson", 404, ""),
    ("/download/..%2F..%2Fetc%2Fpasswd.geojson", 404, ""),
    ("/download/%2E%2E.geojson", 404, "the layers are"),
    ("/download/attacks%00.geojson", 404, "the layers are"),
    ("/download/attacks.geojson?bbox=1,2,3", 400, "4 comma-separated numbers"),
    ("/download/attacks.geojson?from=yesterday", 400, "YYYY-MM-DD"),
    ("/download/attacks.geojson?actor=%3Cscript%3E", 400, "not a known group"),
    ("/download/attacks.csv?max_border_km=-5", 400, ">= 0"),
    ("/download/kpmap.gpkg?bbox=70,33,72,95", 400, "latitude -90..90"),
    ("/download/attacks.geojson?district=%00", 400, "control characters"),
]


@pytest.mark.parametrize(("url", "status", "says"), BAD_INPUTS)
def test_bad_inputs_are_json_errors(client, url, status, says):
    response = client.get(url)
    assert response.status_code == status
    error = response.get_json()
    assert error["status"] == status and error["code"]
    assert says in error["description"]
    assert "<" not in error["description"] and "\x00" not in error["description"]


# --- OGC API – Features, Part 1: Core -----------------------------------------------------------


def test_req_core_root_success(client):
    doc = get_json(client, "/ogc")
    found = rels(doc)
    assert {"service-desc", "service-doc", "conformance", "data", "self", "alternate"} <= set(found)
    assert found["data"][0]["href"].endswith("/ogc/collections")
    assert found["service-desc"][0]["type"] == params.OPENAPI_JSON
    assert get_json(client, "/ogc/") == get_json(client, "/ogc")


def test_req_core_conformance_success(client):
    doc = get_json(client, "/ogc/conformance")
    assert set(doc["conformsTo"]) == set(params.CONFORMANCE) and CORE in doc["conformsTo"]


def test_req_core_api_definition_success(client, store):
    response = client.get("/ogc/api")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/vnd.oai.openapi+json")
    doc = orjson.loads(response.data)
    assert doc["openapi"].startswith("3.0") and doc["servers"][0]["url"].endswith("/ogc")
    for name in store.layer_names:
        assert f"/collections/{name}/items" in doc["paths"]
        assert f"/collections/{name}/items/{{featureId}}" in doc["paths"]
    for path in ("/", "/conformance", "/collections", "/api", "/download/kpmap.gpkg"):
        assert path in doc["paths"]
    # Every $ref resolves inside the document.
    refs = re.findall(r'"\$ref":"#/components/(\w+)/(\w+)"', response.data.decode())
    assert refs and all(name in doc["components"][kind] for kind, name in refs)


def test_req_oas30_completeness(client):
    doc = get_json(client, "/ogc/api")
    for operation in (p["get"] for p in doc["paths"].values()):
        assert {"200", "400", "404", "500"} <= set(operation["responses"])


def test_req_core_query_param_unknown_matches_the_definition(client):
    """Each items path declares exactly the parameters the server accepts."""
    doc = get_json(client, "/ogc/api")
    components = doc["components"]["parameters"]
    declared = doc["paths"]["/collections/attacks/items"]["get"]["parameters"]
    names = {components[p["$ref"].rsplit("/", 1)[1]]["name"] if "$ref" in p else p["name"]
             for p in declared}  # fmt: skip
    for name in names:
        value = {"bbox": "70,33,72,35", "datetime": "2024", "limit": "5", "offset": "0",
                 "f": "json", "max_border_km": "50", "geo_precision": "1", "claimed": "true",
                 "event_type": "other", "target": "other", "actor": "TTP",
                 "date_precision": "day", "district": "bajaur",
                 "category": "armed clash"}.get(name, "x")  # fmt: skip
        response = client.get(f"/ogc/collections/attacks/items?{name}={value}")
        assert response.status_code == 200, (name, response.data)


def test_req_core_fc_md_success_and_items(client, store):
    doc = get_json(client, "/ogc/collections")
    assert [c["id"] for c in doc["collections"]] == list(store.layer_names)
    assert {"self", "alternate"} <= set(rels(doc))
    for entry in doc["collections"]:
        items = rels(entry)["items"]
        assert {link["type"] for link in items} == {params.GEOJSON, params.HTML}
        bounds = store.manifest["layers"][entry["id"]]["bounds"]
        assert entry["extent"]["spatial"]["bbox"] == [bounds]
        assert entry["itemType"] == "feature" and entry["crs"] == [params.CRS84]
    attacks = next(c for c in doc["collections"] if c["id"] == "attacks")
    assert attacks["extent"]["temporal"]["interval"] == [
        store.manifest["layers"]["attacks"]["time_range"]
    ]


def test_req_core_sfc_md_success(client, store):
    listed = get_json(client, "/ogc/collections")["collections"]
    for entry in listed:
        assert get_json(client, f"/ogc/collections/{entry['id']}") == entry


def test_req_core_fc_op_and_response(client, store):
    for name in store.layer_names:
        response = client.get(f"/ogc/collections/{name}/items?limit=10000")
        assert response.status_code == 200 and response.mimetype == params.GEOJSON
        doc = orjson.loads(response.data)
        assert doc["type"] == "FeatureCollection"
        assert [f["id"] for f in doc["features"]] == [f["id"] for f in store.query(name)]


def test_req_core_fc_bbox_definition_and_response(client, store):
    box = (71.0, 34.0, 72.0, 35.0)
    doc = get_json(client, "/ogc/collections/districts/items?bbox=71,34,72,35&limit=100")
    expected = [f["id"] for f in store.query("districts", bbox=box)]
    assert 0 < len(expected) < 31 and [f["id"] for f in doc["features"]] == expected
    for feature in doc["features"]:
        assert shapely.geometry.shape(feature["geometry"]).intersects(shapely.box(*box))
    six = get_json(client, "/ogc/collections/districts/items?bbox=71,34,-100,72,35,9000")
    assert [f["id"] for f in six["features"]] == expected


@pytest.mark.parametrize(
    ("datetime_value", "start", "end"),
    [
        ("2024-01-30T12:00:00Z", "2024-01-30", "2024-01-30"),
        ("2024-01-01T00:00:00Z/2024-03-31T23:59:59Z", "2024-01-01", "2024-03-31"),
        ("2024-01-01/2024-03-31", "2024-01-01", "2024-03-31"),
        ("../2024-01-31T00:00:00Z", None, "2024-01-31"),
        ("/2024-01-31T00:00:00Z", None, "2024-01-31"),
        ("2024-01-01T00:00:00Z/..", "2024-01-01", None),
        ("2024-01-01T00:00:00+05:00/", "2023-12-31", None),
        ("2024-02", "2024-02", "2024-02"),
    ],
)
def test_req_core_fc_time_definition_and_response(client, store, datetime_value, start, end):
    assert params.parse_datetime(datetime_value) == (start, end)
    query = {"datetime": datetime_value}  # encoded: "+05:00" must not become a space
    response = client.get("/ogc/collections/attacks/items", query_string=query)
    doc = orjson.loads(response.data)
    expected = store.query("attacks", start=start, end=end)
    assert [f["id"] for f in doc["features"]] == [f["id"] for f in expected]


def test_req_core_fc_time_response_without_time_matches_all(client):
    doc = get_json(client, "/ogc/collections/districts/items?datetime=2024-01-01/..")
    assert doc["numberMatched"] == 35


def test_req_core_fc_limit_definition_and_response(client):
    assert get_json(client, "/ogc/collections/districts/items")["numberReturned"] == 35
    assert len(get_json(client, "/ogc/collections/districts/items?limit=5")["features"]) == 5
    assert get_json(client, "/ogc/collections/districts/items?limit=10000")["numberReturned"] == 35
    assert client.get("/ogc/collections/districts/items?limit=10001").status_code == 400
    assert params.parse_limit(None) == 100


def test_req_core_fc_links_and_paging(client):
    """self and alternate on every page; next until the last page (/rec/core/fc-next-2), prev
    after the first; following next returns every feature once."""
    url, seen, pages = "/ogc/collections/districts/items?limit=10&former_fata=false", [], 0
    while url:
        doc = get_json(client, url)
        found = rels(doc)
        assert found["self"][0]["type"] == params.GEOJSON
        assert found["alternate"][0]["type"] == params.HTML
        assert found["collection"][0]["href"].endswith("/ogc/collections/districts")
        assert ("prev" in found) == (pages > 0)
        seen += [f["id"] for f in doc["features"]]
        url = relative(found["next"][0]["href"]) if "next" in found else None
        if url:
            assert parse_qs(urlsplit(url).query)["former_fata"] == ["false"]
        pages += 1
    assert len(seen) == len(set(seen)) == doc["numberMatched"] and pages >= 2


def test_req_core_fc_rel_type(client):
    for url in ("/ogc", "/ogc/conformance", "/ogc/collections", "/ogc/collections/attacks",
                "/ogc/collections/attacks/items?limit=1&offset=1",
                "/ogc/collections/attacks/items/kp-2023-07-30-khar"):  # fmt: skip
        for link in get_json(client, url)["links"]:
            assert link["rel"] and link["type"] and link["href"].startswith("http")


def test_req_core_fc_number_matched_and_returned(client, store):
    doc = get_json(client, "/ogc/collections/attacks/items?limit=2&actor=ISKP")
    assert doc["numberMatched"] == len(store.query("attacks", actor="ISKP"))
    assert doc["numberReturned"] == len(doc["features"]) == min(2, doc["numberMatched"])
    beyond = get_json(client, "/ogc/collections/attacks/items?offset=1000")
    assert beyond["numberReturned"] == 0 and beyond["features"] == []


def test_req_core_fc_timestamp(client):
    doc = get_json(client, "/ogc/collections/attacks/items")
    stamp = datetime.fromisoformat(doc["timeStamp"])
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)


def test_req_core_f_op_success_and_links(client, store):
    feature = store.query("attacks")[0]
    response = client.get(f"/ogc/collections/attacks/items/{feature['id']}")
    assert response.status_code == 200 and response.mimetype == params.GEOJSON
    doc = orjson.loads(response.data)
    assert doc["type"] == "Feature" and doc["id"] == feature["id"]
    assert doc["properties"] == feature["properties"]
    found = rels(doc)
    assert {"self", "alternate", "collection"} <= set(found)
    assert all(found[r][0]["type"] for r in ("self", "alternate", "collection"))
    assert "links" not in store.feature("attacks", feature["id"])  # the store's dict untouched


@pytest.fixture(scope="module")
def linked_client(linked_store_dir):
    """A client of a store where acled-T1 and ucdp-t1 are one linked attack, served by an
    operator licensed to hand out ACLED's rows."""
    config = {"STORE": str(linked_store_dir), "TESTING": True, "LICENSED_DATASETS": "acled"}
    return create_app(config).test_client()


@pytest.mark.parametrize("member", ["acled-T1", "ucdp-t1"])
def test_a_linked_attack_holding_a_restricted_row_is_withheld_by_either_id(
    linked_store_dir, member
):
    """Its `linked` list would hand out the ACLED row, so the UCDP id does not open it either."""
    client = create_app({"STORE": str(linked_store_dir), "TESTING": True}).test_client()
    response = client.get(f"/ogc/collections/attacks/items/{member}")
    assert response.status_code == 403 and b"licence-restricted" in response.data


@pytest.mark.parametrize("member", ["acled-T1", "ucdp-t1"])
def test_every_linked_records_id_answers_with_its_attack(linked_client, member):
    doc = get_json(linked_client, f"/ogc/collections/attacks/items/{member}")
    assert doc["id"] == "acled-T1"
    assert [m["id"] for m in doc["properties"]["linked"]] == ["acled-T1", "ucdp-t1"]
    assert rels(doc)["self"][0]["href"].endswith("/items/acled-T1?f=json")  # the attack's own
    items = get_json(linked_client, f"/ogc/collections/attacks/items?id={member}")
    assert [f["id"] for f in items["features"]] == ["acled-T1"]
    popup = get_json(linked_client, f"/api/map/attacks/{member}.json")
    assert popup["id"] == "acled-T1"


def test_req_core_crs84(client):
    doc = get_json(client, "/ogc/collections/attacks/items")
    for feature in doc["features"]:
        lon, lat = feature["geometry"]["coordinates"]
        assert 60 < lon < 80 and 20 < lat < 40  # longitude first, in KP


def test_req_core_fc_filters(client, store):
    """Property filters (/rec/core/fc-filters), with the map's names and aliases."""
    doc = get_json(client, "/ogc/collections/attacks/items?district=Bajour&actor=iskp,ttp")
    expected = store.query("attacks", district="bajaur", actor=["ISKP", "TTP"])
    assert [f["id"] for f in doc["features"]] == [f["id"] for f in expected]
    doc = get_json(client, "/ogc/collections/districts/items?former_fata=true")
    assert {f["properties"]["former_fata"] for f in doc["features"]} == {True}
    assert doc["numberMatched"] == len(store.query("districts", former_fata=True))


@pytest.mark.parametrize(
    "url",
    [
        "/ogc",
        "/ogc/conformance",
        "/ogc/collections",
        "/ogc/collections/attacks",
        "/ogc/collections/attacks/items",
        "/ogc/collections/attacks/items/kp-2023-07-30-khar",
    ],
)
def test_req_html_definition_and_content(client, url):
    """f=html and a browser's Accept header give HTML 5 with every link as an <a>."""
    as_json = get_json(client, url)
    response = client.get(url, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.data.decode()
    assert html.startswith("<!doctype html>")
    hrefs = re.findall(r'<a href="([^"]+)"', html)
    for link in as_json["links"]:
        assert link["href"].replace("&", "&amp;") in hrefs, link
    again = client.get(url + ("&" if "?" in url else "?") + "f=html").data.decode()
    # the same page, but for its timeStamp (the two requests may fall in different seconds)
    moment = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
    assert moment.sub("T", again) == moment.sub("T", html)


def test_req_html_escapes_data(client, store):
    html = client.get("/ogc/collections/attacks/items?f=html").data.decode()
    description = store.query("attacks")[0]["properties"]["description"]
    assert description.replace("'", "&#39;") in html


def test_req_geojson_content(client):
    doc = get_json(client, "/ogc/collections/attacks/items", headers={"Accept": "*/*"})
    assert doc["type"] == "FeatureCollection" and "links" in doc
    doc = get_json(client, "/ogc/collections/attacks/items/kp-2023-07-30-khar")
    assert doc["type"] == "Feature" and "links" in doc


def test_items_are_fast_to_page_in_geojson_bytes(client, store):
    """The items page copies the store's bytes: what it returns equals the stored features."""
    doc = get_json(client, "/ogc/collections/attacks/items?offset=2&limit=3")
    assert doc["features"] == store.query("attacks")[2:5]


def test_gzip_items_page(client):
    response = client.get("/ogc/collections/districts/items", headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert orjson.loads(gzip.decompress(response.data))["numberMatched"] == 35


def test_store_files_are_never_read_by_name(client, store_dir: Path):
    """Layer names come only from the loaded store: a path-like name is a 404 that names the
    layers, with nothing read from disk."""
    (store_dir / "secret.geojson").write_text('{"type":"FeatureCollection","features":[]}')
    try:
        assert client.get("/download/secret.geojson").status_code == 404
        assert client.get("/ogc/collections/manifest/items").status_code == 404
    finally:
        (store_dir / "secret.geojson").unlink()
