"""The PostGIS store (geo.store.postgis) against a real PostgreSQL + PostGIS server that the
tests start themselves (tests/pg.py: initdb and pg_ctl in a temporary folder). Where PostgreSQL
is not installed these tests are skipped; in CI (.ci/run installs it) they fail instead.
"""

import io
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import mapbox_vector_tile
import mercantile
import numpy as np
import orjson
import pytest
import shapely
from PIL import Image

from app import create_app
from geo.build.synth import synthetic_attacks
from geo.cli import main
from geo.errors import KpmapError, RowWithheld, StoreNotFound
from geo.licences import RowPolicy
from geo.store import FeatureNotFound, Store, current_version, open_store
from geo.store.postgis import FIRST_READ, PublishError, _Stream, publish
from tests.helpers import (
    PESHAWAR,
    acled_records,
    attack_record,
    build_with_imports,
    offline_mirror,
    ucdp_records,
)
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
LONG_RANGE = attack_record(
    id="synthetic-long",
    date="2016-11-20",
    date_precision="range",
    date_end="2019-02-03",
    point=(PESHAWAR[0] + 0.01, PESHAWAR[1]),
    location='Near "the old fort" \\ Peshawar\tsouth',  # escapes in the JSON: COPY's too
)


@pytest.fixture(scope="module")
def rich_dir(tmp_path_factory, store) -> Path:
    """The real store plus SYNTHETIC synthetic attacks, an ACLED record (withheld by default)
    and UCDP's records, one of them linked to the ACLED one (ids that answer for another), and
    an attack whose time is a range of years (filed under its first year in the database)."""
    folder = tmp_path_factory.mktemp("pg-rich") / "store"
    synthetic = synthetic_attacks(SYNTHETIC, store.query("districts"), seed=7)
    synthetic.append(LONG_RANGE)
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
        assert "USING gist (by_year)" in kinds  # place and time in one index
        for column in ("pos", "actor__key", "district__key"):
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
    # place and time together (geo.store.postgis.ByYear): one end of the window, or both
    ("attacks", {"bbox": (70.0, 33.0, 72.0, 35.0), "start": "2019-06"}),
    ("attacks", {"bbox": (71.0, 33.5, 72.5, 34.5), "end": "2016-02-29"}),
    ("attacks", {"bbox": (60.0, 20.0, 71.0, 34.0), "start": "2017", "end": "2019-03"}),
    ("attacks", {"bbox": (10.0, 10.0, 11.0, 11.0), "start": "2018"}),
    ("attacks", {"bbox": (71.5, 34.0, 71.7, 34.1), "start": "2018-05-11", "end": "2018-05-11"}),
    ("attacks", {"bbox": (71.5, 34.0, 71.7, 34.1), "start": "2018-02", "end": "2018-03"}),
    ("attacks", {"bbox": (71.5, 34.0, 71.7, 34.1), "end": "2016-11-19"}),
    ("attacks", {"bbox": (71.5, 34.0, 71.7, 34.1), "start": "2019-02-03"}),
    ("attacks", {"bbox": (71.5, 34.0, 71.7, 34.1), "start": "2019-02-04"}),
    ("attacks", {"bbox": "69,31,75,37", "start": "2010", "end": "2030"}),
    ("attacks", {"start": "2018-03", "end": "2018-03", "actor": "TTP"}),
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


def test_an_attack_over_years_is_found_in_each_of_them(fs, db):
    # Filed under its first year (2016) in the database: found from a later year's window too.
    at = fs.layer("attacks").position("synthetic-long")
    for window in ({"start": "2017", "end": "2017"}, {"start": "2019-02-03"}, {"end": "2016-11"}):
        for store in (fs, db):
            assert at in store.select("attacks", bbox=(71.5, 34.0, 71.7, 34.1), **window)
    assert at not in db.select("attacks", bbox=(71.5, 34.0, 71.7, 34.1), start="2019-02-04")


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


