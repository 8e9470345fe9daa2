"""geo/tiles/tiler.py, geo/tiles/mvt.py, geo/tiles/canvas.py, geo/tiles/cache.py,
geo/tiles/pmtiles.py and
geo/tiles/cli.py, without the app.

Tiles are decoded, never compared with stored bytes: MVT with mapbox_vector_tile.decode, PNG with
Pillow. A module-scoped store with 5,000 synthetic attacks exercises the clusters.
"""

import gzip
import io
import json
import os

import mapbox_vector_tile
import numpy as np
import pytest
from PIL import Image
from pmtiles.reader import MmapSource, Reader, all_tiles
from pmtiles.tile import Compression, TileType

from geo import tiles
from geo.build.pipeline import build_store
from geo.build.synth import synthetic_attacks
from geo.crs import MAX_LAT
from geo.errors import InvalidQuery, InvalidTile, LayerNotFound
from geo.store import Store
from geo.tiles import canvas, mvt
from geo.tiles.cache import STAMP, TileCache, TileKey, etag_of, store_version
from geo.tiles.grid import MAX_ZOOM, Tile, tile_bounds, world_xy
from geo.tiles.layers import BASEMAP_TEHSIL_MINZOOM, MVT_BUFFER, TILES_VERSION
from geo.tiles.pmtiles import export_pmtiles
from geo.tiles.points import GRID_BITS, attack_deaths
from geo.tiles.tiler import Tiler
from tests.helpers import offline_mirror, run_cli

SYNTHETIC = 5000


@pytest.fixture(scope="module")
def tiler(store):
    return Tiler(store)


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory, store):
    folder = tmp_path_factory.mktemp("synth") / "store"
    records = synthetic_attacks(SYNTHETIC, store.query("districts"), seed=1)
    build_store(
        folder, cache=tmp_path_factory.mktemp("cache"), mirror=offline_mirror(), added=records
    )
    return Store.open(folder)


@pytest.fixture(scope="module")
def synth_tiler(synth_store):
    return Tiler(synth_store)


def decode(data: bytes) -> dict:
    return mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})


def tile_of(lon: float, lat: float, z: int) -> Tile:
    u, v = world_xy(lon, lat)
    return Tile(z, int(u * 2**z), int(v * 2**z))


def an_attack(store) -> dict:
    return store.query("attacks")[0]


def opaque_pixels(png: bytes, size: int = 256) -> int:
    image = Image.open(io.BytesIO(png))
    assert image.size == (size, size) and image.mode == "RGBA"
    return int((np.asarray(image)[:, :, 3] > 0).sum())


FAR = Tile(6, 20, 25)  # the Atlantic, off West Africa: nothing of any layer


# -- tile math ----------------------------------------------------------------------------------


def test_tile_bounds_at_zoom_0_is_the_web_mercator_world():
    west, south, east, north = tile_bounds(0, 0, 0)
    assert (west, east) == (-180, 180)
    assert north == pytest.approx(MAX_LAT) and south == pytest.approx(-MAX_LAT)


def test_tile_bounds_agree_with_world_xy():
    west, south, east, north = tile_bounds(7, 89, 50)
    u, v = world_xy([west, east], [north, south])
    assert u * 128 == pytest.approx([89, 90]) and v * 128 == pytest.approx([50, 51])


def test_a_point_lies_in_the_tile_computed_for_it():
    lon, lat = 71.527, 34.736  # Khar, Bajaur
    for z in range(MAX_ZOOM + 1):
        west, south, east, north = tile_bounds(*tile_of(lon, lat, z))
        assert west <= lon <= east and south <= lat <= north


@pytest.mark.parametrize(
    "z, x, y",
    [
        ("-1", "0", "0"),
        ("15", "0", "0"),
        ("99999999999", "0", "0"),
        ("1", "2", "0"),
        ("1", "0", "2"),
        ("0", "1", "0"),
        ("a", "0", "0"),
        ("1.5", "0", "0"),
        ("1", "0.0", "0"),
        ("1", "0", "1e0"),
        ("", "0", "0"),
        (" 1", "0", "0"),
        ("1", "-0", "0"),
    ],
)
def test_bad_tile_addresses_are_invalid_tile_400(z, x, y):
    with pytest.raises(InvalidTile) as caught:
        tiles.parse_tile(z, x, y)
    assert caught.value.status == 400 and isinstance(caught.value, InvalidQuery)


