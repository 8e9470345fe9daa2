"""app/tiles.py: tiles, TileJSON and /embed/tiles over HTTP, decoded as a client would."""

import io
import re

import mapbox_vector_tile
import numpy as np
import pytest
from PIL import Image

from app import create_app
from geo import tiles
from geo.tiles.grid import world_xy

MVT = "application/vnd.mapbox-vector-tile"


def decode(data: bytes) -> dict:
    return mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})


def png_alpha(data: bytes, size: int = 256) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == (size, size)
    return np.asarray(image)[:, :, 3]


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    u, v = world_xy(lon, lat)
    return z, int(u * 2**z), int(v * 2**z)


@pytest.fixture(scope="module")
def attack(store) -> dict:
    return store.query("attacks")[0]


def url(layer: str, tile: tuple[int, int, int], ext: str = ".mvt", query: str = "") -> str:
    z, x, y = tile
    return f"/tiles/{layer}/{z}/{x}/{y}{ext}{query}"


def test_mvt_decodes_to_the_layer_named_after_the_store_layer(client):
    response = client.get("/tiles/attacks/0/0/0.mvt")
    assert response.status_code == 200 and response.mimetype == MVT
    layer = decode(response.data)["attacks"]
    assert layer["extent"] == 4096 and layer["features"]
    for feature in layer["features"]:
        x, y = feature["geometry"]["coordinates"]
        assert 0 <= x <= 4096 and 0 <= y <= 4096  # KP is far from the edges at zoom 0
        assert feature["properties"]["count"] >= 1


def test_highest_zoom_tile_holds_the_attack_with_its_attributes(client, attack):
    lon, lat = attack["geometry"]["coordinates"]
    response = client.get(url("attacks", tile_of(lon, lat, 14)))
    features = decode(response.data)["attacks"]["features"]
    (found,) = [f for f in features if f["properties"].get("id") == attack["id"]]
    assert found["properties"]["actor"] == attack["properties"]["actor"]
    assert found["properties"]["date"] == attack["properties"]["date"]


@pytest.mark.parametrize("ext, size", [(".png", 256), ("@2x.png", 512)])
def test_png_has_pixels_where_there_is_data(client, attack, ext, size):
    lon, lat = attack["geometry"]["coordinates"]
    z, x, y = tile_of(lon, lat, 9)
    response = client.get(url("attacks", (z, x, y), ext))
    assert response.status_code == 200 and response.mimetype == "image/png"
    alpha = png_alpha(response.data, size)
    u, v = world_xy(lon, lat)
    px, py = int((u * 2**z - x) * size), int((v * 2**z - y) * size)
    assert alpha[py, px] > 0


@pytest.mark.parametrize("layer", list(tiles.TILE_LAYERS))
def test_a_tile_with_no_data_is_an_empty_tile_in_both_formats(client, layer):
    far = (5, 3, 10)  # the Pacific
    mvt = client.get(url(layer, far))
    assert mvt.status_code == 200 and mvt.data == b"" and mvt.mimetype == MVT
    png = client.get(url(layer, far, ".png"))
    assert png.status_code == 200 and png_alpha(png.data).max() == 0
    assert mvt.headers["ETag"] and png.headers["Cache-Control"]


@pytest.mark.parametrize("layer", list(tiles.TILE_LAYERS))
def test_every_layer_serves_zoom_0(client, layer):
    response = client.get(f"/tiles/{layer}/0/0/0.mvt")
    expected = {n for n in tiles.TILE_LAYERS[layer] if tiles.layer_minzoom(layer, n) == 0}
    assert set(decode(response.data)) == expected  # the basemap's towns and tehsils come later
    assert png_alpha(client.get(f"/tiles/{layer}/0/0/0.png").data).max() > 0


@pytest.mark.parametrize("ext, size", [(".mvt", None), (".png", 256), ("@2x.png", 512)])
def test_tehsils_layer_answers_in_every_format(client, ext, size):
    response = client.get(url("tehsils", tile_of(71.5, 34.0, 10), ext))  # inside KP
    assert response.status_code == 200
    if size is None:
        assert response.mimetype == MVT
        features = decode(response.data)["tehsils"]["features"]
        assert {f["properties"]["district"] for f in features} >= {"peshawar"}
    else:
        assert png_alpha(response.data, size).min() > 0  # every pixel lies in some tehsil