def test_features_are_found_when_their_table_was_rewritten(pg, rich_dir, fs, caplog):
    """A page's features are read by where their rows were at publish (feature_tid); a table
    a DBA rewrote (CLUSTER, VACUUM FULL, pg_repack) has them elsewhere: read by position."""
    import psycopg

    url = pg.create_database("rewritten")
    publish(rich_dir, url)
    table = f"kpmap_{fs.version}.attacks_features"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE INDEX by_hash ON {table} (md5(feature))")
        conn.execute(f"CLUSTER {table} USING by_hash")
    db = open_store(url)
    query = {"bbox": (70.0, 33.0, 72.0, 35.0), "start": "2018", "end": "2018"}
    for store in (fs, db):
        layer, positions = store.layer("attacks"), store.select("attacks", **query)
        # sparse, so read by tid (a dense run is read as a range of positions)
        assert FIRST_READ > len(positions) > 10
        assert positions[-1] - positions[0] > 2 * len(positions)
        features = [layer.feature_bytes(i) for i in positions.tolist()]
        if store is fs:
            expected = features
    assert features == expected
    assert "feature rows moved" in caplog.text


@pytest.fixture
def streaming(monkeypatch, db_url):
    """The database store, read as a large layer's features are: a walk past a few blocks
    streams the rest of its selection (the thresholds made small for the test store)."""
    from geo.store import postgis

    monkeypatch.setattr(postgis, "SMALL_LAYER", 10)
    monkeypatch.setattr(postgis, "FIRST_READ", 4)
    monkeypatch.setattr(postgis, "READ_AHEAD", 40)
    monkeypatch.setattr(postgis, "STREAM_ROWS", 7)
    return open_store(db_url)


STREAMED = [
    {},  # the whole layer: a range of positions
    {"bbox": (70.0, 33.0, 72.0, 35.0)},  # dense, with gaps
    {"start": "2018", "end": "2019"},  # sparse: a list of positions
]


@pytest.mark.parametrize("query", STREAMED)
def test_a_download_streams_the_features_the_files_hold(monkeypatch, streaming, fs, query):
    from geo.export import geojson_chunks
    from geo.store import postgis

    positions = fs.select("attacks", **query)
    assert len(positions) > 4 + 12 + 2 * 40  # enough to stream
    on_files = b"".join(geojson_chunks(fs.layer("attacks"), positions))
    layer = streaming.layer("attacks")
    assert streaming.select("attacks", **query).tolist() == positions.tolist()
    streams = []
    monkeypatch.setattr(postgis, "_Stream", lambda *a: streams.append(a) or _Stream(*a))
    assert b"".join(geojson_chunks(layer, positions)) == on_files
    assert len(streams) == 1  # it did stream, once
    assert layer._ahead.stream is None  # read to the end: its connection given back


def test_a_stream_left_half_read_gives_its_connection_back(streaming, db_url):
    from geo.store import postgis

    layer = streaming.layer("attacks")
    stats = postgis.pool(db_url).get_stats
    for _ in range(3):  # more than the pool holds would show as a wait, then a timeout
        positions = layer.select()
        for position in positions[:300].tolist():
            layer.feature_bytes(position)
        assert layer._ahead.stream is not None
    layer.select(bbox=(70, 33, 71, 34))  # a new selection closes the stream
    assert layer._ahead.stream is None
    assert stats().get("pool_available", 0) >= 1
    assert streaming.feature("attacks", "synthetic-0000003")["id"] == "synthetic-0000003"


def test_a_stream_that_breaks_is_read_on_by_blocks(streaming, fs, db_url, caplog):
    import psycopg

    layer = streaming.layer("attacks")
    positions = layer.select().tolist()
    got = [layer.feature_bytes(i) for i in positions[:200]]
    assert layer._ahead.stream is not None  # streaming by now
    with psycopg.connect(db_url, autocommit=True) as conn:  # as a replica's conflict would
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE '%%attacks_features%%ORDER BY pos%%' AND pid <> pg_backend_pid()"
        )
    got += [layer.feature_bytes(i) for i in positions[200:]]
    assert got == [fs.layer("attacks").feature_bytes(i) for i in positions]
    assert "read by blocks" in caplog.text


