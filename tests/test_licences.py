"""geo/licences.py and every path a row could leave by: a store holding ACLED, GTD and UCDP
records (synthetic stand-ins, built by the real pipeline), served with the default setting (ACLED
and GTD rows withheld, still counted) and with KPMAP_LICENSED_DATASETS=acled,gtd."""

import csv
import gzip
import io
import json

import mapbox_vector_tile
import numpy as np
import orjson
import pyogrio
import pytest
from pmtiles.reader import MmapSource, Reader

from app import create_app
from geo.licences import (
    SETTING,
    RowPolicy,
    Withheld,
    dataset_source,
    read_datasets,
    reveals_restricted,
)
from geo.store import Store
from geo.store.schemas import LAYERS
from geo.tiles.canvas import empty_png
from geo.tiles.grid import Tile, world_xy
from geo.tiles.pmtiles import export_pmtiles
from geo.tiles.tiler import Tiler
from tests.helpers import (
    ACLED_RELEASE,
    MARKER,
    RESTRICTED_IDS,
    STAND_INS,
    UCDP_RELEASE,
    build_licence_store,
    carried_feeds,
    preloaded_feeds,
)


@pytest.fixture(scope="module")
def licence_store_dir(tmp_path_factory, store):
    return build_licence_store(tmp_path_factory, store)


@pytest.fixture(scope="module")
def lstore(licence_store_dir):
    return Store.open(licence_store_dir)


@pytest.fixture(scope="module")
def restricted(licence_store_dir):
    """The app with the default setting: ACLED and GTD rows are not handed out."""
    return create_app({"STORE": str(licence_store_dir), "TESTING": True}).test_client()


@pytest.fixture(scope="module")
def licensed(licence_store_dir):
    """The app of an operator licensed to redistribute ACLED and GTD."""
    config = {"STORE": str(licence_store_dir), "TESTING": True, "LICENSED_DATASETS": "acled,gtd"}
    return create_app(config).test_client()


def ids(doc: dict) -> set[str]:
    return {f["id"] for f in doc["features"]}


def get_json(client, url: str, status: int = 200) -> dict:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    return orjson.loads(response.data)


def decode(data: bytes) -> dict:
    return mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})


def tile_of(lon: float, lat: float, z: int) -> Tile:
    u, v = world_xy(lon, lat)
    return Tile(z, int(u * 2**z), int(v * 2**z))


def point_of(fid: str):
    return next(row[3] for row in STAND_INS if row[0] == fid)


# --- the data and the rule ------------------------------------------------------------------


def test_every_origin_has_its_terms_in_data():
    datasets = read_datasets()
    assert set(datasets) == {"authored", "acled", "gtd", "ucdp", "synthetic"}
    assert {k for k, d in datasets.items() if not d.redistribute_rows} == {"acled", "gtd"}
    for dataset in datasets.values():
        source = dataset_source(dataset, ["r1"], "2025-01-01")
        assert "{" not in source["attribution"], dataset.key  # every placeholder filled
        if not dataset.redistribute_rows:
            assert dataset.terms_url.startswith("https://") and dataset.terms
    assert "Sundberg" in datasets["ucdp"].citation and datasets["ucdp"].licence == "CC BY 4.0"
    assert "START" in datasets["gtd"].citation


def test_acled_access_date_is_the_release_or_else_the_build_day():
    acled = read_datasets()["acled"]
    assert (
        "accessed 2025-03-10" in dataset_source(acled, ["2025-03-10"], "2025-06-01")["attribution"]
    )
    assert "accessed 2025-06-01" in dataset_source(acled, [""], "2025-06-01")["attribution"]


def test_a_feature_is_withheld_if_any_row_it_reveals_is_restricted():
    assert reveals_restricted(["ucdp", "acled"], {"acled", "gtd"})
    assert not reveals_restricted(["ucdp", "authored"], {"acled", "gtd"})
    assert not reveals_restricted(["acled"], set())


