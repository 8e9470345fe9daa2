"""The PostGIS store (geo.store.postgis) against a real PostgreSQL + PostGIS server that the
tests start themselves (tests/pg.py: initdb and pg_ctl in a temporary folder). Where PostgreSQL
is not installed these tests are skipped; in CI (.ci/run installs it) they fail instead.
"""

import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import shapely

from geo.build.synth import synthetic_attacks
from geo.errors import KpmapError, RowWithheld
from geo.licences import RowPolicy
from geo.store import FeatureNotFound, Store, current_version, open_store
from geo.store.postgis import publish
from tests.helpers import acled_records, build_with_imports, ucdp_records
from tests.pg import PgServer, missing_reason


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    reason = missing_reason()
    if reason:
        # CI installs PostgreSQL and PostGIS (.ci/run): there a missing server is a failure.
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    server = PgServer.start()
    yield server
    from geo.store.postgis import close_pools

    close_pools()
    server.stop()


def test_the_server_has_postgis(pg):
    import psycopg

    url = pg.create_database("fixture_check")
    with psycopg.connect(url) as conn:
        point = conn.execute("SELECT ST_AsText(ST_Point(71.5, 34.0, 4326))").fetchone()[0]
    assert point == "POINT(71.5 34)"
    # reached over the Unix socket in the server's own folder, never a TCP port
    assert psycopg.conninfo.conninfo_to_dict(url)["host"] == str(pg.folder)


# --- a store with enough attacks to query, published -----------------------------------------

SYNTHETIC = 1200


@pytest.fixture(scope="module")
def rich_dir(tmp_path_factory, store) -> Path:
    """The real store plus SYNTHETIC synthetic attacks, an ACLED record (withheld by default)
    and UCDP's records, one of them linked to the ACLED one (ids that answer for another)."""
    folder = tmp_path_factory.mktemp("pg-rich") / "store"
    synthetic = synthetic_attacks(SYNTHETIC, store.query("districts"), seed=7)
    build_with_imports(
        folder, tmp_path_factory.mktemp("pg-cache"), synthetic + acled_records(), ucdp_records()
    )
    return folder


@pytest.fixture(scope="module")
def db_url(pg, rich_dir) -> str:
    url = pg.create_database("rich")
    publish(rich_dir, url)
    return url


@pytest.fixture(scope="module")
def fs(rich_dir) -> Store:
    return Store.open(rich_dir)


@pytest.fixture(scope="module")
def db(db_url) -> Store:
    return open_store(db_url)


def test_publish_loads_every_layer_with_its_indexes_and_makes_it_current(db_url, fs):
    import psycopg

    assert current_version(db_url) == fs.version
    schema = f"kpmap_{fs.version}"
    with psycopg.connect(db_url) as conn:
        for name in fs.layer_names:
            (count,) = conn.execute(f'SELECT count(*) FROM {schema}."{name}"').fetchone()
            assert count == len(fs.layer(name)) == fs.manifest["layers"][name]["count"]
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 'attacks'",
                (schema,),
            )
        }
        kinds = " ".join(indexes)
        assert "USING gist (geom)" in kinds
        for column in ("pos", "first_day", "last_day", "actor__key", "district__key"):
            assert f"USING btree ({column})" in kinds
        manifest = conn.execute(
            "SELECT manifest FROM kpmap.versions WHERE version = %s", (fs.version,)
        ).fetchone()[0]
    assert manifest == fs.manifest


def test_the_database_store_holds_what_the_files_hold(fs, db):
    assert db.version == fs.version
    assert db.layer_names == fs.layer_names
    assert db.manifest == fs.manifest
    assert db.facts == fs.facts
    assert len(fs.layer("attacks")) > SYNTHETIC
    for name in fs.layer_names:
        a, b = fs.layer(name), db.layer(name)
        assert len(a) == len(b)
        assert a.bounds == b.bounds
        assert a.ids.tolist() == b.ids.tolist()
        assert [a.feature_bytes(i) for i in range(len(a))] == [
            b.feature_bytes(i) for i in range(len(b))
        ]
        assert a.feature_at(len(a) - 1) == b.feature_at(len(b) - 1)
        for key in a.schema.filterable:
            (ca, va), (cb, vb) = a.column(key), b.column(key)
            assert va[ca].tolist() == vb[cb].tolist(), key
        for key in a.schema.numbers:
            np.testing.assert_array_equal(a.number(key), b.number(key))
        if a.schema.time:
            for x, y in zip(a.time_spans(), b.time_spans(), strict=True):
                assert x.tolist() == y.tolist()
        else:
            assert b.time_spans() is None
        assert shapely.equals_exact(a.geometries(), b.geometries(), tolerance=0).all()
        np.testing.assert_array_equal(a.points(), b.points())