# --- publishing: atomic, repeatable ----------------------------------------------------------


def _database_state(url: str) -> tuple:
    import psycopg

    with psycopg.connect(url) as conn:
        versions = conn.execute("SELECT version FROM kpmap.versions ORDER BY 1").fetchall()
        schemas = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'kpmap%' ORDER BY 1"
        ).fetchall()
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname LIKE 'kpmap%'"
        ).fetchone()
    return current_version(url), versions, schemas, tables


def test_a_publish_that_fails_half_way_changes_nothing(pg, store_dir, rich_dir):
    import psycopg

    url = pg.create_database("failing")
    publish(store_dir, url)
    before = _database_state(url)
    # A real failure inside the database, after the first layers are loaded: creating the
    # attacks table of a new version raises (an event trigger, as a full disk or a lost
    # connection would stop a publish half-way).
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """CREATE FUNCTION refuse_attacks() RETURNS event_trigger LANGUAGE plpgsql AS $$
               BEGIN
                 IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands()
                            WHERE object_identity LIKE 'kpmap\\_%.attacks') THEN
                   RAISE EXCEPTION 'no room for attacks';
                 END IF;
               END $$"""
        )
        conn.execute(
            "CREATE EVENT TRIGGER refuse ON ddl_command_end EXECUTE FUNCTION refuse_attacks()"
        )
    with pytest.raises(PublishError, match="nothing was changed: no room for attacks"):
        publish(rich_dir, url)
    assert _database_state(url) == before
    assert open_store(url).version == Store.open(store_dir).version


def test_a_store_with_problems_is_refused_before_the_database_is_touched(pg, tmp_path):
    url = pg.create_database("refused")
    (tmp_path / "manifest.json").write_text('{"format": "kpmap-store/0", "layers": {}}')
    with pytest.raises(PublishError, match="(?s)6 problem.*format 'kpmap-store/0' is not"):
        publish(tmp_path, url)
    assert current_version(url) is None
    with pytest.raises(StoreNotFound, match="nothing is published.*kpmap publish"):
        open_store(url)


def test_publishing_again_switches_versions_and_keeps_two(pg, store_dir, rich_dir, tmp_path):
    url = pg.create_database("versions")
    first = publish(store_dir, url)
    second = publish(rich_dir, url)
    assert first.loaded and second.loaded and first.version != second.version
    assert current_version(url) == second.version
    back = publish(store_dir, url)  # a roll-back: loaded already, only made current
    assert not back.loaded and current_version(url) == first.version
    # A third version: the oldest not current (rich) is dropped, the current one is kept.
    third_dir = tmp_path / "third"
    shutil.copytree(store_dir, third_dir)
    manifest = json.loads((third_dir / "manifest.json").read_text())
    manifest["built_at"] = "2000-01-01T00:00:00Z"  # another build of the same inputs
    (third_dir / "manifest.json").write_text(json.dumps(manifest))
    third = publish(third_dir, url)
    assert third.dropped == (second.version,)
    assert _database_state(url)[1] == sorted([(first.version,), (third.version,)])


def test_the_publish_command(pg, store_dir, capsys):
    url = pg.create_database("command")
    assert main(["publish", "--store", str(store_dir), url]) == 0
    said = capsys.readouterr().out
    assert f"as version {Store.open(store_dir).version}" in said and "it is current" in said
    assert main(["publish", "--store", str(store_dir), "/not/a/url"]) == 2
    assert "is not a database URL; use postgresql://" in capsys.readouterr().err


