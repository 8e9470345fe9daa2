"""geo/build/pipeline.py and geo/store/schemas.py: the built store, its manifest, atomic swaps and
validation."""

import json
import shutil

import pytest

from geo.build import attacks, pipeline
from geo.build.attacks import feature_record
from geo.errors import BuildError, LayerNotFound
from geo.licences import read_datasets
from geo.store import Store
from geo.store.schemas import validate_store
from tests.helpers import offline_mirror, write_ucdp_csv


def test_built_store_is_valid(store_dir):
    assert validate_store(store_dir) == []


def test_manifest_records_inputs_versions_and_layers(store_dir):
    manifest = json.loads((store_dir / "manifest.json").read_text())
    upstream = manifest["inputs"]["upstream"]
    assert {"cod_adm1_shp", "cod_adm2_shp", "cod_adm3_dbf", "cod_lines_shp"} <= set(upstream)
    assert all(u["licence"] == "CC BY-IGO 3.0" for u in upstream.values())
    assert all(len(u["sha256"]) == 64 for u in upstream.values())
    assert "data/districts.toml" in manifest["inputs"]["authored"]
    assert manifest["packages"]["timezonefinder-data"]
    assert manifest["layers"]["districts"]["count"] == 35
    assert manifest["layers"]["tehsils"]["count"] == 153
    assert manifest["inputs"]["not_placed"] == []
    minx, miny, maxx, maxy = manifest["layers"]["districts"]["bounds"]
    assert 69 < minx < maxx < 75 and 31 < miny < maxy < 37


def test_manifest_lists_the_articles_the_attacks_cite(store_dir):
    manifest = json.loads((store_dir / "manifest.json").read_text())
    cited = manifest["layers"]["attacks"]["publications"]
    assert ["The Asian Politico", "2024-05-02"] in cited
    assert cited == sorted(cited)


def test_cited_publications_leave_the_datasets_to_the_layer_sources():
    def attack(origin, *sources):
        cites = [{"publication": p, "title": "t", "date": d, "url": ""} for p, d in sources]
        return {"properties": {"origin": origin, "sources": cites}}

    features = [
        # an authored attack an ACLED row merged into, and an ACLED row alone
        attack("authored", ("Dawn", "2023-07-31"), ("ACLED", "2023-07-30")),
        attack("acled", ("ACLED", "2023-08-02")),
        attack("synthetic", ("kpmap synth", "2020-01-01")),
    ]
    assert pipeline._cited_publications(features) == [["Dawn", "2023-07-31"]]


def test_every_dataset_publication_is_a_credited_source():
    from geo.build.synth import SYNTHETIC_SOURCE
    from geo.importers import IMPORTERS

    names = {dataset.publication for dataset in read_datasets().values()}
    assert {i.name for i in IMPORTERS.values()} | {SYNTHETIC_SOURCE["publication"]} <= names


def test_every_importer_declares_its_terms_and_its_ids():
    from geo.importers import FORMATS, IMPORTERS

    assert FORMATS == ("acled", "gtd", "ucdp")
    for fmt, importer in IMPORTERS.items():
        terms = importer.terms()  # its entry in data/datasets.toml
        assert importer.origin == fmt and terms.licence and terms.attribution
        assert importer.layouts and importer.row_id({importer.id_column: " 7 "}) == f"{fmt}-7"
        assert importer.row_id({}) is None


def test_geojson_is_rfc7946(store_dir):
    collection = json.loads((store_dir / "districts.geojson").read_text())
    assert "crs" not in collection
    first = collection["features"][0]
    assert first["id"] == first["properties"]["id"]
    lon, lat = first["geometry"]["coordinates"][0][0]
    assert 69 < lon < 75 and 31 < lat < 37  # longitude first