def test_the_setting_names_licensed_datasets_and_refuses_unknown_ones(licence_store_dir):
    assert RowPolicy.from_setting("").restricted == {"acled", "gtd"}
    assert RowPolicy.from_setting("ACLED, gtd").restricted == frozenset()
    assert RowPolicy.from_setting(["gtd"]).restricted == {"acled"}
    with pytest.raises(ValueError, match="acledd.*the datasets are: authored, acled"):
        create_app({"STORE": str(licence_store_dir), "LICENSED_DATASETS": "acledd"})


class ColumnsOnly:
    """An attacks layer that has its origins column and nothing else: the mask must come from
    it, never from parsing features."""

    def __init__(self, codes, values):
        self._column = (np.asarray(codes, dtype=np.int32), np.asarray(values))

    def column(self, key):
        assert key == "origins"
        return self._column

    def feature_at(self, i):
        raise AssertionError("the licence check parsed a feature")


def test_the_mask_is_vectorised_over_the_origin_column():
    n = 1_000_000
    codes = np.tile(np.array([0, 1, 2, 3], dtype=np.int32), n // 4)
    layer = ColumnsOnly(codes, ["authored", "acled", "ucdp", "gtd"])  # one dataset each
    kept, withheld = RowPolicy.from_setting("").split(layer, np.arange(n))
    assert len(kept) == n // 2 and set(codes[kept].tolist()) == {0, 2}
    assert withheld == Withheld(n // 2, {"acled": n // 4, "gtd": n // 4})
    assert RowPolicy.from_setting("acled,gtd").withheld_mask(layer) is None


# --- the build ------------------------------------------------------------------------------


def test_the_manifest_credits_each_dataset_with_its_terms(lstore):
    sources = {s.get("dataset"): s for s in lstore.manifest["layers"]["attacks"]["sources"]}
    assert {"authored", "acled", "gtd", "ucdp"} <= set(sources)
    assert sources["acled"]["redistribute_rows"] is False
    assert f"accessed {ACLED_RELEASE}" in sources["acled"]["attribution"]
    assert "Selected and changed by kpmap" in sources["acled"]["attribution"]
    assert f"version {UCDP_RELEASE}" in sources["ucdp"]["attribution"]
    assert sources["ucdp"]["redistribute_rows"] is True
    assert sources["gtd"]["terms_url"] == read_datasets()["gtd"].terms_url
    # the district totals count every dataset's attacks, so they credit each one too
    district_sources = lstore.manifest["layers"]["districts"]["sources"]
    assert {"acled", "gtd", "ucdp"} <= {s.get("dataset") for s in district_sources}


# --- downloads ------------------------------------------------------------------------------


def test_geojson_download_leaves_out_restricted_rows_and_says_so(restricted, lstore):
    response = restricted.get("/download/attacks.geojson")
    doc = orjson.loads(response.data)
    assert not ids(doc) & RESTRICTED_IDS and "ucdp-900001" in ids(doc)
    assert len(doc["features"]) == len(lstore.layer("attacks")) - 3
    metadata = doc["metadata"]
    assert metadata["count"] == len(doc["features"])
    assert metadata["withheld"]["count"] == 3
    assert metadata["withheld"]["by_dataset"] == {"acled": 2, "gtd": 1}
    assert metadata["withheld"]["setting"] == SETTING
    reason = metadata["withheld"]["reason"]
    assert read_datasets()["acled"].terms_url in reason and "KPMAP_LICENSED_DATASETS" in reason
    assert "Sundberg" in metadata["attribution"] and "ACLED" not in metadata["attribution"]
    assert {s.get("dataset") for s in metadata["sources"]} >= {"authored", "ucdp"}
    # a stand-in's text appears only in the UCDP row, which may be handed out
    assert response.data.count(MARKER.encode()) == 3  # its location, description and title


def test_download_filters_count_only_the_matching_withheld_rows(restricted):
    doc = get_json(restricted, "/download/attacks.geojson?district=peshawar")
    assert doc["metadata"]["withheld"] == {
        "count": 1,
        "by_dataset": {"acled": 1},
        "reason": doc["metadata"]["withheld"]["reason"],
        "setting": SETTING,
    }
    doc = get_json(restricted, "/download/attacks.geojson?district=bannu")
    assert doc["metadata"]["withheld"] == {"count": 0, "by_dataset": {}}


def test_licensed_operator_serves_every_row_with_its_attribution(licensed, lstore):
    doc = get_json(licensed, "/download/attacks.geojson")
    assert RESTRICTED_IDS <= ids(doc) and len(doc["features"]) == len(lstore.layer("attacks"))
    assert doc["metadata"]["withheld"] == {"count": 0, "by_dataset": {}}
    assert f"accessed {ACLED_RELEASE}" in doc["metadata"]["attribution"]
    assert "START (National Consortium" in doc["metadata"]["attribution"]


def test_csv_download(restricted, licensed):
    response = restricted.get("/download/attacks.csv")
    rows = list(csv.DictReader(io.StringIO(response.data.decode("utf-8"))))
    assert not {r["id"] for r in rows} & RESTRICTED_IDS
    assert response.headers["Kpmap-Withheld"] == "3"
    assert "KPMAP_LICENSED_DATASETS=acled,gtd" in response.headers["Kpmap-Withheld-Reason"]
    assert "Kpmap-Withheld" in response.headers["Access-Control-Expose-Headers"]
    ucdp = next(r for r in rows if r["id"] == "ucdp-900001")
    assert "Sundberg" in ucdp["attribution"] and "CC BY 4.0" in ucdp["attribution"]
    assert all(r["attribution"] for r in rows)
    response = licensed.get("/download/attacks.csv")
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(response.data.decode("utf-8")))}
    assert RESTRICTED_IDS <= set(rows) and response.headers["Kpmap-Withheld"] == "0"
    assert f"accessed {ACLED_RELEASE}" in rows["acled-PAK1001"]["attribution"]