def test_an_import_publishes_when_asked(pg, store_dir, tmp_path, capsys, monkeypatch):
    url = pg.create_database("imported")
    target = tmp_path / "store"
    shutil.copytree(store_dir, target)
    monkeypatch.setenv("KPMAP_MIRROR", offline_mirror())
    fixture = "tests/fixtures/importers/synthetic_GEDEvent_v25_1.csv"
    assert main(["import", "ucdp", fixture, "--store", str(target), "--publish", url]) == 0
    assert "it is current" in capsys.readouterr().out
    assert current_version(url) == Store.open(target).version
    assert open_store(url).feature("attacks", "ucdp-900103")["properties"]["dataset"] == "ucdp-ged"
    # what is not a database URL is refused before any work
    assert main(["build", "--store", str(target), "--publish", "/not/a/url"]) == 2
    assert "is not a database URL" in capsys.readouterr().err
    # a database that cannot take it: the store is built all the same, and the exit says so
    nowhere = pg.url("no_such_database")
    assert main(["import", "ucdp", fixture, "--store", str(target), "--publish", nowhere]) == 1
    said = capsys.readouterr().err
    assert f"the store at {target} is built, but publishing" in said
    assert "nothing was changed" in said


# --- the app serves the same from either backend ---------------------------------------------

PESHAWAR_Z12 = mercantile.tile(*PESHAWAR, 12)
PESHAWAR_Z7 = mercantile.tile(*PESHAWAR, 7)
SERVED = [
    "/ogc/collections",
    "/ogc/collections/attacks",
    "/ogc/collections/attacks/items?bbox=70,33,72,35&datetime=2016-01-01/2019-12-31&limit=50",
    "/ogc/collections/attacks/items?actor=TTP&limit=20&offset=10",
    "/ogc/collections/attacks/items?origin=ucdp",
    "/ogc/collections/attacks/items/ucdp-t2",
    "/ogc/collections/attacks/items/acled-T1",  # withheld: 403
    "/ogc/collections/attacks/items/nope",  # 404
    "/ogc/collections/attacks/items?bbox=1,2,3",  # 400
    "/ogc/collections/districts/items?bbox=70.5,34,72,35",
    "/ogc/collections/tehsils/items?district=peshawar&limit=5",
    "/download/attacks.geojson?district=peshawar&from=2018",
    "/download/attacks.csv?actor=ISKP&max_border_km=40",
    "/download/districts.geojson",
    "/api/map/attacks.json?from=2020&actor=TTP",
    "/api/map/clusters.json?bbox=69,31,75,37&zoom=7",
    f"/tiles/attacks/{PESHAWAR_Z7.z}/{PESHAWAR_Z7.x}/{PESHAWAR_Z7.y}.mvt",
    f"/tiles/attacks/{PESHAWAR_Z12.z}/{PESHAWAR_Z12.x}/{PESHAWAR_Z12.y}.mvt",
    f"/tiles/attacks/{PESHAWAR_Z7.z}/{PESHAWAR_Z7.x}/{PESHAWAR_Z7.y}.png?from=2017",
    f"/tiles/districts/{PESHAWAR_Z7.z}/{PESHAWAR_Z7.x}/{PESHAWAR_Z7.y}.mvt",
    "/tiles/attacks.json?actor=ISKP",
]


@pytest.fixture(scope="module")
def clients(rich_dir, db_url) -> dict:
    return {
        "files": create_app({"STORE": str(rich_dir), "TESTING": True}).test_client(),
        "postgis": create_app({"STORE": db_url, "TESTING": True}).test_client(),
    }


def _comparable(response) -> tuple:
    body = response.get_data()
    if response.mimetype in ("application/json", "application/geo+json") and body:
        doc = orjson.loads(body)
        if isinstance(doc, dict):  # the moment of the answer, which two requests may not share
            doc.pop("timeStamp", None)
            if isinstance(doc.get("metadata"), dict):
                doc["metadata"].pop("generated_at", None)
        body = orjson.dumps(doc)
    return response.status_code, response.mimetype, response.headers.get("ETag"), body


