"""The build's fast paths (issue 15) give exactly what the plain ones give.

A store holds its imported records as lines (geo.build.records); a plain record's feature is
written from its line, checked by its types when read (geo.build.attacks.AttackLayer); the
index is built a chunk at a time (geo.store.files.IndexBuilder); features are checked at a
glance first (geo.store.schemas); border distances come from GEOS's prepared nearest points.
Each is compared here with the plain way on the same input.
"""

import copy
import json
from pathlib import Path

import numpy as np
import orjson
import pytest
import shapely
from shapely.geometry import LineString

from geo.border import BorderIndex
from geo.build import pipeline
from geo.build import records as records_module
from geo.build.records import Records
from geo.build.synth import synthetic_attacks
from geo.importers import district_locator, read_file
from geo.store import Store
from geo.store.files import IndexBuilder, index_arrays, index_file
from geo.store.schemas import LAYERS, validate_feature, validate_features
from tests.helpers import acled_records, offline_mirror, ucdp_records

FIXTURES = Path(__file__).parent / "fixtures" / "importers"
PROVIDER_FILES = [
    ("ucdp", "synthetic_GEDEvent_v25_1.csv"),
    ("acled", "synthetic_acled_export_2019.csv"),
    ("gtd", "synthetic_globalterrorismdb_0522dist.csv"),
]


@pytest.fixture(scope="module")
def imports(store) -> list[list[dict]]:
    """Records of every provider's layouts (SYNTHETIC fixtures), records linked across datasets,
    and SYNTHETIC benchmark records: what a store's imported.jsonl holds."""
    places = district_locator(store)
    batches = [read_file(fmt, FIXTURES / name, places).records for fmt, name in PROVIDER_FILES]
    districts = store.query("districts")
    linked = [  # datasets of their own: no release of the files above replaces them
        [{**r, "dataset": "acled-linked"} for r in acled_records()],
        [{**r, "dataset": "ucdp-linked"} for r in ucdp_records()],
    ]
    return [*linked, *batches, synthetic_attacks(300, districts, seed=7)]


def _files(store: Path) -> dict[str, bytes]:
    # The GeoPackage records when it was written (its metadata's generated_at); it is written
    # from the layer files compared here (tests/test_downloads.py checks it against them).
    return {
        p.name: p.read_bytes()
        for p in sorted(store.resolve().iterdir())
        if p.name not in ("manifest.json", "kpmap.gpkg") and not p.name.endswith(".npz")
    }


def _arrays(store: Path) -> dict[str, np.ndarray]:
    with np.load(store.resolve() / index_file("attacks.geojson")) as npz:
        return {k: npz[k] for k in npz.files}


def _manifest(store: Path) -> dict:
    manifest = orjson.loads((store.resolve() / "manifest.json").read_bytes())
    for key in ("built_at", "files"):
        manifest.pop(key)
    return manifest


@pytest.fixture(scope="module")
def both_ways(imports, build_cache, tmp_path_factory, request) -> tuple[Path, Path]:
    """One store built as users build it (imports kept, then rebuilt from imported.jsonl), and
    the same store rebuilt with every record parsed and made by attack_features."""
    fast = tmp_path_factory.mktemp("fast") / "store"
    for batch in imports:
        pipeline.build_store(fast, cache=build_cache, mirror=offline_mirror(), added=batch)
    pipeline.build_store(fast, cache=build_cache, mirror=offline_mirror())
    slow = tmp_path_factory.mktemp("slow") / "store"
    for batch in imports:
        pipeline.build_store(slow, cache=build_cache, mirror=offline_mirror(), added=batch)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Records, "_plain", lambda self, record: False)
        patch.setattr(records_module, "_decoded_plain", lambda lines: None)
        pipeline.build_store(slow, cache=build_cache, mirror=offline_mirror())
    return fast, slow