def test_good_tile_addresses():
    assert tiles.parse_tile("0", "0", "0") == (0, 0, 0)
    assert tiles.parse_tile("14", "16383", "16383") == (14, 16383, 16383)
    assert tiles.parse_tile(3, 7, 0) == (3, 7, 0)


@pytest.mark.parametrize("tile", [(0, 0, 0), (1, 1, 0), (7, 89, 50), (14, 11700, 6600)])
def test_a_tiles_own_bounds_hold_that_tile_alone(tile):
    """Grid conformance: the edges a tile shares with its neighbours are not overlap."""
    assert list(tiles.tiles_in_bounds(tile_bounds(*tile), tile[0])) == [tile]
    west, south, east, north = tile_bounds(*tile)
    inside = (west + east) / 2, (south + north) / 2
    assert tile_of(*inside, tile[0]) == tile


def test_tiles_in_bounds_covers_kp_with_few_tiles(store):
    bounds = tiles.layer_bounds(store, "districts")
    assert list(tiles.tiles_in_bounds(bounds, 0)) == [(0, 0, 0)]
    at_10 = list(tiles.tiles_in_bounds(bounds, 10))
    assert 100 < len(at_10) < 1000
    assert tile_of(71.527, 34.736, 10) in at_10


@pytest.mark.parametrize("text, expected", [("0-10", range(0, 11)), ("7", range(7, 8))])
def test_parse_zooms(text, expected):
    assert tiles.parse_zooms(text) == expected


@pytest.mark.parametrize("text", ["10-0", "0-15", "x", "-1", ""])
def test_parse_zooms_refuses(text):
    with pytest.raises(InvalidTile):
        tiles.parse_zooms(text)


def test_unknown_tile_layer_is_layer_not_found(tiler):
    with pytest.raises(LayerNotFound, match="basemap"):
        tiler.tile("nope", Tile(0, 0, 0), "mvt")


# -- the attack index ---------------------------------------------------------------------------


def test_a_tile_run_of_morton_codes_is_exactly_the_points_in_it(synth_tiler):
    points = synth_tiler.attack_index().all.points
    for z, x, y in [(0, 0, 0), (5, 22, 12), (8, 179, 103), (10, 715, 406), (12, 2861, 1626)]:
        n = 2**z
        brute = np.flatnonzero((np.floor(points.u * n) == x) & (np.floor(points.v * n) == y))
        assert np.array_equal(np.sort(points.in_tile(z, x, y, 0)), brute)


def test_clusters_count_every_attack_and_sum_its_deaths(synth_store, synth_tiler):
    killed = sum(f["properties"]["killed_best"] or 0 for f in synth_store.query("attacks"))
    total = len(synth_store.query("attacks"))
    for z in (0, 4, 8, 11):
        clusters = synth_tiler.attack_index().all.clusters(z)
        assert clusters.count.sum() == total
        assert clusters.killed.sum() == killed


def test_low_zoom_tiles_hold_clusters_of_at_most_a_grid(synth_store, synth_tiler):
    total = len(synth_store.query("attacks"))
    seen = 0
    for tile in tiles.tiles_in_bounds(tiles.layer_bounds(synth_store, "attacks"), 7):
        layer = decode(synth_tiler.tile("attacks", tile, "mvt")).get("attacks")
        if not layer:
            continue
        features = layer["features"]
        assert len(features) <= 4**GRID_BITS * 9  # its grid plus the buffer's cells
        inside = [
            f for f in features if all(0 <= c < mvt.EXTENT for c in f["geometry"]["coordinates"])
        ]
        assert all(f["properties"]["cluster"] is True for f in features)
        seen += sum(f["properties"]["count"] for f in inside)
    assert seen == total  # every attack once, in the tile its cluster's centre lies in