def test_tehsils_tilejson(client):
    document = client.get("/tiles/tehsils.json").get_json()
    assert document["tiles"] == ["http://localhost/tiles/tehsils/{z}/{x}/{y}.mvt"]
    (layer,) = document["vector_layers"]
    assert layer["id"] == "tehsils" and "attacks" in layer["fields"]
    assert "COD-AB" in document["attribution"]


def test_basemap_names_peshawar_and_credits_geonames(client):
    peshawar = (71.57849, 34.008)  # GeoNames 1168197
    features = decode(client.get(url("basemap", tile_of(*peshawar, 9))).data)["places"]["features"]
    assert "Peshawar" in {f["properties"]["name"] for f in features}
    assert "GeoNames" in client.get("/tiles/basemap.json?format=png").get_json()["attribution"]


@pytest.mark.parametrize(
    "path, status",
    [
        ("/tiles/attacks/-1/0/0.mvt", 400),
        ("/tiles/attacks/15/0/0.mvt", 400),
        ("/tiles/attacks/99999999999999999999/0/0.png", 400),
        ("/tiles/attacks/1/2/0.mvt", 400),
        ("/tiles/attacks/1/0/2.png", 400),
        ("/tiles/attacks/0/1/0@2x.png", 400),
        ("/tiles/attacks/a/0/0.mvt", 400),
        ("/tiles/attacks/1.5/0/0.mvt", 400),
        ("/tiles/attacks/1/0.5/0.mvt", 400),
        ("/tiles/attacks/1/0/0.5.png", 400),
        ("/tiles/attacks/1/0/-1.png", 400),
        ("/tiles/attacks/1/0/%20.png", 400),
        ("/tiles/attacks/1/0/.png", 400),
        ("/tiles/attacks/1/0/0.jpg", 404),
        ("/tiles/attacks/1/0/0", 404),
        ("/tiles/attacks/1/0/0@3x.png", 404),
        ("/tiles/nope/0/0/0.mvt", 404),
        ("/tiles/countries/0/0/0.mvt", 404),
        ("/tiles/%3Cscript%3E/0/0/0.png", 404),
        ("/tiles/nope.json", 404),
        ("/tiles/attacks.json?format=jpg", 400),
        ("/tiles/attacks/0/0/0.mvt?actor=nobody", 400),
        ("/tiles/attacks/0/0/0.png?from=yesterday", 400),
        ("/tiles/attacks/0/0/0.png?max_border_km=-5", 400),
        ("/tiles/attacks/0/0/0.png?bbox=70,33,72,35", 400),
        ("/tiles/attacks/0/0/0.mvt?actor=%3Cscript%3E", 400),
    ],
)
def test_bad_requests_answer_json_never_500(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert response.is_json and response.get_json()["status"] == status
    assert response.get_json()["description"]
    assert "<script>" not in response.get_data(as_text=True)
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_headers_and_304(client):
    first = client.get("/tiles/districts/3/5/3.png")
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]+"', etag)
    assert first.headers["Cache-Control"] == "public, max-age=3600"
    assert first.headers["Access-Control-Allow-Origin"] == "*"
    for sent in (etag, f"W/{etag}", '"other", ' + etag, "*"):
        again = client.get("/tiles/districts/3/5/3.png", headers={"If-None-Match": sent})
        assert again.status_code == 304 and again.data == b""
        assert again.headers["ETag"] == etag
        assert again.headers["Cache-Control"] == first.headers["Cache-Control"]
        assert again.headers["Access-Control-Allow-Origin"] == "*"
    stale = client.get("/tiles/districts/3/5/3.png", headers={"If-None-Match": '"old"'})
    assert stale.status_code == 200 and stale.data == first.data


def test_head_answers_like_get(client):
    response = client.head("/tiles/basemap/0/0/0.png")
    assert response.status_code == 200 and response.headers["ETag"]


def test_filters_change_attack_tiles_and_are_normalised(client):
    everything = client.get("/tiles/attacks/0/0/0.mvt").data
    iskp = client.get("/tiles/attacks/0/0/0.mvt?actor=ISKP&from=2024-04").data
    counts = [
        sum(f["properties"]["count"] for f in decode(data)["attacks"]["features"])
        for data in (everything, iskp)
    ]
    assert 0 < counts[1] < counts[0]
    one = client.get("/tiles/attacks/0/0/0.mvt?actor=ISKP,TTP")
    other = client.get("/tiles/attacks/0/0/0.mvt?actor=ttp&actor=iskp")
    assert one.headers["ETag"] == other.headers["ETag"]
    none = client.get("/tiles/attacks/0/0/0.mvt?from=1990&to=1990-12")
    assert none.status_code == 200 and none.data == b""
    # the default store holds only militant attacks: the category filter keeps all or none
    attacks = client.get("/tiles/attacks/0/0/0.mvt?category=Militant%20Attack").data
    assert attacks == everything
    assert client.get("/tiles/attacks/0/0/0.mvt?category=armed clash").data == b""