def test_features_written_from_lines_are_the_features_attack_features_makes(both_ways):
    fast, slow = both_ways
    store = Store.open(fast)
    attacks = store.layer("attacks")
    assert len(attacks) > 300
    assert {f["properties"]["origin"] for f in store.query("attacks")} >= {
        "acled",
        "gtd",
        "ucdp",
        "synthetic",
        "authored",
    }
    assert any(f["properties"]["linked"] for f in store.query("attacks"))
    assert _files(fast) == _files(slow)
    assert _manifest(fast) == _manifest(slow)
    fast_arrays, slow_arrays = _arrays(fast), _arrays(slow)
    assert fast_arrays.keys() == slow_arrays.keys()
    for key, array in fast_arrays.items():
        assert array.dtype == slow_arrays[key].dtype, key
        np.testing.assert_array_equal(array, slow_arrays[key], err_msg=key)


def test_the_index_built_in_chunks_is_the_index_built_at_once(both_ways):
    fast, _ = both_ways
    features = orjson.loads((fast / "attacks.geojson").read_bytes())["features"]
    schema = LAYERS["attacks"]
    whole = index_arrays(schema, features)
    builder = IndexBuilder(schema)
    for start in range(0, len(features), 7):
        builder.add(features[start : start + 7])
    parts = builder.arrays()
    saved = _arrays(fast)
    for key, array in whole.items():
        np.testing.assert_array_equal(parts[key], array, err_msg=key)
        np.testing.assert_array_equal(saved[key], array, err_msg=key)
        assert parts[key].dtype == array.dtype == saved[key].dtype
    assert IndexBuilder(schema).arrays().keys() == index_arrays(schema, []).keys()


def test_a_glance_finds_what_a_full_check_finds(both_ways):
    fast, _ = both_ways
    features = orjson.loads((fast / "attacks.geojson").read_bytes())["features"][:40]
    broken = copy.deepcopy(features)
    broken[1]["properties"]["killed_best"] = True  # a bool is no int
    broken[2]["geometry"]["coordinates"] = [float("nan"), 34.0]
    broken[3]["geometry"]["coordinates"] = [200.0, 34.0]
    del broken[4]["properties"]["deaths"]
    broken[5]["id"] = broken[4]["id"]
    broken[6]["properties"]["id"] = "another"
    broken[7]["properties"]["actor"] = ["TTP"]
    broken[8] = "not a feature"
    schema = LAYERS["attacks"]
    expected = []
    seen: set = set()
    for i, feat in enumerate(broken):
        found = validate_feature(feat, schema)
        fid = feat.get("id") if isinstance(feat, dict) else None
        if isinstance(fid, str):
            if fid in seen:
                found.append("duplicate id")
            seen.add(fid)
        where = f"feature #{i} ({fid!r})" if isinstance(feat, dict) else f"feature #{i}"
        expected += [f"{where}: {p}" for p in found]
    assert validate_features(features, schema) == []
    assert validate_features(broken, schema) == expected
    assert len(expected) >= 8