def test_high_zoom_tiles_hold_each_attack_with_its_attributes(store, tiler):
    attack = an_attack(store)
    lon, lat = attack["geometry"]["coordinates"]
    tile = tile_of(lon, lat, MAX_ZOOM)
    layer = decode(tiler.tile("attacks", tile, "mvt"))["attacks"]
    assert layer["extent"] == mvt.EXTENT
    (feature,) = [f for f in layer["features"] if f["properties"].get("id") == attack["id"]]
    props = feature["properties"]
    assert props["cluster"] is False and props["count"] == 1
    for key in ("date", "actor", "event_type", "district", "target", "geo_precision"):
        assert props[key] == attack["properties"][key]
    assert "sources" not in props  # lists cannot go in an MVT; the API has the full record
    u, v = world_xy(lon, lat)
    x, y = feature["geometry"]["coordinates"]
    assert x == pytest.approx((u * 2**tile.z - tile.x) * mvt.EXTENT, abs=1)
    assert y == pytest.approx((v * 2**tile.z - tile.y) * mvt.EXTENT, abs=1)


def test_a_crowded_high_zoom_tile_is_clustered(synth_store, synth_tiler, monkeypatch):
    tile = tile_of(71.6, 34.0, 12)
    points, idx = synth_tiler._attack_points(tile, 0, None)
    assert len(idx) and (points.position[idx] >= 0).all()  # points, as this zoom has
    monkeypatch.setattr("geo.tiles.tiler.MAX_POINTS", len(idx) - 1)
    points, idx = synth_tiler._attack_points(tile, 0, None)
    assert len(idx) and (points.position[idx] == -1).all()


def test_filters_select_the_same_attacks_as_the_store(synth_store, synth_tiler):
    filters = {"actor": ["ISKP"], "start": "2018", "end": "2020-06"}
    expected = len(synth_store.select("attacks", **filters))
    selection = synth_tiler.attack_index().selection(filters)
    assert 0 < len(selection.points) == expected
    assert selection.clusters(0).count.sum() == expected
    # normalised: the same filters in another order are the same selection
    again = {"end": "2020-06", "start": "2018", "actor": ["ISKP"]}
    assert synth_tiler.attack_index().selection(again) is selection


def test_filter_key_is_canonical():
    assert tiles.filter_key(None) == tiles.filter_key({}) == ""
    assert tiles.filter_key({"actor": ["TTP", "ISKP"], "start": "2024"}) == tiles.filter_key(
        {"start": "2024", "actor": ["ISKP", "TTP"]}
    )


# -- polygon and line layers --------------------------------------------------------------------


def test_zoom_0_districts_tile_holds_every_district_with_its_figures(store, tiler):
    layer = decode(tiler.tile("districts", Tile(0, 0, 0), "mvt"))["districts"]
    by_id = {f["properties"]["id"]: f for f in layer["features"]}
    districts = store.query("districts")
    assert set(by_id) == {d["id"] for d in districts}
    for district in districts:
        props = by_id[district["id"]]["properties"]
        assert props["name"] == district["properties"]["name"]
        assert props["attacks"] == district["properties"]["attacks"]
        assert by_id[district["id"]]["geometry"]["type"] in ("Polygon", "MultiPolygon")


def test_polygon_coordinates_stay_within_the_extent_and_buffer(tiler):
    tile = tile_of(71.5, 34.0, 9)
    buffer = MVT_BUFFER * mvt.EXTENT
    layer = decode(tiler.tile("districts", tile, "mvt"))["districts"]
    assert layer["features"]
    for feature in layer["features"]:
        coords = np.array([c for ring in _rings(feature["geometry"]) for c in ring])
        assert coords.min() >= -buffer - 1 and coords.max() <= mvt.EXTENT + buffer + 1


def _rings(geometry):
    if geometry["type"] == "Polygon":
        return geometry["coordinates"]
    return [ring for polygon in geometry["coordinates"] for ring in polygon]