def test_other_layers_ignore_the_attack_filters(client):
    plain = client.get("/tiles/districts/0/0/0.mvt")
    filtered = client.get("/tiles/districts/0/0/0.mvt?actor=ISKP&from=2024")
    assert filtered.status_code == 200 and filtered.data == plain.data


def test_tilejson(client):
    response = client.get("/tiles/attacks.json?actor=ISKP&from=2020")
    assert response.status_code == 200 and response.is_json
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    document = response.get_json()
    assert document["tilejson"] == "3.0.0"
    (template,) = document["tiles"]
    assert template.startswith("http://localhost/tiles/attacks/{z}/{x}/{y}.mvt?")
    assert "actor=ISKP" in template and "from=2020" in template
    assert document["vector_layers"][0]["id"] == "attacks"
    assert "killed" in document["vector_layers"][0]["fields"]
    assert len(document["bounds"]) == 4 and len(document["center"]) == 3
    png = client.get("/tiles/basemap.json?format=png").get_json()
    assert png["tiles"] == ["http://localhost/tiles/basemap/{z}/{x}/{y}.png"]
    assert "vector_layers" not in png
    retina = client.get("/tiles/basemap.json?format=@2x.png").get_json()
    assert retina["tiles"][0].endswith("{y}@2x.png")
    etag = response.headers["ETag"]
    again = client.get("/tiles/attacks.json?actor=ISKP&from=2020", headers={"If-None-Match": etag})
    assert again.status_code == 304


def test_tilejson_template_serves_tiles(client):
    template = client.get("/tiles/durand_line.json").get_json()["tiles"][0]
    path = template.removeprefix("http://localhost").format(z=0, x=0, y=0)
    assert decode(client.get(path).data)["durand_line"]["features"]


def test_embed_page_uses_only_local_assets_and_the_service_tiles(client):
    response = client.get("/embed/tiles?actor=ISKP")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "/static/vendor/leaflet/dist/leaflet.js" in html
    assert "/static/vendor/leaflet/dist/leaflet.css" in html
    assert "/tiles/basemap/{z}/{x}/{y}.png" in html
    assert "/tiles/tehsils/{z}/{x}/{y}.png" in html
    assert "GeoNames" in html  # the basemap names towns
    assert "/tiles/attacks/{z}/{x}/{y}.png?actor=ISKP" in html
    # zero requests to other hosts: no absolute or protocol-relative URL in src or href
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html)
    assert "frame-ancestors *" in response.headers["Content-Security-Policy"]
    assert client.get("/embed/tiles?actor=nobody").status_code == 400


def test_disk_cache_from_app_config(store_dir, tmp_path, attack):
    app = create_app({"STORE": str(store_dir), "TESTING": True, "TILE_CACHE_DIR": str(tmp_path)})
    client = app.test_client()
    lon, lat = attack["geometry"]["coordinates"]
    z, x, y = tile_of(lon, lat, 8)
    served = client.get(url("attacks", (z, x, y), "@2x.png"))
    current = tmp_path / "current"  # the folder of the store's version (geo.tiles.cache)
    on_disk = current / f"attacks/{z}/{x}/{y}@2x.png"
    assert on_disk.read_bytes() == served.data
    client.get(url("attacks", (z, x, y), query="?actor=ISKP"))
    assert not (current / f"attacks/{z}/{x}/{y}.mvt").exists()  # filtered: memory only
    client.get(url("attacks", (5, 3, 10)))
    assert not (current / "attacks/5/3/10.mvt").exists()  # empty: not written
    # another process (a second app) serves the file from disk with the same ETag
    other = create_app({"STORE": str(store_dir), "TESTING": True, "TILE_CACHE_DIR": str(tmp_path)})
    again = other.test_client().get(url("attacks", (z, x, y), "@2x.png"))
    assert again.data == served.data and again.headers["ETag"] == served.headers["ETag"]