def test_geopackage(restricted, licensed, tmp_path):
    for client, expected in ((restricted, 3), (licensed, 0)):
        path = tmp_path / f"kpmap-{expected}.gpkg"
        path.write_bytes(client.get("/download/kpmap.gpkg").data)
        attacks = pyogrio.read_dataframe(path, layer="attacks")
        assert bool(set(attacks["id"]) & RESTRICTED_IDS) == (expected == 0)
        meta = pyogrio.read_info(path, layer="attacks")["layer_metadata"]
        assert json.loads(meta["kpmap_withheld"])["count"] == expected
        assert "Sundberg" in json.loads(meta["kpmap_attribution"])


def test_the_setting_changes_the_etag(restricted, licensed):
    url = "/download/attacks.geojson"
    assert restricted.get(url).headers["ETag"] != licensed.get(url).headers["ETag"]


def test_district_downloads_still_count_withheld_attacks(restricted, lstore):
    doc = get_json(restricted, "/download/districts.geojson")
    assert sum(f["properties"]["attacks"] for f in doc["features"]) == len(lstore.layer("attacks"))
    assert "accessed 2025-03-10" in doc["metadata"]["attribution"]  # ACLED is in the totals


# --- OGC API --------------------------------------------------------------------------------


def test_ogc_items_leave_out_restricted_rows_and_say_how_many(restricted, lstore):
    doc = get_json(restricted, "/ogc/collections/attacks/items?limit=10000")
    assert not ids(doc) & RESTRICTED_IDS
    assert doc["numberMatched"] == len(lstore.layer("attacks")) - 3
    assert doc["withheld"]["count"] == 3 and doc["withheld"]["setting"] == SETTING
    doc = get_json(restricted, "/ogc/collections/attacks/items?origin=acled")
    assert doc["numberMatched"] == 0 and doc["features"] == []
    assert doc["withheld"]["by_dataset"] == {"acled": 2}
    html = restricted.get("/ogc/collections/attacks/items?f=html&limit=10000").data
    assert html.count(MARKER.encode()) == 3 and b"KPMAP_LICENSED_DATASETS" in html