def test_basemap_tile_holds_countries_districts_labels_and_towns(tiler):
    layers = decode(tiler.tile("basemap", tile_of(71.5, 34.0, 8), "mvt"))
    assert set(layers) == {"countries", "districts", "district_labels", "places"}  # no tehsils
    assert {f["properties"]["name"] for f in layers["countries"]["features"]} >= {"Pakistan"}
    assert all(f["geometry"]["type"] == "Point" for f in layers["district_labels"]["features"])
    assert all(f["geometry"]["type"] == "Point" for f in layers["places"]["features"])


def test_basemap_outlines_tehsils_from_zoom_9(tiler):
    tile = tile_of(71.5, 34.0, BASEMAP_TEHSIL_MINZOOM)
    layers = decode(tiler.tile("basemap", tile, "mvt"))
    assert layers["tehsils"]["features"]
    assert {"id", "name", "district", "attacks"} <= set(
        layers["tehsils"]["features"][0]["properties"]
    )
    above = tile_of(71.5, 34.0, BASEMAP_TEHSIL_MINZOOM - 1)
    assert "tehsils" not in decode(tiler.tile("basemap", above, "mvt"))


def places_in(tiler, lon: float, lat: float, z: int) -> dict[str, dict]:
    """The basemap's `places` features in the tile at zoom z that holds (lon, lat), by name."""
    layers = decode(tiler.tile("basemap", tile_of(lon, lat, z), "mvt"))
    return {f["properties"]["name"]: f for f in layers.get("places", {}).get("features", [])}


PESHAWAR = (71.57849, 34.008)  # GeoNames 1168197, as tests/fixtures/towns.csv cites it
BANNU = (70.60403, 32.98527)
WANA = (69.5725, 32.29889)


def test_the_basemap_names_peshawar_where_it_is(tiler):
    tile = tile_of(*PESHAWAR, 10)
    feature = places_in(tiler, *PESHAWAR, 10)["Peshawar"]
    props = feature["properties"]
    assert props["geonameid"] == 1168197 and props["district_headquarters"] is True
    assert props["min_zoom"] == 7 and props["population"] > 1_000_000
    u, v = world_xy(*PESHAWAR)
    x, y = feature["geometry"]["coordinates"]
    assert x == pytest.approx((u * 2**tile.z - tile.x) * mvt.EXTENT, abs=1)
    assert y == pytest.approx((v * 2**tile.z - tile.y) * mvt.EXTENT, abs=1)


@pytest.mark.parametrize("name, lonlat", [("Bannu", BANNU), ("Wana", WANA)])
def test_district_headquarters_are_named_from_zoom_7(tiler, name, lonlat):
    assert name not in places_in(tiler, *lonlat, 6)
    assert places_in(tiler, *lonlat, 7)[name]["properties"]["district_headquarters"] is True


def test_low_zoom_tiles_hold_no_small_villages(tiler, store):
    seen = []
    for tile in tiles.tiles_in_bounds(tiles.layer_bounds(store, "districts"), 7):
        layer = decode(tiler.tile("basemap", tile, "mvt")).get("places")
        seen += [f["properties"] for f in (layer or {}).get("features", [])]
    assert {"Peshawar", "Bannu", "Wana", "Landi Kotal"} <= {p["name"] for p in seen}
    # Landi Kotal (2,223 people) is there as Khyber's headquarters; no other small place is
    assert all(p["district_headquarters"] or p["population"] >= 500_000 for p in seen)
    datta_khel = (69.74477, 32.90849)  # 1,037 people, not a headquarters
    assert "Datta Khel" not in places_in(tiler, *datta_khel, 10)
    assert "Datta Khel" in places_in(tiler, *datta_khel, 11)


def test_tehsils_tiles_hold_every_tehsil_with_its_totals(store, tiler):
    # At zoom 6 (a tile is ~600 km) even Peshawar's town tehsils span MVT units; at zoom 0 the
    # smallest collapse to nothing, as they would in any tile of that scale.
    by_id = {}
    for tile in tiles.tiles_in_bounds(tiles.layer_bounds(store, "tehsils"), 6):
        features = decode(tiler.tile("tehsils", tile, "mvt")).get("tehsils", {}).get("features", [])
        by_id.update({f["properties"]["id"]: f["properties"] for f in features})
    tehsils = store.query("tehsils")
    assert len(by_id) == len(tehsils) == 153
    for tehsil in tehsils:
        props = by_id[tehsil["id"]]
        for key in ("name", "district", "pcode", "attacks", "killed_best"):
            assert props[key] == tehsil["properties"][key]
    assert sum(p["attacks"] for p in by_id.values()) > 0