@pytest.mark.parametrize("url", SERVED)
def test_the_app_serves_the_same_from_both_backends(clients, url):
    on_files = _comparable(clients["files"].get(url))
    on_database = _comparable(clients["postgis"].get(url))
    assert on_database == on_files


@pytest.mark.parametrize("path", ["/download/attacks.geojson", "/download/attacks.csv"])
def test_a_whole_layer_is_read_from_the_database_once_per_version(
    db_url, clients, tmp_path, monkeypatch, path
):
    from app import downloads as views

    client = create_app(
        {"STORE": db_url, "TESTING": True, "DOWNLOAD_CACHE_DIR": str(tmp_path)}
    ).test_client()
    with client.get(path) as first:  # streamed from the database, kept meanwhile
        assert first.status_code == 200 and "Content-Length" not in first.headers
        body = first.get_data()
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("kpmap-attacks-")]) == 1
    with client.get(path, headers={"Range": "bytes=0-0"}) as cut:  # kept, not written again
        assert cut.status_code == 206
    # The next downloads are sent from the kept file, the database not read for them.
    monkeypatch.setattr(views, "geojson_chunks", None)
    monkeypatch.setattr(views, "csv_chunks", None)
    with client.get(path) as again:
        assert again.headers["Content-Length"] == str(len(body))
        assert again.get_data() == body
        assert _comparable(again)[1:] == _comparable(clients["files"].get(path))[1:]
    with client.get(path, headers={"Range": "bytes=10-19"}) as part:
        assert part.status_code == 206 and part.get_data() == body[10:20]


@pytest.mark.parametrize("backend", ["files", "postgis"])
def test_what_each_backend_serves_is_right(clients, fs, backend):
    client = clients[backend]
    page = client.get(
        "/ogc/collections/attacks/items?bbox=70,33,72,35&datetime=2016-01-01/2019-12-31&limit=50"
    ).get_json()
    expected = fs.select("attacks", bbox=(70, 33, 72, 35), start="2016-01-01", end="2019-12-31")
    assert page["numberMatched"] + page["withheld"]["count"] == len(expected) > 50
    assert page["numberReturned"] == len(page["features"]) == 50
    assert client.get("/ogc/collections/attacks/items/acled-T1").status_code == 403
    tile = client.get(f"/tiles/attacks/{PESHAWAR_Z12.z}/{PESHAWAR_Z12.x}/{PESHAWAR_Z12.y}.mvt")
    decoded = mapbox_vector_tile.decode(tile.get_data())
    assert decoded["attacks"]["features"]
    png = Image.open(io.BytesIO(client.get("/tiles/districts/7/89/52.png").get_data()))
    assert png.size == (256, 256)
    download = client.get("/download/attacks.geojson?actor=TTP").get_json()
    assert download["metadata"]["count"] == len(download["features"]) > 100


@pytest.mark.parametrize("licensed", ["", "acled,gtd"])
def test_a_tiles_points_are_read_in_one_query(monkeypatch, db_url, fs, licensed):
    """A tile's points are read from the database in one query (geo.tiles asks the layer to
    prefetch them), not one a point, and make the same tile as the files."""
    from geo import tiles
    from geo.store import postgis
    from geo.tiles.grid import Tile

    monkeypatch.setattr(postgis, "SMALL_LAYER", 10)  # the attacks read as a large layer's are
    db = open_store(db_url)
    policy = RowPolicy.from_setting(licensed)
    on_files, on_database = tiles.Tiler(fs, policy), tiles.Tiler(db, policy)
    on_database.attack_index()
    layer = db.layer("attacks")
    queries = []
    original = layer._query
    monkeypatch.setattr(layer, "_query", lambda *a: queries.append(a) or original(*a))
    # The busiest tile at zoom 12, and Peshawar's (the withheld ACLED record: a cluster)
    xy = fs.layer("attacks").points()
    cells = [mercantile.tile(lon, lat, 12)[:2] for lon, lat in xy.tolist()]
    busiest = max(set(cells), key=cells.count)
    addresses = [
        Tile(12, *busiest),
        *(Tile(z, *mercantile.tile(*PESHAWAR, z)[:2]) for z in (12, 14)),
    ]
    for tile in addresses:
        queries.clear()
        made = on_database.vector_tile("attacks", tile)
        assert made == on_files.vector_tile("attacks", tile)
        shown = mapbox_vector_tile.decode(made)["attacks"]["features"]
        points = [f for f in shown if not f["properties"]["cluster"]]
        assert len(queries) == (1 if points else 0)
    busy = on_database.vector_tile("attacks", addresses[0])
    assert len(mapbox_vector_tile.decode(busy)["attacks"]["features"]) > 3