QUERIES = [
    ("attacks", {}),
    ("attacks", {"bbox": (70.0, 33.0, 72.0, 35.0)}),
    ("attacks", {"bbox": "71.2,33.8,71.9,34.3"}),
    ("attacks", {"start": "2020"}),
    ("attacks", {"end": "2017-03"}),
    ("attacks", {"start": "2018-05-10", "end": "2018-05-10"}),  # inside ucdp-t1's range
    ("attacks", {"start": date(2019, 1, 1), "end": "2021-06-30"}),
    ("attacks", {"bbox": (70.5, 33.5, 71.5, 34.5), "start": "2016", "end": "2016"}),
    ("attacks", {"actor": "iskp"}),
    ("attacks", {"actor": ["TTP", " Unknown "]}),
    ("attacks", {"category": "militant attack", "event_type": "suicide bombing"}),
    ("attacks", {"district": ["peshawar", "bajaur"], "start": "2020-02"}),
    ("attacks", {"tehsil": ""}),
    ("attacks", {"claimed": "true"}),
    ("attacks", {"claimed": False}),
    ("attacks", {"origin": ["ucdp", "acled"]}),
    ("attacks", {"origins": "acled,ucdp"}),
    ("attacks", {"geo_precision": 2}),
    ("attacks", {"date_precision": "range"}),
    ("attacks", {"id": ["synthetic-0000010", "ACLED-T1", "nothing"]}),
    ("attacks", {"max_border_km": 25}),
    ("attacks", {"max_border_km": "0", "actor": "TTP"}),
    ("attacks", {"bbox": (10.0, 10.0, 11.0, 11.0)}),  # nowhere near KP: nothing
    ("districts", {"bbox": (70.5, 34.0, 72.0, 35.0)}),
    ("districts", {"former_fata": "true", "bbox": (69.0, 31.0, 75.0, 37.0)}),
    ("districts", {"pcode": "pk502"}),
    ("tehsils", {"district": "peshawar"}),
    ("tehsils", {"bbox": (71.5, 34.0, 71.6, 34.05), "former_frontier_region": False}),
    ("durand_line", {"province": "Khyber Pakhtunkhwa"}),
    ("countries", {"bbox": (60.0, 29.0, 61.0, 30.0)}),
]


@pytest.mark.parametrize(("layer", "query"), QUERIES)
def test_queries_answer_as_the_file_store_does(fs, db, layer, query):
    expected = fs.select(layer, **query)
    found = db.select(layer, **query)
    assert found.tolist() == expected.tolist()
    assert db.query(layer, **query) == fs.query(layer, **query)


def test_the_queries_are_not_trivial(fs):
    counts = [len(fs.select(layer, **query)) for layer, query in QUERIES]
    assert (
        sum(0 < c < len(fs.layer(layer)) for c, (layer, _) in zip(counts, QUERIES, strict=True))
        >= 20
    )


BAD_QUERIES = [
    ("attacks", {"bbox": "70,33,72"}),
    ("attacks", {"bbox": (70, 33, 200, 35)}),
    ("attacks", {"bbox": "72,33,70,35"}),
    ("attacks", {"start": "2024-13"}),
    ("attacks", {"start": "2024-02-30"}),
    ("attacks", {"start": "2024", "end": "2023"}),
    ("attacks", {"colour": "red"}),
    ("attacks", {"claimed": "maybe"}),
    ("attacks", {"max_border_km": "-1"}),
    ("districts", {"start": "2024"}),
    ("districts", {"actor": "TTP"}),
    ("nowhere", {}),
]


@pytest.mark.parametrize(("layer", "query"), BAD_QUERIES)
def test_bad_queries_fail_as_they_do_on_the_file_store(fs, db, layer, query):
    with pytest.raises(KpmapError) as on_files:
        fs.select(layer, **query)
    with pytest.raises(KpmapError) as on_database:
        db.select(layer, **query)
    assert type(on_database.value) is type(on_files.value)
    assert str(on_database.value) == str(on_files.value)


@pytest.mark.parametrize("feature_id", ["acled-T1", "ucdp-t1", "ucdp-t2", "synthetic-0000003"])
def test_a_feature_by_its_id_or_a_linked_records_id(fs, db, feature_id):
    assert db.layer("attacks").position(feature_id) == fs.layer("attacks").position(feature_id)
    assert db.feature("attacks", feature_id) == fs.feature("attacks", feature_id)


def test_linked_records_answer_for_their_attack(fs):
    attacks = fs.layer("attacks")
    assert attacks.position("acled-T1") == attacks.position("ucdp-t1")  # a real link to test


def test_a_missing_feature_is_not_found_on_both(fs, db):
    for store in (fs, db):
        with pytest.raises(FeatureNotFound, match="no feature 'nope'"):
            store.feature("attacks", "nope")
    assert db.layer("districts").position("nope") is None


def test_the_licence_rules_hold_on_the_database(fs, db):
    policy = RowPolicy.from_setting("")  # ACLED and GTD rows withheld
    answers = []
    for store in (fs, db):
        layer = store.layer("attacks")
        allowed, withheld = policy.split(layer, store.select("attacks", start="2018"))
        answers.append((allowed.tolist(), withheld.count, withheld.by_dataset))
        with pytest.raises(RowWithheld):
            policy.check(layer, layer.position("acled-T1"), "acled-T1")
    assert answers[0] == answers[1]
    assert answers[0][1] == 1  # the ACLED record (linked with UCDP's) is withheld