def test_durand_line_tile(tiler):
    layer = decode(tiler.tile("durand_line", Tile(0, 0, 0), "mvt"))["durand_line"]
    assert {f["properties"]["province"] for f in layer["features"]} >= {"Khyber Pakhtunkhwa"}
    assert all("LineString" in f["geometry"]["type"] for f in layer["features"])


@pytest.mark.parametrize("layer", list(tiles.TILE_LAYERS))
def test_tiles_far_from_kp_are_empty_in_both_formats(tiler, layer):
    assert tiler.tile(layer, FAR, "mvt") == b""
    assert tiler.tile(layer, FAR, "png") == canvas.empty_png(1)
    assert opaque_pixels(tiler.tile(layer, FAR, "png")) == 0
    assert opaque_pixels(tiler.tile(layer, FAR, "@2x.png"), 512) == 0


def test_encode_vector_tile_of_nothing_is_empty():
    assert mvt.encode_vector_tile([("attacks", []), ("districts", [])]) == b""


# -- PNG ----------------------------------------------------------------------------------------


def test_png_has_pixels_where_an_attack_is_and_none_far_from_it(store, tiler):
    lon, lat = an_attack(store)["geometry"]["coordinates"]
    tile = tile_of(lon, lat, 10)
    image = np.asarray(Image.open(io.BytesIO(tiler.tile("attacks", tile, "png"))))
    u, v = world_xy(lon, lat)
    px, py = int((u * 1024 - tile.x) * 256), int((v * 1024 - tile.y) * 256)
    assert image[py, px, 3] > 0
    # a tile's corner far from every attack stays transparent
    alpha = image[:, :, 3]
    far_corner = alpha[:40, :40] if px > 128 and py > 128 else alpha[-40:, -40:]
    others = [
        a for a in store.query("attacks") if tile_of(*a["geometry"]["coordinates"], 10) == tile
    ]
    if len(others) == 1:
        assert far_corner.max() == 0


@pytest.mark.parametrize("fmt, size", [("png", 256), ("@2x.png", 512)])
@pytest.mark.parametrize("layer", list(tiles.TILE_LAYERS))
def test_every_layer_draws_at_zoom_0(tiler, layer, fmt, size):
    assert opaque_pixels(tiler.tile(layer, Tile(0, 0, 0), fmt), size) > 0


def test_a_town_label_is_drawn_on_the_basemap_png(tiler, monkeypatch):
    tile = tile_of(*PESHAWAR, 9)
    labelled = np.asarray(Image.open(io.BytesIO(tiler.tile("basemap", tile, "png"))))
    monkeypatch.setattr(tiler, "label_layout", lambda z: [])
    plain = np.asarray(Image.open(io.BytesIO(tiler.tile("basemap", tile, "png"))))
    u, v = world_xy(*PESHAWAR)
    px, py = int((u * 2**9 - tile.x) * 256), int((v * 2**9 - tile.y) * 256)
    assert tuple(labelled[py, px]) == canvas.TOWN  # the town's dot
    assert tuple(plain[py, px]) != canvas.TOWN
    # and its name, to the right of the dot
    right = (slice(py - 6, py + 7), slice(px + 5, px + 60))
    assert (labelled[right] != plain[right]).any(axis=-1).sum() > 50


def test_tehsils_png_is_a_lighter_choropleth_than_districts(tiler):
    tile = tile_of(71.5, 34.0, 10)  # within Peshawar and Khyber districts
    for layer in ("districts", "tehsils"):
        image = np.asarray(Image.open(io.BytesIO(tiler.tile(layer, tile, "png"))))
        assert image[:, :, 3].min() > 0  # every pixel of this tile lies in some area
    district = np.asarray(Image.open(io.BytesIO(tiler.tile("districts", tile, "png"))))
    tehsil = np.asarray(Image.open(io.BytesIO(tiler.tile("tehsils", tile, "png"))))
    assert np.median(tehsil[:, :, 3]) < np.median(district[:, :, 3])