def test_ogc_item_of_a_restricted_row_is_403_with_the_licence_and_the_setting(restricted):
    for fid, name in (("acled-PAK1001", "ACLED"), ("gtd-201701010001", "GTD")):
        error = get_json(restricted, f"/ogc/collections/attacks/items/{fid}", status=403)
        assert error["code"] == "licence-restricted"
        assert name in error["description"] and SETTING in error["description"]
        assert read_datasets()[fid.split("-")[0]].terms_url in error["description"]
        assert MARKER not in error["description"]


def test_ogc_item_of_a_free_row_carries_its_attribution(restricted, licensed):
    feature = get_json(restricted, "/ogc/collections/attacks/items/ucdp-900001")
    assert "Sundberg" in feature["attribution"] and "CC BY 4.0" in feature["attribution"]
    feature = get_json(licensed, "/ogc/collections/attacks/items/acled-PAK1001")
    assert feature["id"] == "acled-PAK1001" and "acleddata.com" in feature["attribution"]


def test_ogc_collection_says_what_it_withholds(restricted, licensed):
    collection = get_json(restricted, "/ogc/collections/attacks")
    assert collection["withheld"]["count"] == 3
    assert "3 of them are not served as items" in collection["description"]
    listed = get_json(restricted, "/ogc/collections")["collections"]
    assert next(c for c in listed if c["id"] == "attacks")["withheld"]["count"] == 3
    assert get_json(licensed, "/ogc/collections/attacks")["withheld"]["count"] == 0


# --- tiles ----------------------------------------------------------------------------------


def tile_features(client, fid: str, z: int, ext: str = "mvt") -> list[dict]:
    lon, lat = point_of(fid)
    z, x, y = tile_of(lon, lat, z)
    response = client.get(f"/tiles/attacks/{z}/{x}/{y}.{ext}")
    assert response.status_code == 200
    return decode(response.data)["attacks"]["features"] if response.data else []


def test_point_tiles_cluster_restricted_rows(restricted, licensed):
    for fid in ("acled-PAK1001", "gtd-201701010001"):
        features = tile_features(restricted, fid, 14)
        assert [f["properties"] for f in features] == [{"cluster": True, "count": 1, "killed": 2}]
        shown = [f["properties"]["id"] for f in tile_features(licensed, fid, 14)]
        assert shown == [fid]
    free = tile_features(restricted, "ucdp-900001", 14)
    assert [f["properties"].get("id") for f in free] == ["ucdp-900001"]


def test_png_tiles_still_draw_restricted_rows(restricted):
    lon, lat = point_of("acled-PAK1001")
    z, x, y = tile_of(lon, lat, 14)
    png = restricted.get(f"/tiles/attacks/{z}/{x}/{y}.png").data
    assert png != empty_png(1)


def test_clusters_count_every_attack(lstore):
    tiler = Tiler(lstore)  # with no policy given, nothing is licensed
    counted = sum(
        f["properties"]["count"]
        for f in decode(tiler.vector_tile("attacks", Tile(0, 0, 0)))["attacks"]["features"]
    )
    assert counted == len(lstore.layer("attacks"))


def test_tilejson_credits_the_datasets(restricted):
    document = get_json(restricted, "/tiles/attacks.json")
    assert "ACLED (acleddata.com), data accessed 2025-03-10" in document["attribution"]
    assert "UCDP GED 25.1 (ucdp.uu.se, CC BY 4.0)" in document["attribution"]


def test_pmtiles_export_holds_no_restricted_point(lstore, tmp_path):
    out = tmp_path / "k.pmtiles"
    export_pmtiles(lstore, out, range(12, 13))
    with open(out, "rb") as f:
        reader = Reader(MmapSource(f))
        assert reader.metadata()["kpmap"]["clustered_only"]["count"] == 3
        metadata = reader.metadata()
        assert "accessed 2025-03-10" in metadata["attribution"]
        changes = {d["dataset"]: d["attribution"] for d in metadata["kpmap"]["datasets"]}
        assert "Selected and changed by kpmap" in changes["acled"]
        for fid in ("acled-PAK1001", "gtd-201701010001", "ucdp-900001"):
            data = gzip.decompress(reader.get(*tile_of(*point_of(fid), 12)))
            points = [p for p in decode(data)["attacks"]["features"] if "id" in p["properties"]]
            assert (fid in {p["properties"]["id"] for p in points}) == fid.startswith("ucdp")