def test_an_invalid_imported_record_fails_the_build_with_the_full_checks_words(
    both_ways, build_cache, tmp_path
):
    fast, _ = both_ways
    store = tmp_path / "store"
    store.mkdir()
    for path in fast.resolve().iterdir():
        (store / path.name).write_bytes(path.read_bytes())
    lines = (store / "imported.jsonl").read_bytes().splitlines()
    record = orjson.loads(lines[0])
    record["killed_best"] = "3"
    lines[0] = orjson.dumps(record)
    (store / "imported.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (store / "manifest.json").unlink()  # an older store's: no hashes to check the change by
    with pytest.raises(pipeline.BuildError, match=r"property 'killed_best' is str, expected int"):
        pipeline.build_store(store, cache=build_cache, mirror=offline_mirror())


def test_lines_are_kept_byte_for_byte_or_encoded_as_orjson_would():
    record = {"id": "a", "origin": "synthetic", "lon": 71.0, "lat": 34.0, "geo_precision": 1}
    line = orjson.dumps(record)
    table = Records.from_lines([line + b"\n", b"\n", line + b"\r\n"])
    assert table.items == [line, line]
    # a file another kpmap wrote otherwise (json.dumps' spaces): its lines are encoded again
    table = Records.from_lines([json.dumps(record).encode() + b"\n"])
    assert table.items == [line]
    table.set_place(0, ("peshawar", None, None))
    placed = {**record, "district": "peshawar", "tehsil": None, "border_sliver_km": None}
    assert table.items[0] == orjson.dumps(placed)
    before = table.items[0]
    table.set_place(0, ("peshawar", None, None))
    assert table.items[0] is before  # unchanged: not encoded again
    table.set_place(0, ("peshawar", None, 0))  # 0 is written otherwise than None
    assert orjson.loads(table.items[0])["border_sliver_km"] == 0


def _typed(value):
    """A value with the type of every part, to compare columns by (0 is not 0.0, nor False)."""
    if isinstance(value, (tuple, list)):
        return type(value).__name__, tuple(map(_typed, value))
    if isinstance(value, frozenset):
        return "frozenset", tuple(sorted(map(repr, value)))
    return type(value).__name__, "ABSENT" if value is records_module.ABSENT else value


def _columns(table: Records) -> dict:
    return {name: list(map(_typed, getattr(table, name))) for name in records_module.COLUMNS}


def test_lines_decoded_a_chunk_at_a_time_give_the_columns_of_records_parsed_one_by_one(
    both_ways, monkeypatch
):
    from geo.build.attacks import upgrade

    fast, _ = both_ways
    lines = (fast / "imported.jsonl").read_bytes().splitlines()
    record = orjson.loads(next(line for line in lines if b'"ucdp"' in line))
    assert record["parties"]
    variants = {  # plain records unlike the store's, then records that are not plain
        "lon an int": {**record, "lon": 71},
        "no place": {k: v for k, v in record.items() if k not in ("district", "tehsil")},
        "sliver 0": {**record, "border_sliver_km": 0},
        "sliver 0.0": {**record, "border_sliver_km": 0.0},
        "no sliver": {k: v for k, v in record.items() if k != "border_sliver_km"},
        "a dataset's source": {**record, "sources": [{"publication": "ACLED", "date": None}]},
        "sources of papers": {
            **record,
            "sources": [{"publication": "Dawn", "date": "2024-01-02"}, {"title": "t"}],
        },
        "unreadable span": {**record, "date": "2024-13"},
        "the largest int64": {**record, "killed_best": 2**63 - 1},
        "past int64": {**record, "killed_best": 2**63},
        "a float figure": {**record, "killed_best": 3.0},
        "a bool figure": {**record, "killed_best": True},
        "a derived key": {**record, "linked": []},
        "an int id": {**record, "id": 7},
        "a bool lon": {**record, "lon": True},
        "no release (upgraded)": {k: v for k, v in record.items() if k != "release"},
        "no category (upgraded)": {k: v for k, v in record.items() if k != "category"},
        "a source not an object": {**record, "sources": ["Dawn"]},
        "a number as publication": {**record, "sources": [{"publication": 5}]},
        "a list as district": {**record, "district": ["bannu"]},
    }
    cases = {"the store's": lines, "spaced": [json.dumps(orjson.loads(x)).encode() for x in lines]}
    for name, variant in variants.items():
        cases[name] = [orjson.dumps(variant), *lines[:3]]
        cases[name + ", alone"] = [orjson.dumps(variant)]
    decoded = []
    plain = records_module._decoded_plain
    monkeypatch.setattr(
        records_module, "_decoded_plain", lambda lines: decoded.append(plain(lines)) or decoded[-1]
    )
    fast_path = {}
    for name, case in cases.items():
        decoded.clear()
        one_at_a_time = _columns(Records.from_lines(case, upgrade=upgrade))
        fast_path[name] = decoded != [None]
        with monkeypatch.context() as patch:
            patch.setattr(records_module, "_decoded_plain", lambda lines: None)
            assert one_at_a_time == _columns(Records.from_lines(case, upgrade=upgrade)), name
    assert [name for name, taken in fast_path.items() if not taken] == [
        name + alone
        for name in list(variants)[list(variants).index("past int64") :]
        for alone in ("", ", alone")
    ]


def test_a_lines_members_without_its_point_are_the_records_without_lon_and_lat():
    from geo.build.attacks import _members_without_point

    record = {"id": "a", "sources": [{"title": 'say \\"lon\\": 1'}], "lon": 71.5, "lat": 34.0}
    kept = {
        "lon then lat": record,
        "at the end": {"id": "a", "b": 1, "lon": -7, "lat": 3.5e-05},
        "lat first": {"id": "a", "lat": 34.0, "b": [1], "lon": 71.5, "c": None},
        "apart": {"id": "a", "lon": 71.5, "b": {"c": 1}, "lat": 34.0, "d": 2},
        "a key like lon": {"id": "a", "xlon": 1, "lon": 71.5, "lat": 34.0},
    }
    for name, value in kept.items():
        line = orjson.dumps(value)
        members = _members_without_point(line)
        assert members is not None, name
        without = {k: v for k, v in value.items() if k not in ("lon", "lat")}
        assert b"".join(members) + b"}" == orjson.dumps(without), name
    refused = {
        "a nested lon": {**record, "parties": [{"lon": 1}]},
        "a nested lat": {"id": "a", "lon": 71.5, "lat": 34.0, "deaths": {"lat": 2}},
        "lon first": {"lon": 71.5, "id": "a", "lat": 34.0},
        "lon not a number": {"id": "a", "lon": "71.5", "lat": 34.0},
        "no lat": {"id": "a", "lon": 71.5},
    }
    for name, value in refused.items():
        assert _members_without_point(orjson.dumps(value)) is None, name


def test_places_set_in_bulk_are_those_set_one_by_one():
    base = {"id": "a", "origin": "synthetic", "lon": 71.0, "lat": 34.0, "geo_precision": 1}
    held = [  # as a record's line holds its place (absent keys: not written)
        {},
        {"district": "peshawar", "tehsil": "peshawar-city", "border_sliver_km": None},
        {"district": "peshawar", "tehsil": None, "border_sliver_km": 0},
        {"district": "peshawar", "tehsil": None, "border_sliver_km": 0.0},
        {"district": "peshawar", "tehsil": None, "border_sliver_km": False},
        {"district": "bannu", "tehsil": None, "border_sliver_km": 1.5},
        {"district": None, "tehsil": None, "border_sliver_km": None},
    ]
    given = [
        ("peshawar", "peshawar-city", None),
        ("peshawar", None, 0.0),
        ("bannu", None, 1.5),
        ("peshawar", None, None),
    ]
    records = [{**base, "id": f"a{k}", **place} for k, place in enumerate(held)]
    # lines, and a record made in this build (a dict, changed in place)
    cases = [(orjson.dumps(r), p) for r in records for p in given]
    lines = Records.from_lines(line for line, _ in cases)
    one_by_one = Records.from_lines(line for line, _ in cases)
    made = dict(records[1])
    for table in (lines, one_by_one):
        table.extend(Records.from_dicts([made]))
    places = [p for _, p in cases] + [("bannu", None, 2.0)]
    before = list(lines.items)
    lines.set_places(list(range(len(places))), places)
    for i, place in enumerate(places):
        one_by_one.set_place(i, place)
    assert lines.items == one_by_one.items
    assert [tuple(map(type, p)) for p in lines.places] == [
        tuple(map(type, p)) for p in one_by_one.places
    ]
    assert lines.places == one_by_one.places
    kept = [i for i in range(len(cases)) if lines.items[i] is before[i]]
    assert kept == [4, 13, 22]  # unchanged lines (0 is not 0.0, nor False): not encoded again
    assert made["district"] == "bannu" and made["border_sliver_km"] == 2.0


def test_border_distances_equal_the_nearest_segments_projection():
    # A SYNTHETIC zigzag border with a vertex every ~2.5 km, and random points around it.
    rng = np.random.default_rng(5)
    t = np.linspace(0, 5, 2001)
    line = LineString(
        np.column_stack([70 + 0.3 * np.sin(t * 7) + rng.normal(0, 0.01, t.size), 30 + t])
    )
    index = BorderIndex(line)
    lon, lat = rng.uniform(69, 72, 30_000), rng.uniform(29.5, 35.5, 30_000)
    np.testing.assert_allclose(
        index.distance_km(lon, lat), index._projected_km(lon, lat), atol=1e-9
    )
    assert index.distance_km(np.array([70.0]), np.array([30.0]))[0] < 2
    multi = shapely.MultiLineString([[(70, 30), (70, 31)], [(71, 31), (71, 32)]])
    index = BorderIndex(multi)
    np.testing.assert_allclose(
        index.distance_km(lon[:500], lat[:500]),
        index._projected_km(lon[:500], lat[:500]),
        atol=1e-9,
    )


def test_totals_and_places_from_columns_equal_the_dict_functions(both_ways, store):
    from geo.build.attacks import area_totals, place, place_records
    from geo.build.locate import Locator

    fast, _ = both_ways
    built = Store.open(fast)
    features = built.query("attacks")
    for layer, key in (("districts", "district"), ("tehsils", "tehsil")):
        totals = area_totals(features, key)
        for area in built.query(layer):
            expected = totals.get(area["id"], dict.fromkeys(("attacks", *totals_keys()), 0))
            got = {k: area["properties"][k] for k in expected}
            assert got == expected, (layer, area["id"])
    locator = Locator.from_store(built)
    records = [orjson.loads(line) for line in (fast / "imported.jsonl").read_bytes().splitlines()]
    records.append({**records[0], "id": "synthetic-outside", "lon": 60.0, "lat": 20.0})
    table = Records.from_lines(orjson.dumps(r) for r in records)
    placed, not_placed = place_records(table, locator)
    expected, expected_not = place(copy.deepcopy(records), locator)
    assert [table.record(i) for i in placed] == expected
    assert not_placed == expected_not and len(not_placed) == 1


def totals_keys() -> tuple[str, ...]:
    from geo.build.attacks import COUNTS

    return COUNTS


def test_imported_records_read_in_two_halves_equal_one_read(both_ways, tmp_path, monkeypatch):
    """A large imported.jsonl is read by the build and a helper process at once: the records
    are those one read gives, blank lines and lines another kpmap wrote included."""
    from geo.errors import StoreCorrupt

    fast, _ = both_ways
    lines = (fast / "imported.jsonl").read_bytes().splitlines()
    middle = len(lines) // 2
    # json.dumps' spaces (encoded again) in both halves, blank lines, a CRLF
    for at in (1, middle + 1, len(lines) - 1):
        lines[at] = json.dumps(orjson.loads(lines[at])).encode()
    lines[2] += b"\r"
    lines.insert(middle + 3, b"")
    store = tmp_path / "store"
    store.mkdir()
    (store / "imported.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    one = pipeline.read_imported_records(store)
    monkeypatch.setattr(pipeline, "READ_IN_TWO_FROM", 0)
    with open(store / "imported.jsonl", "rb") as f:
        assert pipeline._split(f) is not None
    two = pipeline.read_imported_records(store)
    assert len(two) == len(lines) - 1
    for name, column in one.columns().items():
        assert two.columns()[name] == column, name
    # a bad line in the helper's part: its message, as a BuildError
    (store / "imported.jsonl").write_bytes(b"\n".join([*lines, b"{not json"]) + b"\n")
    with pytest.raises(pipeline.BuildError, match="end of imported.jsonl failed.*JSON"):
        pipeline.read_imported_records(store)
    # a file the manifest does not know: refused, whoever read which half
    copied = tmp_path / "copied"
    copied.mkdir()
    for name in ("imported.jsonl", "manifest.json"):
        (copied / name).write_bytes((fast.resolve() / name).read_bytes())
    with open(copied / "imported.jsonl", "ab") as f:
        f.write(lines[0] + b"\n")
    with pytest.raises(StoreCorrupt):
        pipeline.read_imported_records(copied)