def test_basemap_png_is_land_over_kp_and_transparent_over_the_sea(tiler):
    image = np.asarray(Image.open(io.BytesIO(tiler.tile("basemap", Tile(4, 11, 6), "png"))))
    u, v = world_xy(71.5, 34.0)  # Peshawar, KP
    px, py = int((u * 16 - 11) * 256), int((v * 16 - 6) * 256)
    assert image[py, px, 3] == 255
    u, v = world_xy(65.0, 22.0)  # the Arabian Sea
    px, py = int((u * 16 - 11) * 256), int((v * 16 - 6) * 256)
    assert image[py, px, 3] == 0


# -- TileJSON -----------------------------------------------------------------------------------


def test_tilejson_describes_the_vector_layers(store):
    document = tiles.tilejson(store, "basemap", "http://h/tiles/basemap/{z}/{x}/{y}.mvt")
    assert document["tilejson"] == "3.0.0"
    assert document["tiles"] == ["http://h/tiles/basemap/{z}/{x}/{y}.mvt"]
    assert (document["minzoom"], document["maxzoom"]) == (0, 14)
    assert [layer["id"] for layer in document["vector_layers"]] == list(
        tiles.TILE_LAYERS["basemap"]
    )
    west, south, east, north = document["bounds"]
    lon, lat, zoom = document["center"]
    assert west < lon < east and south < lat < north and zoom == 7
    assert "OpenStreetMap" in document["attribution"]
    assert "GeoNames" in document["attribution"]  # the town names
    assert "COD-AB" in document["attribution"]  # districts and tehsils
    minzooms = {layer["id"]: layer["minzoom"] for layer in document["vector_layers"]}
    assert minzooms["tehsils"] == 9 and minzooms["places"] == 7 and minzooms["districts"] == 0
    assert "population" in document["vector_layers"][-1]["fields"]
    raster = tiles.tilejson(store, "attacks", "http://h/{z}/{x}/{y}.png", "png")
    assert "vector_layers" not in raster


def test_geonames_is_credited_only_where_its_towns_are(store):
    districts = tiles.tilejson(store, "districts", "http://h/{z}/{x}/{y}.mvt")["attribution"]
    assert "GeoNames" not in districts and "COD-AB" in districts
    tehsils = tiles.tilejson(store, "tehsils", "http://h/{z}/{x}/{y}.mvt")
    assert "COD-AB" in tehsils["attribution"] and "GeoNames" not in tehsils["attribution"]
    assert tehsils["vector_layers"][0]["fields"]["district"].startswith("String")
    everything = tiles.attribution(store, tiles.EXPORT_LAYERS)
    assert everything.count("GeoNames (") == 1  # the towns and the attacks credit it once


# -- caches -------------------------------------------------------------------------------------


V1, V2, V3 = "1" * 16, "2" * 16, "3" * 16


def test_tile_keys_map_to_the_url_layout():
    assert TileKey("attacks", 3, 5, 2, "mvt").path() == "attacks/3/5/2.mvt"
    assert TileKey("basemap", 3, 5, 2, "@2x.png").path() == "basemap/3/5/2@2x.png"


def test_memory_cache_evicts_the_least_recently_used():
    cache = TileCache(max_bytes=3 * (1000 + 200))
    keys = [TileKey("attacks", 1, 0, y, "png") for y in range(4)]
    for key in keys[:3]:
        cache.put(key, bytes(1000))
    assert cache.get(keys[0]) is not None  # now the most recent
    cache.put(keys[3], bytes(1000))
    assert cache.get(keys[1]) is None
    assert cache.get(keys[0]).etag == etag_of(bytes(1000))