@pytest.mark.parametrize("licensed", ["", "acled,gtd"])
@pytest.mark.parametrize("offset", [0, 30])
def test_an_items_page_is_read_in_one_query_after_its_selection(
    monkeypatch, db_url, fs, licensed, offset
):
    """An OGC items page costs two queries, whatever its size: the selection, then the page's
    features straight from their rows (geo.ogc.items asks the layer to prefetch them), not a
    walk that reads ahead a block at a time; and it says what the files say."""
    from geo.ogc import items as core
    from geo.store import postgis

    monkeypatch.setattr(postgis, "SMALL_LAYER", 10)  # the attacks read as a large layer's are
    monkeypatch.setattr(postgis, "FIRST_READ", 4)  # a walk would read 4, 12, 36, ...
    db = open_store(db_url)
    policy = RowPolicy.from_setting(licensed)
    layer = db.layer("attacks")
    queries = []
    original = layer._query
    monkeypatch.setattr(layer, "_query", lambda *a: queries.append(a) or original(*a))
    pairs = [("bbox", "70,33,72,35"), ("datetime", "2016-01-01/2019-12-31")]
    pairs += [("limit", "60"), ("offset", str(offset))]
    policy.present(layer)  # the datasets' column, read once a version
    queries.clear()
    answers = []
    for store in (fs, db):
        query = core.items_query(store, "attacks", pairs, None)
        doc = orjson.loads(core.items(store, policy, query, "http://x/ogc").body)
        doc.pop("timeStamp")
        answers.append(doc)
    assert answers[0] == answers[1]
    assert answers[1]["numberReturned"] == 60
    assert len(queries) == 2
    assert "ctid" in queries[1][0].as_string()  # by where the rows are, not by position


# --- noticing a new version: LISTEN/NOTIFY, or the version row on a replica --------------


