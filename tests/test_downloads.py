"""geo/downloads.py (the downloads every build prepares, and what a download says of itself) and
how app/downloads.py sends them: the same bytes as when they are written on request, with their
length, byte ranges and gzip, and never a restricted row."""

import csv
import gzip
import io
import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyogrio
import pytest
import shapely

from app import create_app
from geo import downloads
from geo.errors import BuildError, StoreCorrupt
from geo.export import Columns, csv_chunks, geojson_chunks, geojson_head, geopackage_rows
from geo.licences import RowPolicy
from geo.store import Store
from tests.helpers import RESTRICTED_IDS, build_licence_store

PREPARED = (
    "kpmap.gpkg",
    "attacks.csv",
    "attacks.csv-rows.npy",
    "attacks.csv.deflate",
    "attacks.geojson.deflate",
)


def timeless(body: bytes) -> dict:
    """A GeoJSON download without its `generated_at` (the one part two writes differ in)."""
    doc = orjson.loads(body)
    doc["metadata"].pop("generated_at")
    return doc


def app_over(store_dir: Path, tmp_path: Path, **config):
    return create_app({"STORE": str(store_dir), "DOWNLOAD_CACHE_DIR": str(tmp_path), **config})


@pytest.fixture(scope="module")
def unprepared_dir(store_dir, tmp_path_factory) -> Path:
    """The session's store as an older kpmap built it: the same files, no `downloads`."""
    folder = tmp_path_factory.mktemp("unprepared") / "store"
    shutil.copytree(store_dir.resolve(), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["downloads"]
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


@pytest.fixture(scope="module")
def licence_dir(tmp_path_factory, store) -> Path:
    return build_licence_store(tmp_path_factory, store)


# --- the build ------------------------------------------------------------------------------------


def test_the_build_prepares_them_and_the_manifest_checks_them(store_dir, store):
    entry = store.manifest["downloads"]
    assert entry["format"] == downloads.FORMAT and entry["gpkg"]["withholds"] == []
    for name in PREPARED:
        assert (store_dir / name).is_file()
        assert store.manifest["files"][name]["bytes"] == (store_dir / name).stat().st_size
    csv_entry = entry["csv"]["attacks"]
    rows = np.load(store_dir / csv_entry["rows"])
    assert len(rows) == len(store.layer("attacks")) and rows[0, 0] == csv_entry["header"]


def test_a_damaged_prepared_file_is_refused_like_any_other(store_dir, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(store_dir.resolve(), copy)
    with open(copy / "attacks.csv", "r+b") as f:
        f.seek(200)
        f.write(b"=HYPERLINK(1)")
    with pytest.raises(StoreCorrupt, match="attacks.csv in .* is damaged"):
        Store.open(copy)


def test_the_prepared_csv_is_the_csv_written_row_by_row(store_dir, store):
    layer = store.layer("attacks")
    sources = store.manifest["layers"]["attacks"]["sources"]
    credits = {s["dataset"]: s["attribution"] for s in sources if "dataset" in s}
    written = b"".join(csv_chunks(layer, np.arange(len(layer)), attribution=credits))
    assert (store_dir / "attacks.csv").read_bytes() == written
    prepared = downloads.Prepared.open(store)
    rows = prepared.csv["attacks"]
    for positions in ([], [0], [1, 2, 4], list(range(1, len(layer)))):
        chosen = np.array(positions, dtype=np.int64)
        assert rows.file(chosen).readall() == b"".join(
            csv_chunks(layer, chosen, attribution=credits)
        )
    body = zlib.decompress(bytes(rows.body.deflate), -zlib.MAX_WBITS)
    assert body == written[rows.header :] and zlib.crc32(body) == rows.body.crc32


def test_the_prepared_geojson_body_is_the_layers_features(store):
    layer = store.layer("attacks")
    prepared = downloads.Prepared.open(store).geojson["attacks"]
    everything = b"".join(geojson_chunks(layer, np.arange(len(layer)), {"x": 1}))
    body = zlib.decompress(bytes(prepared.deflate), -zlib.MAX_WBITS)
    assert everything == geojson_head({"x": 1}) + body and prepared.bytes == len(body)


def test_no_prepared_downloads_for_another_version(store_dir, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(store_dir.resolve(), copy)
    opened = Store.open(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["built_at"] = "2001-01-01T00:00:00+00:00"  # a newer build put another there
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert downloads.Prepared.open(opened) is None


# --- sent by the app ------------------------------------------------------------------------------


def test_the_whole_geojson_is_the_same_as_written_on_request(store_dir, unprepared_dir, tmp_path):
    fast = app_over(store_dir, tmp_path / "a").test_client()
    slow = app_over(unprepared_dir, tmp_path / "b").test_client()
    for url in ("/download/attacks.geojson", "/download/attacks.geojson?actor=TTP,ISKP"):
        got, want = fast.get(url), slow.get(url)
        assert timeless(got.data) == timeless(want.data)
        assert len(got.data) == len(want.data) == int(got.headers["Content-Length"])
        assert got.headers["Accept-Ranges"] == "bytes"
        head = fast.head(url)
        assert head.headers["Content-Length"] == got.headers["Content-Length"]


def test_the_whole_csv_is_the_same_as_written_on_request(store_dir, unprepared_dir, tmp_path):
    fast = app_over(store_dir, tmp_path / "a").test_client()
    slow = app_over(unprepared_dir, tmp_path / "b").test_client()
    for url in ("/download/attacks.csv", "/download/attacks.csv?district=bajaur&from=2020"):
        got, want = fast.get(url), slow.get(url)
        assert got.data == want.data and got.headers["Kpmap-Withheld"] == "0"
        assert int(got.headers["Content-Length"]) == len(got.data)


@pytest.mark.parametrize("url", ["/download/attacks.geojson", "/download/attacks.csv"])
def test_a_whole_layer_gzip_is_the_prepared_body_behind_a_fresh_head(client, url):
    plain_body = client.get(url).data
    response = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert int(response.headers["Content-Length"]) == len(response.data)
    assert "Accept-Ranges" not in response.headers and "Accept-Encoding" in response.headers["Vary"]
    body = gzip.decompress(response.data)
    if url.endswith(".geojson"):
        assert timeless(body) == timeless(plain_body)
    else:
        assert body == plain_body
    refused = client.get(url, headers={"Accept-Encoding": "gzip;q=0, br"})
    assert "Content-Encoding" not in refused.headers and len(refused.data) == len(plain_body)


def test_ranges_are_answered_without_writing_a_file(store_dir, tmp_path):
    client = app_over(store_dir, tmp_path).test_client()
    for url in ("/download/attacks.geojson", "/download/attacks.csv?actor=TTP"):
        full = client.get(url).data
        part = client.get(url, headers={"Range": "bytes=300-"})
        assert part.status_code == 206 and len(part.data) == len(full) - 300
        assert part.headers["Content-Range"] == f"bytes 300-{len(full) - 1}/{len(full)}"
    assert not list(tmp_path.glob("kpmap-*")) and not list(tmp_path.glob("*.geojson"))


def test_the_whole_store_geopackage_is_the_builds(store_dir, tmp_path, monkeypatch):
    from app import downloads as views

    written = []
    monkeypatch.setattr(views, "write_geopackage", lambda *a: written.append(a))
    client = app_over(store_dir, tmp_path).test_client()
    head = client.head("/download/kpmap.gpkg")
    body = client.get("/download/kpmap.gpkg").data
    assert body == (store_dir / "kpmap.gpkg").read_bytes() and not written
    assert int(head.headers["Content-Length"]) == len(body)
    part = client.get("/download/kpmap.gpkg", headers={"Range": "bytes=0-15"})
    assert part.status_code == 206 and part.data == b"SQLite format 3\x00"


def test_the_builds_geopackage_is_the_one_the_app_would_write(store_dir, unprepared_dir, tmp_path):
    prepared, rendered = tmp_path / "prepared.gpkg", tmp_path / "rendered.gpkg"
    for folder, path in ((store_dir, prepared), (unprepared_dir, rendered)):
        client = app_over(folder, tmp_path / path.stem).test_client()
        path.write_bytes(client.get("/download/kpmap.gpkg").data)
    for layer in ("districts", "tehsils", "durand_line", "attacks", "countries"):
        a = pyogrio.read_dataframe(prepared, layer=layer)
        b = pyogrio.read_dataframe(rendered, layer=layer)
        assert a.equals(b), layer
        meta_a = pyogrio.read_info(prepared, layer=layer)["layer_metadata"]
        meta_b = pyogrio.read_info(rendered, layer=layer)["layer_metadata"]
        meta_a.pop("kpmap_generated_at"), meta_b.pop("kpmap_generated_at")
        assert meta_a == meta_b, layer


# --- what the licences withhold ------------------------------------------------------------------


def test_a_store_with_restricted_rows_never_sends_its_whole_layer(licence_dir, tmp_path):
    client = app_over(licence_dir, tmp_path).test_client()
    for headers in ({}, {"Accept-Encoding": "gzip"}):
        response = client.get("/download/attacks.geojson", headers=headers)
        body = gzip.decompress(response.data) if headers else response.data
        ids = {f["id"] for f in orjson.loads(body)["features"]}
        assert ids and not ids & RESTRICTED_IDS
        response = client.get("/download/attacks.csv", headers=headers)
        body = gzip.decompress(response.data) if headers else response.data
        rows = {r["id"] for r in csv.DictReader(io.StringIO(body.decode()))}
        assert rows and not rows & RESTRICTED_IDS and response.headers["Kpmap-Withheld"] == "3"
    # the build's GeoPackage withholds them too (the build's setting was the default)
    assert json.loads((licence_dir / "manifest.json").read_text())["downloads"]["gpkg"][
        "withholds"
    ] == ["acled", "gtd"]
    path = tmp_path / "kpmap.gpkg"
    path.write_bytes(client.get("/download/kpmap.gpkg").data)
    assert not set(pyogrio.read_dataframe(path, layer="attacks")["id"]) & RESTRICTED_IDS


def test_a_licensed_server_writes_its_own_geopackage(licence_dir, tmp_path, monkeypatch):
    from app import downloads as views

    written = []
    real = views.write_geopackage
    monkeypatch.setattr(views, "write_geopackage", lambda *a: written.append(1) or real(*a))
    client = app_over(licence_dir, tmp_path, LICENSED_DATASETS="acled,gtd").test_client()
    path = tmp_path / "kpmap.gpkg"
    path.write_bytes(client.get("/download/kpmap.gpkg").data)
    assert written == [1]  # the build's withholds what this server hands out
    assert RESTRICTED_IDS <= set(pyogrio.read_dataframe(path, layer="attacks")["id"])
    whole = client.get("/download/attacks.csv", headers={"Accept-Encoding": "gzip"})
    rows = {r["id"] for r in csv.DictReader(io.StringIO(gzip.decompress(whole.data).decode()))}
    assert RESTRICTED_IDS <= rows and whole.headers["Kpmap-Withheld"] == "0"


def _copied(store_dir: Path, tmp_path: Path) -> tuple[Path, dict]:
    """A copy of a built store to prepare again, and its manifest."""
    copy = tmp_path / "store"
    shutil.copytree(store_dir.resolve(), copy)
    return copy, json.loads((copy / "manifest.json").read_text())


def test_the_build_takes_the_licence_setting_of_its_environment(monkeypatch, licence_dir, tmp_path):
    from app import downloads as views

    copy, manifest = _copied(licence_dir, tmp_path)
    monkeypatch.setenv("KPMAP_LICENSED_DATASETS", "acled,gtd")
    assert downloads.prepare(copy, manifest)["downloads"]["gpkg"]["withholds"] == []
    written = []
    monkeypatch.setattr(views, "write_geopackage", lambda *a: written.append(a))
    client = app_over(copy, tmp_path / "cache", LICENSED_DATASETS="acled,gtd").test_client()
    assert client.get("/download/kpmap.gpkg").status_code == 200 and not written
    # a setting naming no dataset: the safe default (every restricted dataset withheld), said
    monkeypatch.setenv("KPMAP_LICENSED_DATASETS", "nonsense")
    manifest = json.loads((copy / "manifest.json").read_text())
    assert downloads.prepare(copy, manifest)["downloads"]["gpkg"]["withholds"] == ["acled", "gtd"]
    Store.open(copy)  # the rewritten manifest records every file as it now is


def test_a_large_stores_geopackage_written_by_a_process_of_its_own_is_the_same(
    monkeypatch, licence_dir, tmp_path
):
    copy, manifest = _copied(licence_dir, tmp_path)
    monkeypatch.setattr(downloads, "SEPARATE_GEOPACKAGE_FROM", 0)
    monkeypatch.setattr(downloads, "CSV_BATCH", 3)  # the attacks are fed in several batches
    monkeypatch.setenv("KPMAP_LICENSED_DATASETS", "acled,gtd")  # the child reads it too
    downloads.prepare(copy, manifest)
    inline = licence_dir / "kpmap.gpkg"  # the build's, written in its own process
    for layer in ("districts", "tehsils", "durand_line", "attacks", "countries"):
        a = pyogrio.read_dataframe(copy / "kpmap.gpkg", layer=layer)
        b = pyogrio.read_dataframe(inline, layer=layer)
        if layer == "attacks":  # the inline one withholds what the licences did not grant
            assert set(a["id"]) == set(b["id"]) | RESTRICTED_IDS
            a = a[~a["id"].isin(RESTRICTED_IDS)].reset_index(drop=True)
        assert a.equals(b), layer
        assert pyogrio.read_info(copy / "kpmap.gpkg", layer=layer)["fields"].tolist() == (
            pyogrio.read_info(inline, layer=layer)["fields"].tolist()
        )
    Store.open(copy)  # recorded in the manifest like the rest


def test_a_geopackage_fed_other_rows_than_the_licences_hand_out_is_refused(licence_dir, tmp_path):
    copy, _ = _copied(licence_dir, tmp_path)
    store = Store.open(copy)
    layer = store.layer("attacks")
    one = np.arange(1)  # every row may be handed out, and one is sent
    stream = io.BytesIO()
    batch = geopackage_rows(layer, one, Columns.of(layer, one))
    with pa.ipc.new_stream(stream, batch.schema) as writer:
        writer.write_batch(batch)
    stream.seek(0)
    policy = RowPolicy.from_setting("acled,gtd")
    with pytest.raises(BuildError, match=f"attacks was fed 1 rows, not {len(layer)}"):
        downloads.write_store_geopackage(copy, store, policy, fed=stream)


def test_a_large_layers_csv_made_in_two_processes_is_the_csv_made_in_one(
    monkeypatch, licence_dir, tmp_path
):
    copy, manifest = _copied(licence_dir, tmp_path)
    monkeypatch.setattr(downloads, "SEPARATE_GEOPACKAGE_FROM", 0)
    monkeypatch.setattr(downloads, "CSV_BATCH", 2)  # odd batches made by the _CsvProcess
    made = []
    real = downloads._CsvProcess.next
    monkeypatch.setattr(downloads._CsvProcess, "next", lambda self: made.append(1) or real(self))
    downloads.prepare(copy, manifest)
    batches = -(-len(Store.open(copy).layer("attacks")) // 2)
    assert made and len(made) == batches // 2  # every other batch of two
    for name in ("attacks.csv", "attacks.csv.deflate"):
        assert (copy / name).read_bytes() == (licence_dir / name).read_bytes(), name
    rows = np.load(copy / "attacks.csv-rows.npy")
    assert np.array_equal(rows, np.load(licence_dir / "attacks.csv-rows.npy"))


def _rebuilt_with_early_csv(monkeypatch, licence_dir: Path, tmp_path: Path) -> tuple[Path, list]:
    """The licence store rebuilt as a large one: its CSV begun as its attacks are written, a
    chunk of three at a time; and a list of the frames the build took from that."""
    from geo.build import attacks
    from geo.build.pipeline import build_store
    from tests.helpers import offline_mirror

    copy, _ = _copied(licence_dir, tmp_path)
    monkeypatch.setattr(downloads, "SEPARATE_GEOPACKAGE_FROM", 0)
    monkeypatch.setattr(attacks, "CHUNK", 3)
    taken = []
    real = downloads.EarlyCsv.next
    monkeypatch.setattr(downloads.EarlyCsv, "next", lambda self: taken.append(1) or real(self))
    build_store(copy, cache=tmp_path / "cache", mirror=offline_mirror())
    return copy.resolve(), taken


def _assert_prepared_alike(store: Path, tmp_path: Path, monkeypatch) -> None:
    """The store's prepared downloads are those `prepare` writes alone, in one process."""
    alone, manifest = _copied(store, tmp_path / "alone")
    monkeypatch.setattr(downloads, "SEPARATE_GEOPACKAGE_FROM", 10**9)
    downloads.prepare(alone, manifest)
    for name in ("attacks.csv", "attacks.csv.deflate", "attacks.geojson.deflate"):
        assert (store / name).read_bytes() == (alone / name).read_bytes(), name
    rows = np.load(store / "attacks.csv-rows.npy")
    assert np.array_equal(rows, np.load(alone / "attacks.csv-rows.npy"))
    for layer in ("districts", "attacks", "countries"):
        a = pyogrio.read_dataframe(store / "kpmap.gpkg", layer=layer)
        assert a.equals(pyogrio.read_dataframe(alone / "kpmap.gpkg", layer=layer)), layer


def test_a_large_layers_csv_begun_as_it_is_written_is_the_csv_made_after(
    monkeypatch, licence_dir, tmp_path
):
    store, taken = _rebuilt_with_early_csv(monkeypatch, licence_dir, tmp_path)
    chunks = -(-len(Store.open(store).layer("attacks")) // 3)
    assert taken and len(taken) == sum(downloads.EarlyCsv.takes(k) for k in range(chunks))
    _assert_prepared_alike(store, tmp_path, monkeypatch)


def test_a_csv_begun_with_other_credits_than_the_manifests_is_not_used(
    monkeypatch, licence_dir, tmp_path
):
    from geo.build import attacks

    # credits foreseen wrong: every dataset's access date the build day, none its release
    monkeypatch.setattr(attacks.AttackLayer, "releases", lambda self: {"acled": {""}})
    store, taken = _rebuilt_with_early_csv(monkeypatch, licence_dir, tmp_path)
    assert not taken
    _assert_prepared_alike(store, tmp_path, monkeypatch)


def test_a_csv_begun_by_a_process_that_fails_fails_the_build_and_changes_nothing(
    monkeypatch, licence_dir, tmp_path
):
    monkeypatch.setattr(downloads.EarlyCsv, "CODE", "import sys; sys.exit('no room left')")
    before = (licence_dir / "manifest.json").read_bytes()
    with pytest.raises(BuildError, match="making the CSV failed .exit 1.: no room left"):
        _rebuilt_with_early_csv(monkeypatch, licence_dir, tmp_path)
    assert (tmp_path / "store" / "manifest.json").read_bytes() == before


def test_a_csv_process_that_fails_fails_the_preparation_and_says_why(
    monkeypatch, store_dir, tmp_path
):
    copy, manifest = _copied(store_dir, tmp_path)
    monkeypatch.setattr(downloads, "SEPARATE_GEOPACKAGE_FROM", 0)
    monkeypatch.setattr(downloads, "CSV_BATCH", 2)
    monkeypatch.setattr(downloads._CsvProcess, "CODE", "import sys; sys.exit('no room left')")
    with pytest.raises(BuildError, match="making the CSV failed .exit 1.: no room left"):
        downloads.prepare(copy, manifest)


def test_a_geopackage_process_that_fails_fails_the_preparation_and_says_why(
    monkeypatch, store_dir, tmp_path
):
    copy, manifest = _copied(store_dir, tmp_path)
    monkeypatch.setattr(downloads, "SEPARATE_GEOPACKAGE_FROM", 0)
    del manifest["files"]["kpmap.gpkg"]  # as the build has it before preparing
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (copy / "kpmap.gpkg").unlink()
    (copy / "kpmap.gpkg").mkdir()  # nothing can be written there
    with pytest.raises(BuildError, match="writing kpmap.gpkg failed"):
        downloads.prepare(copy, manifest)


# --- the CSV made a column at a time is the CSV made a cell at a time ---------------------------


def reference_csv(features: list[dict], credits: dict[str, str]) -> bytes:
    """The CSV as geo.export wrote it before it worked by columns: row by row, cell by cell."""
    from geo.export import csv_columns, flatten_sources, neutralise
    from geo.store.schemas import LAYERS

    def cell(value):
        if type(value) is str:
            return neutralise(value)
        if value is None:
            return ""
        if type(value) is bool:
            return "true" if value else "false"
        if isinstance(value, int | float):
            return value
        if isinstance(value, list | dict):
            value = json.dumps(value, ensure_ascii=False)
        return neutralise(str(value))

    columns = csv_columns(LAYERS["attacks"])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*columns, "attribution"])
    for feature in features:
        props = feature["properties"]
        row = [cell(feature["id"]), *feature["geometry"]["coordinates"][:2]]
        for column in columns[3:]:
            value = props.get(column)
            row.append(cell(flatten_sources(value or []) if column == "sources" else value))
        origins = str(props.get("origins") or "").split(",")
        row.append(cell("; ".join(credits[o] for o in origins if o in credits)))
        writer.writerow(row)
    return out.getvalue().encode("utf-8")


class Crafted:
    """A layer of hand-made attacks (the Layer protocol's feature_bytes is all CSV needs)."""

    def __init__(self, features):
        from geo.store.schemas import LAYERS

        self.schema = LAYERS["attacks"]
        self.features = features

    def feature_bytes(self, i):
        return orjson.dumps(self.features[i])


HOSTILE = [
    '=HYPERLINK("http://evil","x")',
    "+1",
    "-2",
    "@SUM(A1)",
    "\tTAB",
    "\rCR",
    'say "hi", then\nleave',
    "Peshawar – پشاور",
    "",
    "plain",
]


def hostile_features(count: int) -> list[dict]:
    """Attacks whose cells try every kind of value, formulas and quoting in every column."""
    from geo.store.schemas import LAYERS

    rng = np.random.default_rng(15)
    values = [*HOSTILE, None, True, False, 0, -1, 2.5, 1e-05, 12345678901234567890,
              [], ["=x", 1], {"side_a": 3, "note": "@y"}, [{"id": "-z"}]]  # fmt: skip
    features = []
    for i in range(count):
        properties = {}
        for name in LAYERS["attacks"].properties:
            if name == "sources":  # a list of citations, or nothing
                properties[name] = [
                    {"publication": str(rng.choice(HOSTILE)), "title": "t", "date": "", "url": ""}
                ] * int(rng.integers(0, 3))
            elif rng.random() < 0.7:  # most columns hold one kind of value, some mix them
                properties[name] = values[(i * 7 + len(name)) % len(values)]
            else:
                properties[name] = values[int(rng.integers(0, len(values)))]
        properties["origins"] = str(rng.choice(["ucdp", "acled,ucdp", "", "authored"]))
        features.append(
            {
                "type": "Feature",
                "id": str(rng.choice(HOSTILE)) + str(i),
                "geometry": {"type": "Point", "coordinates": [float(rng.normal(71, 1)), 34.5]},
                "properties": properties,
            }
        )
    return features


CREDITS = {"ucdp": "=UCDP, CC BY 4.0", "acled": "ACLED; accessed 2025"}


def test_the_csv_by_columns_is_the_csv_by_cells():
    from geo.export import csv_chunks

    features = hostile_features(400)
    written = b"".join(csv_chunks(Crafted(features), np.arange(len(features)), CREDITS))
    assert written == reference_csv(features, CREDITS)


def test_columns_decoded_from_a_layer_file_are_the_columns_parsed():
    from geo.export import Columns, CsvWriter
    from geo.store.schemas import LAYERS

    schema = LAYERS["attacks"]
    features = hostile_features(300)
    features[0]["properties"].pop("flags")  # a property missing is null
    features[1]["properties"]["not_in_the_schema"] = [1]
    features[2]["properties"]["killed_best"] = 2**70  # orjson would make it a float
    text = b"[" + b",".join(orjson.dumps(f) for f in features[:2]) + b","
    text += json.dumps(features[2]).encode() + b","
    text += b",".join(orjson.dumps(f) for f in features[3:]) + b"]"
    parsed = Columns.parsed(schema, [json.loads(text)])
    for kind in (False, True):
        decoded = Columns.decoded(schema, text, json=kind)
        expected = Columns.parsed(schema, [json.loads(text)], json=kind)
        assert (decoded.ids, decoded.points) == (expected.ids, expected.points)
        for name, values in expected.properties.items():
            # the same values, of the same types (True is not 1, 1.0 not 1)
            got = decoded.properties[name]
            assert [(type(v), v) for v in got] == [(type(v), v) for v in values], name
        for name in ("sources", "parties", "flags", "linked", "deaths"):
            assert decoded.json_texts(name) == expected.json_texts(name)
    decoded = Columns.decoded(schema, text)
    writer = CsvWriter(schema, CREDITS)
    assert writer.lines(decoded) == writer.lines(parsed)
    reference = reference_csv(json.loads(text), CREDITS).decode("utf-8")
    assert writer.header + "".join(writer.lines(decoded)) == reference
    keep = np.arange(len(features)) % 3 == 0
    assert writer.lines(decoded.take(keep)) == writer.lines(parsed.take(keep))
    empty = Columns.decoded(schema, b"[]")
    assert (empty.ids, empty.properties["sources"]) == ([], [])


def test_columns_decoded_are_the_columns_parsed_in_every_layer():
    from geo.export import Columns
    from geo.store.schemas import LAYERS

    values = {list: [{"a": 1}], dict: {"b": [2, None]}, str: "x,y", int: 3, float: 2.5,
              bool: True, type(None): None}  # fmt: skip
    coordinates = {"Point": [71.5, 34.0], "LineString": [[70, 33], [71, 34.5]],
                   "Polygon": [[[70, 33], [71, 33], [71, 34], [70, 33]]]}  # fmt: skip
    for schema in LAYERS.values():
        kind = schema.geometry_types[0].removeprefix("Multi")
        features = [
            {
                "type": "Feature",
                "id": f"f{i}",
                "geometry": {"type": kind, "coordinates": coordinates[kind]},
                "properties": {
                    name: values[types[i % len(types)]] for name, types in schema.properties.items()
                },
            }
            for i in range(4)
        ]
        text = orjson.dumps(features)
        for kind_of_columns in (False, True):
            decoded = Columns.decoded(schema, text, json=kind_of_columns)
            parsed = Columns.parsed(schema, [features], json=kind_of_columns)
            assert (decoded.ids, decoded.points) == (parsed.ids, parsed.points), schema.name
            assert decoded.properties == parsed.properties, schema.name


def test_point_wkb_is_the_wkb_shapely_writes():
    from geo.export import point_wkb

    rng = np.random.default_rng(3)
    xy = np.column_stack([rng.uniform(-180, 180, 500), rng.uniform(-90, 90, 500)])
    xy[:4] = [[-0.0, 0.0], [1e-300, -1e300], [180.0, -90.0], [71.5, 34.0]]
    assert point_wkb(xy).to_pylist() == list(shapely.to_wkb(shapely.points(xy)))
    assert point_wkb(np.zeros((0, 2))).to_pylist() == []


def test_csv_texts_are_what_the_csv_module_writes():
    from geo.export import _csv_texts

    columns = [
        [1, 1.0, None, -0.0, 1e-05, 2**70, 3.5],  # 1 and 1.0 are one dict key, not one cell
        ["a", "a", "b,c", 'say "hi"', "x\ry", "line\nbreak", ""],
        ["same"] * 7,
        ["a", None, "a", "a,b", None, "a", "a"],
        ["x", 1, 2.5, None, "y,z", "x", "x"],
        [0.0, -0.0, 0.0, 0.0, -0.0, 0.0, 0.0],  # one key of a dict, two cells
        [2, None, 2, 2, 2, 2, 3],
        [1.5, 1.5, 1.5, None, 1.5, 1.5, 1.5],
        [1, 1.0, 1, 1, 1, 1, 1],
        # columns that begin with text or None, and hold more than text
        ["a", None, 1, 2.5, "a", "b", None],
        [None, "a", None, "b,c", None, None, "a"],
        [None, 1, None, 2, None, None, 1.0],
        ["x", [1], "x", "y", "x", "x", "x"],
    ]
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(zip(*columns, strict=True))
    texts = [_csv_texts(f"column{k}", column) for k, column in enumerate(columns)]
    joined = "".join(",".join(row) + "\r\n" for row in zip(*texts, strict=True))
    assert joined == out.getvalue()