def test_disk_cache_holds_unfiltered_tiles_at_their_paths(tmp_path):
    cache = TileCache(tmp_path, version=V1, layers=tiles.TILE_LAYERS)
    cache.put(TileKey("attacks", 2, 1, 1, "mvt"), b"tile")
    cache.put(TileKey("attacks", 2, 1, 1, "mvt", "actor=ISKP"), b"filtered")
    cache.put(TileKey("attacks", 2, 1, 2, "png"), b"empty", on_disk=False)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [f"{V1}/attacks/2/1/1.mvt", f"{V1}/{STAMP}"]
    # nginx serves the newest version's folder through `current`
    assert (tmp_path / "current/attacks/2/1/1.mvt").read_bytes() == b"tile"
    fresh = TileCache(tmp_path, version=V1, layers=tiles.TILE_LAYERS)
    assert fresh.get(TileKey("attacks", 2, 1, 1, "mvt")).data == b"tile"
    assert fresh.get(TileKey("attacks", 2, 1, 1, "mvt", "actor=ISKP")) is None


def test_disk_cache_of_another_store_build_is_not_served_and_then_emptied(tmp_path):
    (tmp_path / "notes.txt").write_text("not ours")
    (tmp_path / "attacks/0/0").mkdir(parents=True)  # the flat layout of before versions
    (tmp_path / "attacks/0/0/0.mvt").write_bytes(b"older")
    TileCache(tmp_path, version=V1, layers=["attacks"]).put(
        TileKey("attacks", 0, 0, 0, "mvt"), b"old"
    )
    assert not (tmp_path / "attacks").exists()
    cache = TileCache(tmp_path, version=V2, layers=["attacks"])
    assert cache.get(TileKey("attacks", 0, 0, 0, "mvt")) is None
    assert (tmp_path / "notes.txt").exists()  # only the cache's own folders are removed
    assert json.loads((tmp_path / V2 / STAMP).read_text()) == {"version": V2}
    assert os.readlink(tmp_path / "current") == V2
    # the previous version's folder stays (a server may still be on it) until the next one
    assert (tmp_path / V1).is_dir()
    TileCache(tmp_path, version=V3, layers=["attacks"])
    assert not (tmp_path / V1).exists() and (tmp_path / V2).is_dir()


def test_two_versions_sharing_a_folder_never_see_each_others_tiles(tmp_path):
    """Two servers on different store versions, one KPMAP_TILE_CACHE_DIR: each its own tiles,
    in whatever order they open the cache, write and read."""
    key = TileKey("basemap", 5, 20, 12, "png")
    first = TileCache(tmp_path, version=V1, layers=tiles.TILE_LAYERS)
    second = TileCache(tmp_path, version=V2, layers=tiles.TILE_LAYERS)
    assert first.get(key) is None and second.get(key) is None
    first.put(key, b"tile of v1")
    assert second.get(key) is None
    second.put(key, b"tile of v2")
    # new processes (empty memory caches) read each its own version from disk
    for version, data in ((V1, b"tile of v1"), (V2, b"tile of v2")):
        again = TileCache(tmp_path, version=version, layers=tiles.TILE_LAYERS)
        assert again.get(key).data == data
    assert first.get(key).data == b"tile of v1" and second.get(key).data == b"tile of v2"
    filtered = TileKey("attacks", 5, 20, 12, "png", "actor=ISKP")
    first.put(filtered, b"filtered v1")
    assert second.get(filtered) is None


def test_store_version_follows_the_layers_and_the_tile_code(store):
    assert store_version(store.manifest, "1") == store_version(store.manifest, "1")
    assert store_version(store.manifest, "1") != store_version(store.manifest, "2")


def test_cache_version_follows_the_towns(store, tiler, monkeypatch):
    version = tiler.cache_version()
    assert version.startswith(TILES_VERSION + "-") and Tiler(store).cache_version() == version
    other = Tiler(store)
    towns, u, v, zooms = other.towns()
    monkeypatch.setattr(other, "towns", lambda: (towns[1:], u[1:], v[1:], zooms[1:]))
    assert other.cache_version() != version