def _wait(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _make_current(url: str, version: str, notify: bool = True) -> None:
    """What another process's publish of an older folder does (a roll-back)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE kpmap.current SET version = %s", (version,))
        if notify:
            conn.execute("SELECT pg_notify('kpmap_version', %s)", (version,))


@pytest.fixture
def two_versions(pg, store_dir, rich_dir, request) -> tuple[str, str, str]:
    from geo.store import postgis

    url = pg.create_database(request.node.name.replace("[", "_").rstrip("]")[:60])
    first, second = publish(store_dir, url), publish(rich_dir, url)
    yield url, first.version, second.version
    postgis.close_pools(url)


def test_a_server_hears_of_a_new_version_without_asking(monkeypatch, two_versions):
    from geo.store import postgis

    url, first, second = two_versions
    assert current_version(url) == second
    listener = postgis._listener(url)
    _wait(listener.listening.is_set)

    def refuse(*args):
        raise AssertionError("the database was asked")

    monkeypatch.setattr(postgis, "pool", refuse)  # from now on, no query for the version
    assert current_version(url) == second
    _make_current(url, first)
    _wait(lambda: current_version(url) == first)


def test_a_listener_that_lost_its_connection_asks_until_it_listens_again(two_versions):
    import psycopg

    from geo.store import postgis

    url, first, second = two_versions
    listener = postgis._listener(url)
    _wait(listener.listening.is_set)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            (postgis.LISTENER_NAME,),
        )
    _wait(lambda: not listener.listening.is_set())
    _make_current(url, first, notify=False)  # unheard: the row is read meanwhile
    assert current_version(url) == first
    _wait(listener.listening.is_set)  # reconnected (after a second)
    _make_current(url, second)
    _wait(lambda: current_version(url) == second)


def test_a_server_on_a_read_replica_reads_the_version_row(pg, store_dir, rich_dir):
    """NOTIFY does not reach a standby: there each check reads the (replicated) row. The app
    machines of a deployment read a replica (docs/store.md)."""
    from geo.store import postgis

    url = pg.create_database("replicated")
    first = publish(store_dir, url)
    standby = pg.start_standby()
    replica = standby.url("replicated")
    try:
        _wait(lambda: current_version(replica) == first.version)
        _wait(lambda: postgis._listener(replica).standby)
        store = open_store(replica)
        assert store.version == first.version
        assert len(store.select("attacks", bbox=(70, 33, 72, 35), start="2016")) > 0
        second = publish(rich_dir, url)
        _wait(lambda: current_version(replica) == second.version)
        assert open_store(replica).query("attacks", actor="TTP")
        with pytest.raises(PublishError, match="read-only"):
            publish(store_dir, replica)
    finally:
        postgis.close_pools(replica)
        standby.stop()


# --- a new version published while serving ---------------------------------------------------


@pytest.fixture(scope="module")
def newer_dir(tmp_path_factory, rich_dir, store) -> Path:
    """rich_dir plus 300 more synthetic attacks (another version)."""
    folder = tmp_path_factory.mktemp("pg-newer") / "store"
    shutil.copytree(rich_dir, folder)
    more = synthetic_attacks(300, store.query("districts"), seed=8)
    for record in more:
        record["id"] = record["id"].replace("synthetic-", "synthetic-b")
    build_with_imports(folder, tmp_path_factory.mktemp("pg-newer-cache"), more)
    return folder


def _answer(store: Store) -> tuple:
    """What a reader sees: its version, a count from the manifest and from a query, and the
    features of the query's first page."""
    positions = store.select("attacks", bbox=(70, 32, 73, 36), start="2016")
    layer = store.layer("attacks")
    page = [layer.feature_bytes(i) for i in positions[:30].tolist()]
    return (
        store.version,
        store.manifest["layers"]["attacks"]["count"],
        len(layer),
        positions.tolist(),
        page,
    )


def test_readers_see_one_version_or_the_other_while_one_is_published(pg, rich_dir, newer_dir):
    url = pg.create_database("switching")
    old, new = Store.open(rich_dir), Store.open(newer_dir)
    expected = {s.version: _answer(s) for s in (old, new)}
    assert len(expected) == 2 and expected[old.version] != expected[new.version]
    publish(rich_dir, url)
    seen: list[str] = []
    wrong: list[str] = []
    stop = threading.Event()

    def read() -> None:
        # As a server does between requests: ask which version is current, open it when it
        # changed, and answer from the store it holds.
        store = open_store(url)
        while not stop.is_set():
            if current_version(url) != store.version:
                store = open_store(url)
            answer = _answer(store)
            seen.append(answer[0])
            if answer != expected.get(answer[0]):
                wrong.append(answer[0])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        while len(seen) < 5:
            time.sleep(0.05)
        publish(newer_dir, url)
        while seen.count(new.version) < 5:
            assert reader.is_alive()
            time.sleep(0.05)
    finally:
        stop.set()
        reader.join(timeout=60)
    assert not wrong
    assert seen[0] == old.version and seen[-1] == new.version
    # once the new version is seen, the reader never goes back to the old one
    assert old.version not in seen[seen.index(new.version) :]