@pytest.fixture
def old_store(tmp_path, store_dir):
    """A copy of the built store, standing in for the store a failed build must not touch."""
    target = tmp_path / "store"
    shutil.copytree(store_dir, target)
    return target


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_build_that_fails_halfway_leaves_the_old_store_intact(old_store, monkeypatch):
    before = _snapshot(old_store)

    def explode(ctx):
        raise BuildError("synthetic failure after the districts layer was written")

    # districts is built and written first, then the border fails
    monkeypatch.setitem(pipeline.LAYER_BUILDERS, "durand_line", explode)
    with pytest.raises(BuildError, match="synthetic failure"):
        pipeline.build_store(old_store, cache=old_store.parent / "cache", mirror=offline_mirror())
    assert _snapshot(old_store) == before
    assert [p.name for p in old_store.parent.iterdir() if p.name.startswith(".store-")] == []


def test_an_invalid_result_is_not_swapped_in(old_store, monkeypatch):
    before = _snapshot(old_store)
    real = pipeline.LAYER_BUILDERS["districts"]

    def without_names(ctx):
        features = real(ctx)
        del features[0]["properties"]["name"]
        return features

    monkeypatch.setitem(pipeline.LAYER_BUILDERS, "districts", without_names)
    monkeypatch.setitem(pipeline.LAYER_BUILDERS, "durand_line", lambda ctx: [])
    monkeypatch.setitem(pipeline.LAYER_BUILDERS, "attacks", lambda ctx: [])
    with pytest.raises(BuildError, match="property 'name' is missing"):
        pipeline.build_store(old_store, cache=old_store.parent / "cache", mirror=offline_mirror())
    assert _snapshot(old_store) == before


def test_validate_lists_every_problem(old_store):
    path = old_store / "districts.geojson"
    collection = json.loads(path.read_text())
    collection["crs"] = {"type": "name"}
    first, second, third = collection["features"][:3]
    first["geometry"]["coordinates"][0].reverse()  # clockwise exterior
    del second["properties"]["area_km2"]
    third["id"] = first["id"]
    path.write_text(json.dumps(collection))
    problems = validate_store(old_store)
    text = "\n".join(problems)
    assert "crs" in text
    assert "exterior ring is clockwise" in text
    assert "'area_km2' is missing" in text
    assert "duplicate id" in text
    assert len(problems) >= 4


def test_validate_reports_an_unreadable_manifest(tmp_path):
    assert "manifest.json" in validate_store(tmp_path)[0]


def test_countries_meet_along_the_border(store):
    afghanistan = store.layer("countries").geometries()[
        store.layer("countries").position("afghanistan")
    ]
    pakistan = store.layer("countries").geometries()[store.layer("countries").position("pakistan")]
    # simplified outlines: they may overlap or part by a sliver, never by a real area
    assert afghanistan.intersection(pakistan).area < 0.01
    assert afghanistan.distance(pakistan) == 0


def test_an_import_outside_the_boundaries_is_kept_and_listed_not_dropped(old_store, store):
    """A record whose point lies in no KP district (e.g. imported under older boundaries) stays
    in imported.jsonl and is listed in the manifest, but is not drawn as an attack in KP."""
    template = feature_record(store.query("attacks")[0])
    outside = {**template, "id": "synthetic-outside", "origin": "synthetic"}
    outside.update(lon=74.3587, lat=31.5204)  # Lahore, Punjab
    sliver = {**template, "id": "synthetic-sliver", "origin": "synthetic", "geo_precision": 1}
    sliver.update(lon=71.54861, lat=35.31028)  # Arandu crossing, 0.6 km beyond the COD outline
    manifest = pipeline.build_store(
        old_store,
        cache=old_store.parent / "cache",
        mirror=offline_mirror(),
        added=[outside, sliver],
    )
    assert manifest["inputs"]["not_placed"] == [
        {
            "id": "synthetic-outside",
            "reason": "its point (74.3587, 31.5204) lies in no KP district of the current "
            "boundaries (a point is taken inside a district, or on the Pakistani side of the "
            "Durand Line within 5 km of one)",
        }
    ]
    kept = [r["id"] for r in pipeline.read_imported(old_store)]
    assert {"synthetic-outside", "synthetic-sliver"} <= set(kept)
    placed = Store.open(old_store).feature("attacks", "synthetic-sliver")["properties"]
    assert placed["district"] == "lower-chitral" and placed["tehsil"] == "lower-chitral-drosh"
    assert 0.3 < placed["border_sliver_km"] < 1.0