# --- the map ----------------------------------------------------------------------------------


def test_the_map_feed_leaves_out_restricted_rows(restricted, licensed, lstore):
    feed = get_json(restricted, "/api/map/attacks.json")
    assert not set(feed["id"]) & RESTRICTED_IDS and feed["withheld"] == 3
    assert feed["count"] == len(lstore.layer("attacks")) - 3
    feed = get_json(licensed, "/api/map/attacks.json")
    assert RESTRICTED_IDS <= set(feed["id"]) and feed["withheld"] == 0


def test_a_restricted_popup_is_403(restricted, licensed):
    error = get_json(restricted, "/api/map/attacks/acled-PAK1001.json", status=403)
    assert "ACLED" in error["description"] and MARKER not in error["description"]
    assert get_json(licensed, "/api/map/attacks/acled-PAK1001.json")["id"] == "acled-PAK1001"
    assert get_json(restricted, "/api/map/attacks/ucdp-900001.json")["id"] == "ucdp-900001"


def test_server_clusters_hold_restricted_rows_only_as_cells(restricted, lstore):
    lon, lat = point_of("acled-PAK1001")
    view = f"{lon - 0.01},{lat - 0.01},{lon + 0.01},{lat + 0.01}"
    answer = get_json(restricted, f"/api/map/clusters.json?z=18&view={view}&heat=1")
    assert "acled-PAK1001" not in answer["points"]["id"]
    assert answer["cells"]["count"] == [1] and answer["cells"]["killed"] == [2]
    assert sum(answer["heat"]["count"]) == 1
    everything = get_json(restricted, "/api/map/clusters.json?z=3")
    kohat = everything["district_only"]["kohat"]
    assert kohat["withheld"] == 1 and "acled-PAK1002" not in kohat["sample"]["id"]
    assert everything["count"] == len(lstore.layer("attacks"))
    total = sum(everything["cells"]["count"]) + everything["points"]["count"]
    total += sum(d["count"] for d in everything["district_only"].values())
    assert total == len(lstore.layer("attacks"))


def test_the_page_counts_restricted_rows_clusters_them_and_credits_them(restricted, lstore):
    page = restricted.get("/").get_data(as_text=True)
    total = len(lstore.layer("attacks"))
    assert f"<strong>{total:,}</strong>" in page  # every attack counts
    assert '"aggregateOnly": true' in page  # so the page asks the server for clusters
    assert "3 matching attacks come from ACLED, GTD" in page
    # the map's line credits each dataset briefly, the page's sources in full, with the changes
    assert "ACLED (acleddata.com), data accessed 2025-03-10" in page
    datasets = page[page.index('id="kpmap-datasets"') :]
    assert "Selected and changed by kpmap" in datasets and "Sundberg" in datasets
    assert read_datasets()["acled"].terms_url in datasets
    # the page neither carries nor preloads the point feed
    assert not [url for url in carried_feeds(page) if url.startswith("/api/map/attacks.json")]
    assert not [url for url in preloaded_feeds(page) if url.startswith("/api/map/attacks.json")]


def test_the_licensed_page_needs_no_note(licensed):
    page = licensed.get("/").get_data(as_text=True)
    assert '"aggregateOnly": false' in page and "matching attacks come from" not in page
    assert "accessed 2025-03-10" in page


def test_the_schema_has_an_origin_column():
    assert "origin" in LAYERS["attacks"].filterable  # what the vectorised check reads


def test_tile_commands_read_the_setting_from_the_environment(monkeypatch):
    from geo.tiles.cli import licence_policy

    monkeypatch.delenv(SETTING, raising=False)
    assert licence_policy().restricted == {"acled", "gtd"}
    monkeypatch.setenv(SETTING, "acled,gtd")
    assert licence_policy().restricted == frozenset()
