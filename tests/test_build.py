"""geo/build.py and geo/schemas.py: the built store, its manifest, atomic swaps and validation."""

import json
import shutil

import pytest

from geo import attacks, build
from geo.attacks import feature_record
from geo.errors import BuildError
from geo.licences import read_datasets
from geo.schemas import validate_store
from geo.store import Store
from tests.conftest import offline_mirror


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
    assert build._cited_publications(features) == [["Dawn", "2023-07-31"]]


def test_every_dataset_publication_is_a_credited_source():
    from geo.importers import acled, gtd, ucdp
    from geo.synth import SYNTHETIC_SOURCE

    names = {dataset.publication for dataset in read_datasets().values()}
    assert {acled.NAME, gtd.NAME, ucdp.NAME, SYNTHETIC_SOURCE["publication"]} <= names


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
    monkeypatch.setitem(build.LAYER_BUILDERS, "durand_line", explode)
    with pytest.raises(BuildError, match="synthetic failure"):
        build.build_store(old_store, cache=old_store.parent / "cache", mirror=offline_mirror())
    assert _snapshot(old_store) == before
    assert [p.name for p in old_store.parent.iterdir() if p.name.startswith(".store-")] == []


def test_an_invalid_result_is_not_swapped_in(old_store, monkeypatch):
    before = _snapshot(old_store)
    real = build.LAYER_BUILDERS["districts"]

    def without_names(ctx):
        features = real(ctx)
        del features[0]["properties"]["name"]
        return features

    monkeypatch.setitem(build.LAYER_BUILDERS, "districts", without_names)
    monkeypatch.setitem(build.LAYER_BUILDERS, "durand_line", lambda ctx: [])
    monkeypatch.setitem(build.LAYER_BUILDERS, "attacks", lambda ctx: [])
    with pytest.raises(BuildError, match="property 'name' is missing"):
        build.build_store(old_store, cache=old_store.parent / "cache", mirror=offline_mirror())
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
    afghanistan = store.layer("countries").geometries[store.layer("countries").by_id["afghanistan"]]
    pakistan = store.layer("countries").geometries[store.layer("countries").by_id["pakistan"]]
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
    manifest = build.build_store(
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
    kept = [r["id"] for r in build.read_imported(old_store)]
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
    build.build_store(
        old_store, cache=old_store.parent / "cache", mirror=offline_mirror(), added=[older]
    )
    kept = Store.open(old_store).feature("attacks", "synthetic-older")["properties"]
    assert kept["category"] == "militant attack"
    assert kept["flags"] == [attacks.UNCLASSIFIED_FLAG]