def test_records_kept_from_an_older_store_are_flagged_not_passed_off_as_classified(
    old_store, store
):
    template = feature_record(store.query("attacks")[0])
    older = {k: v for k, v in template.items() if k not in ("category", "parties", "deaths")}
    # a day later, so that it is no duplicate of the record it was copied from
    older.update(id="synthetic-older", origin="synthetic", date="2019-01-01", date_end=None)
    older.update(date_precision="day")
    del older["flags"], older["district_reported"]  # as an older store kept them
    pipeline.build_store(
        old_store, cache=old_store.parent / "cache", mirror=offline_mirror(), added=[older]
    )
    kept = Store.open(old_store).feature("attacks", "synthetic-older")["properties"]
    assert kept["category"] == "militant attack"
    assert kept["flags"] == [attacks.UNCLASSIFIED_FLAG]


# --- linked records, releases ------------------------------------------------------------------


def _layer_arrays(store):
    import numpy as np

    with np.load(store / "attacks.index.npz") as npz:  # the zip's own bytes hold timestamps
        return {k: (npz[k].dtype.str, npz[k].shape, npz[k].tobytes()) for k in npz.files}


def test_the_store_does_not_depend_on_the_order_of_imports(linked_store_dir, build_cache, tmp_path):
    from tests.helpers import acled_records, build_with_imports, ucdp_records

    swapped = tmp_path / "swapped"
    build_with_imports(swapped, build_cache, ucdp_records(), acled_records())
    for name in ("attacks.geojson", "imported.jsonl", "links.json"):
        assert (swapped / name).read_bytes() == (linked_store_dir / name).read_bytes(), name
    assert _layer_arrays(swapped) == _layer_arrays(linked_store_dir)


def test_the_manifest_lists_the_links_made(linked_store_dir):
    manifest = json.loads((linked_store_dir / "manifest.json").read_text())
    assert manifest["links"]["count"] == 1 and manifest["links"]["records"] == 2
    assert "2 km" in manifest["links"]["rule"]
    listed = json.loads((linked_store_dir / manifest["links"]["file"]).read_text())["links"]
    assert listed == [
        {
            "id": "acled-T1",
            "members": ["acled-T1", "ucdp-t1"],
            "reasons": ["0.5 km from acled-T1, dates overlap, both name TTP"],
        }
    ]


def test_linked_records_are_one_attack_whose_figures_cover_every_member(linked_store_dir):
    store = Store.open(linked_store_dir)
    attacks_ = {f["id"]: f["properties"] for f in store.query("attacks", start="2018", end="2018")}
    assert sorted(attacks_) == ["acled-T1", "ucdp-t2", "ucdp-t3"]  # two UCDP events both kept
    group = attacks_["acled-T1"]
    assert [m["id"] for m in group["linked"]] == ["acled-T1", "ucdp-t1"]
    assert (group["killed_low"], group["killed_best"], group["killed_high"]) == (2, 3, 6)
    assert (group["date"], group["date_end"]) == ("2018-05-09", "2018-05-11")
    assert attacks_["ucdp-t2"]["linked"] == []
    # every member's id answers, and finds the attack through the id filter
    assert store.feature("attacks", "ucdp-t1")["id"] == "acled-T1"
    assert [f["id"] for f in store.query("attacks", id="ucdp-t1")] == ["acled-T1"]
    # the district counts the attack once
    peshawar = store.feature("districts", "peshawar")["properties"]
    assert peshawar["attacks"] == 1 + _authored_in(store, "peshawar")


def _authored_in(store, district):
    return len(store.query("attacks", district=district, origin="authored"))