def test_attack_deaths_are_each_attacks_best_figure(synth_store):
    expected = [f["properties"]["killed_best"] or 0 for f in synth_store.query("attacks")]
    assert attack_deaths(synth_store).tolist() == expected
    assert sum(expected) > 0


# -- PMTiles ------------------------------------------------------------------------------------


def test_pmtiles_round_trip(store, tiler, tmp_path):
    out = tmp_path / "kpmap.pmtiles"
    result = export_pmtiles(store, out, range(0, 9), tiler=tiler)
    assert result["tiles"] > 0 and out.stat().st_size == result["bytes"]
    with open(out, "rb") as f:
        reader = Reader(MmapSource(f))
        header = reader.header()
        assert header["tile_type"] == TileType.MVT
        assert header["tile_compression"] == Compression.GZIP
        assert (header["min_zoom"], header["max_zoom"]) == (0, 8)
        assert header["clustered"]
        metadata = reader.metadata()
        assert [layer["id"] for layer in metadata["vector_layers"]] == list(tiles.EXPORT_LAYERS)
        places = next(layer for layer in metadata["vector_layers"] if layer["id"] == "places")
        assert places["minzoom"] == 7 and "GeoNames" in metadata["attribution"]
        assert metadata["vector_layers"][-1]["fields"]["count"].startswith("Number")
        assert "OpenStreetMap" in metadata["attribution"]
        assert metadata["kpmap"]["store_built_at"] == store.manifest["built_at"]
        assert sum(1 for _ in all_tiles(reader.get_bytes)) == result["tiles"]
        lon, lat = an_attack(store)["geometry"]["coordinates"]
        tile = tile_of(lon, lat, 8)
        data = gzip.decompress(reader.get(*tile))
        assert data == tiler.export_tile(tile)
        assert set(decode(data)) == set(tiles.EXPORT_LAYERS)
        assert "Peshawar" in {
            f["properties"]["name"]
            for f in decode(gzip.decompress(reader.get(*tile_of(*PESHAWAR, 8))))["places"][
                "features"
            ]
        }
        assert reader.get(*FAR) is None


# -- the CLI ------------------------------------------------------------------------------------


def test_seed_renders_into_the_disk_cache(store_dir, tmp_path, capsys):
    cache = tmp_path / "tiles"
    argv = ["tiles", "seed", "attacks", "--zoom", "0-6", "--cache-dir", str(cache)]
    assert run_cli([*argv, "--store", str(store_dir)]) == 0
    out = capsys.readouterr().out
    assert "attacks z0-6 (mvt, png)" in out and "written" in out
    data = (cache / "current/attacks/0/0/0.mvt").read_bytes()
    assert decode(data)["attacks"]["features"]
    assert opaque_pixels((cache / "current/attacks/0/0/0.png").read_bytes()) > 0
    assert (cache / "current" / STAMP).exists()
    # a second run keeps what is there
    assert run_cli([*argv, "--store", str(store_dir)]) == 0
    assert " 0 written" in capsys.readouterr().out


def test_seed_needs_a_cache_dir_and_known_formats(store_dir, monkeypatch):
    monkeypatch.delenv("KPMAP_TILE_CACHE_DIR", raising=False)
    with pytest.raises(InvalidQuery, match="cache"):
        run_cli(["tiles", "seed", "attacks", "--store", str(store_dir)])
    with pytest.raises(InvalidQuery, match="format"):
        run_cli(["tiles", "seed", "attacks", "--cache-dir", "x", "--format", "jpg"])
    with pytest.raises(LayerNotFound, match="basemap"):
        run_cli(["tiles", "seed", "nope", "--cache-dir", "x"])
    with pytest.raises(InvalidTile, match="zoom"):
        run_cli(["tiles", "export", "x.pmtiles", "--zoom", "0-20"])


def test_export_command_writes_an_archive(store_dir, tmp_path, capsys):
    out = tmp_path / "k.pmtiles"
    assert run_cli(["tiles", "export", str(out), "--zoom", "0-5", "--store", str(store_dir)]) == 0
    assert "tiles" in capsys.readouterr().out
    with open(out, "rb") as f:
        assert Reader(MmapSource(f)).header()["max_zoom"] == 5