def _ucdp_rows():
    """SYNTHETIC UCDP rows: the Peshawar clash ACLED also reports, two events at one point on
    consecutive days, 30 scattered events and one outside KP (not taken)."""
    import random

    from tests.helpers import MIRANSHAH, PESHAWAR

    rng = random.Random(11)
    rows = [
        {"id": "n1", "day": "2018-05-10", "best": 4, "low": 2, "high": 6, "point": PESHAWAR},
        {"id": "n2", "day": "2018-06-01", "best": 5, "low": 5, "high": 5, "point": MIRANSHAH},
        {"id": "n3", "day": "2018-06-02", "best": 7, "low": 6, "high": 9, "point": MIRANSHAH},
        {"id": "n4", "day": "2018-06-02", "best": 1, "low": 1, "high": 1, "point": (74.3, 31.5)},
    ]
    for i in range(30):
        best = rng.randint(0, 20)
        point = (71.2 + rng.uniform(0, 0.8), 33.7 + rng.uniform(0, 0.6))
        day = f"2018-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        rows.append(
            {"id": f"s{i}", "day": day, "best": best, "low": best, "high": best + 2, "point": point}
        )
    for row in rows:
        lon, lat = row.pop("point")
        row.update(longitude=f"{lon:.4f}", latitude=f"{lat:.4f}")
    return rows


@pytest.fixture(scope="module")
def reimported(linked_store_dir, build_cache, tmp_path_factory):
    """The linked store after importing a UCDP file of release 24.1: (store, manifest, the
    records taken)."""
    from geo.importers import district_locator, read_file

    store = tmp_path_factory.mktemp("reimported") / "store"
    shutil.copytree(linked_store_dir, store)
    path = store.parent / "ucdp.csv"
    write_ucdp_csv(path, _ucdp_rows())
    result = read_file("ucdp", path, district_locator(Store.open(store)))
    assert [r.line for r in result.rejected] == [5]  # the row outside KP
    taken = [{**r, "release": "24.1"} for r in result.records]
    manifest = pipeline.build_store(store, cache=build_cache, mirror=offline_mirror(), added=taken)
    return store, manifest, taken


def test_a_datasets_killed_best_sums_to_the_providers_over_the_rows_taken(reimported):
    from geo.build.datasets import dataset_of

    store, _, taken = reimported
    total = 0
    for feature in Store.open(store).query("attacks"):
        props = feature["properties"]
        members = props["linked"] or [props]
        total += sum(m["killed_best"] or 0 for m in members if dataset_of(m) == "ucdp-ged")
    assert (
        total
        == sum(r["killed_best"] for r in taken)
        == 4 + 5 + 7 + sum(int(row["best"]) for row in _ucdp_rows()[4:])
    )


def test_a_newer_release_replaces_the_older_and_the_manifest_says_so(reimported):
    store, manifest, taken = reimported
    assert manifest["inputs"]["replaced"] == [
        {"dataset": "ucdp-ged", "release": "", "by_release": "24.1", "records": 3}
    ]
    kept = {r["id"] for r in pipeline.read_imported(store)}
    assert kept == {"acled-T1"} | {r["id"] for r in taken}
    layer = Store.open(store)
    assert layer.feature("attacks", "ucdp-n1")["id"] == "acled-T1"  # the new release's report
    assert layer.feature("attacks", "ucdp-n3")["id"] == "ucdp-n3"
    for gone in ("ucdp-t1", "ucdp-t2", "ucdp-t3"):  # the older release's records are gone
        with pytest.raises(LayerNotFound):
            layer.feature("attacks", gone)


def test_an_older_release_is_refused_and_changes_nothing(reimported, build_cache):
    from geo.errors import OlderRelease

    store, _, taken = reimported
    before = _snapshot(store)
    older = [{**taken[0], "id": "ucdp-old", "release": "23.1"}]
    with pytest.raises(OlderRelease, match="older than the release '24.1'"):
        pipeline.build_store(store, cache=build_cache, mirror=offline_mirror(), added=older)
    assert _snapshot(store) == before
