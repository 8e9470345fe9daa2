"""geo/store/files.py: loading the store and answering queries from memory."""

import json
import shutil

import pytest

from geo.errors import InvalidQuery, LayerNotFound, StoreNotFound
from geo.geojson import feature, write_feature_collection
from geo.store import schemas
from geo.store.files import FeatureNotFound, Store, parse_bbox
from geo.store.schemas import STORE_FORMAT, LayerSchema


def test_open_loads_every_layer(store):
    assert set(store.layer_names) == {"districts", "tehsils", "durand_line", "attacks", "countries"}
    assert len(store.query("districts")) == store.manifest["layers"]["districts"]["count"]


def test_bbox_query_returns_districts_it_touches(store):
    # a small box around Khar, Bajaur
    ids = {f["id"] for f in store.query("districts", bbox=(71.50, 34.70, 71.55, 34.75))}
    assert ids == {"bajaur"}
    wide = {f["id"] for f in store.query("districts", bbox="70.0,32.5,70.5,33.2")}
    assert "north-waziristan" in wide and "chitral" not in wide


def test_bbox_far_from_kp_is_empty(store):
    assert store.query("districts", bbox=(10, 10, 11, 11)) == []


def test_property_filters(store):
    assert [f["id"] for f in store.query("districts", name="swat")] == ["swat"]
    assert len(store.query("districts", former_fata="false")) == 35 - 7
    assert len(store.query("districts", id=["swat", "tank", "nowhere"])) == 2
    assert [f["properties"]["province"] for f in store.query("durand_line", province="Balochistan")]


def test_feature_by_id(store):
    assert store.feature("districts", "bajaur")["properties"]["name"] == "Bajaur"
    with pytest.raises(FeatureNotFound) as err:
        store.feature("districts", "atlantis")
    assert err.value.status == 404


@pytest.mark.parametrize("name", ["attackz", "../../etc/passwd", "districts\x00", None, ""])
def test_unknown_layer_is_404_naming_the_layers(store, name):
    with pytest.raises(LayerNotFound) as err:
        store.query(name)
    assert err.value.status == 404
    assert "districts" in str(err.value)


@pytest.mark.parametrize(
    "bbox, fragment",
    [
        ("1,2,3", "four"),
        ((1, 2, 3, 4, 5), "four"),
        ("a,b,c,d", "four numbers"),
        ((72, 30, 71, 31), "min greater than max"),
        ((70, 30, 71, 95), "out of range"),
        ((-190, 30, 71, 31), "out of range"),
        (("nan", 30, 71, 31), "finite"),
    ],
)
def test_bad_bbox_is_400_saying_what_is_allowed(store, bbox, fragment):
    with pytest.raises(InvalidQuery) as err:
        store.query("districts", bbox=bbox)
    assert err.value.status == 400
    assert fragment in str(err.value)


def test_parse_bbox_accepts_text():
    assert parse_bbox(" 69.5, 31,72,36") == (69.5, 31.0, 72.0, 36.0)


def test_unknown_filter_property_is_400(store):
    with pytest.raises(InvalidQuery, match="allowed: id, pcode, name, former_fata"):
        store.query("districts", colour="red")
    with pytest.raises(InvalidQuery, match="boolean"):
        store.query("districts", former_fata="maybe")


def test_date_filter_on_a_layer_without_time_is_400(store):
    with pytest.raises(InvalidQuery, match="has no time"):
        store.query("districts", start="2024-01-01")


def test_missing_store_is_a_named_error(tmp_path):
    with pytest.raises(StoreNotFound, match="kpmap build"):
        Store.open(tmp_path / "nothing")


# --- time index, on a synthetic point layer (the attacks layer arrives with its own issue) ---

SYNTHETIC = LayerSchema(
    name="synthetic_points",
    title="Synthetic points for store tests",
    geometry_types=("Point",),
    properties={"id": (str,), "date": (str,)},
    time=("date", "date_end"),
    filterable=("id", "kind"),
)


@pytest.fixture
def time_store(tmp_path, monkeypatch):
    """A store holding only synthetic points with day, month and range dates."""
    import shapely

    monkeypatch.setitem(schemas.LAYERS, "synthetic_points", SYNTHETIC)
    rows = [
        ("day", "2024-04-15", None, 70.1),
        ("month", "2024-04", None, 70.2),
        ("range", "2024-01-01", "2024-04-30", 70.3),
        ("old", "2019-10-29", None, 70.4),
    ]
    features = [
        feature(
            kind, shapely.Point(lon, 33.0), {"id": kind, "kind": kind, "date": d, "date_end": e}
        )
        for kind, d, e, lon in rows
    ]
    write_feature_collection(tmp_path / "synthetic.geojson", features)
    manifest = {
        "format": STORE_FORMAT,
        "layers": {"synthetic_points": {"file": "synthetic.geojson", "count": 4}},
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return Store.open(tmp_path)


@pytest.mark.parametrize(
    "start, end, expected",
    [
        ("2024-04-15", "2024-04-15", {"day", "month", "range"}),
        ("2024-04-20", None, {"month", "range"}),
        ("2024-05-01", None, set()),
        (None, "2023-12-31", {"old"}),
        ("2024-02", "2024-02", {"range"}),
        ("2019", "2019", {"old"}),
        (None, None, {"day", "month", "range", "old"}),
    ],
)
def test_time_window_matches_overlapping_spans(time_store, start, end, expected):
    found = time_store.query("synthetic_points", start=start, end=end)
    assert {f["id"] for f in found} == expected


def test_time_and_bbox_and_filter_combine(time_store):
    found = time_store.query(
        "synthetic_points", bbox=(70.15, 32, 70.35, 34), start="2024-04-01", kind=["month", "day"]
    )
    assert [f["id"] for f in found] == ["month"]


@pytest.mark.parametrize(
    "start, end, fragment",
    [
        ("yesterday", None, "YYYY-MM-DD"),
        ("2024-02-30", None, "does not exist"),
        ("2024-13", None, "does not exist"),
        ("2024-05-01", "2024-04-01", "after"),
    ],
)
def test_bad_dates_are_400(time_store, start, end, fragment):
    with pytest.raises(InvalidQuery, match=fragment) as err:
        time_store.query("synthetic_points", start=start, end=end)
    assert err.value.status == 400


def test_the_saved_index_answers_like_the_parsed_file(store_dir, store, tmp_path):
    import shutil

    assert (store_dir / "attacks.index.npz").exists()
    assert store.layer("attacks").raw is not None  # opened through its index
    plain = tmp_path / "plain"
    shutil.copytree(store_dir, plain)
    (plain / "attacks.index.npz").unlink()
    parsed = Store.open(plain)
    assert parsed.layer("attacks").parsed is not None
    for kwargs in ({}, {"actor": "ISKP", "start": "2024"}, {"bbox": (70, 32.5, 71, 33.5)}):
        assert parsed.query("attacks", **kwargs) == store.query("attacks", **kwargs)


def test_a_store_opened_to_copy_rows_out_makes_its_lookups_on_first_use(store_dir, store):
    lean = Store.open(store_dir, ready=False, verify=False)
    layer = lean.layer("attacks")
    assert layer._shapes is None and layer._tree is None and layer._by_id is None
    assert lean.query("attacks") == store.query("attacks")  # a whole layer needs none of them
    assert layer._tree is None and layer._by_id is None
    known = str(store.layer("attacks").ids[3])
    for kwargs in ({"bbox": (70, 32.5, 71, 33.5)}, {"id": [known, "nonesuch"]}):
        found = lean.query("attacks", **kwargs)
        assert found and found == store.query("attacks", **kwargs)
    assert layer._tree is not None and layer._by_id is not None
    assert store.layer("attacks")._tree is not None  # a server's store has them made at open


def test_an_index_from_another_build_is_refused(store_dir, tmp_path):
    import shutil

    stale = tmp_path / "stale"
    shutil.copytree(store_dir, stale)
    manifest = json.loads((stale / "manifest.json").read_text())
    manifest["layers"]["attacks"]["sha256"] = "0" * 64
    (stale / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreNotFound, match="does not belong"):
        Store.open(stale)


def test_a_store_of_another_format_is_refused(store_dir, tmp_path):
    import shutil

    older = tmp_path / "older"
    shutil.copytree(store_dir, older)
    manifest = json.loads((older / "manifest.json").read_text())
    manifest["format"] = "kpmap-store/1"
    (older / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreNotFound, match="rebuild it with `kpmap build`"):
        Store.open(older)


def test_filters_match_values_whatever_their_case_or_spacing(store):
    layer = store.layer("attacks")
    iskp = store.query("attacks", actor="ISKP")
    assert iskp and all(f["properties"]["actor"] == "ISKP" for f in iskp)
    assert store.query("attacks", actor=" iskp ") == iskp
    first = iskp[0]["id"]
    assert [f["id"] for f in store.query("attacks", id=first.upper())] == [first]
    assert layer.codes_matching("actor", {"no-such-group"}) == []
    codes, values = layer.column("claimed")
    unreported = [f["properties"]["claimed"] is None for f in store.query("attacks")]
    assert (values[codes] == "").tolist() == unreported  # a null is "", not "nan"


def test_filters_compare_url_strings_with_typed_properties(store):
    assert store.query("attacks", geo_precision="3") == store.query("attacks", geo_precision=3)
    assert len(store.query("attacks", claimed="true")) >= 4


def test_vectorised_spans_agree_with_date_ranges():
    import numpy as np

    from geo.store.files import _date_range, _period_days

    dates = ["2024-02-29", "2024-02", "2023-12", "2024", "1999-01-01"]
    text = np.array(dates, dtype=str)
    assert _period_days(text, last_day=False).tolist() == [_date_range(d)[0] for d in dates]
    assert _period_days(text, last_day=True).tolist() == [_date_range(d)[1] for d in dates]


def test_a_linked_records_id_answers_for_its_attack_from_the_index_and_the_file(
    linked_store_dir, tmp_path
):
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(linked_store_dir, plain)
    (plain / "attacks.index.npz").unlink()
    stores = (
        Store.open(linked_store_dir),
        Store.open(plain),
        Store.open(linked_store_dir, ready=False, verify=False),  # its id lookup made when asked
    )
    for store in stores:
        attack = store.feature("attacks", "ucdp-t1")
        assert attack == store.feature("attacks", "acled-T1")
        assert attack["id"] == "acled-T1"
        found = store.query("attacks", id=["UCDP-T1", "acled-T1"])
        assert [f["id"] for f in found] == ["acled-T1"]  # one attack, however many ids ask
        with pytest.raises(FeatureNotFound):
            store.feature("attacks", "ucdp-t9")


def test_a_store_has_a_version_that_its_folder_answers_cheaply(store, store_dir, tmp_path):
    from geo.store import current_version

    assert store.version == current_version(store_dir)
    assert len(store.version) == 16
    assert current_version(tmp_path) is None  # no store there
    copy = tmp_path / "copy"
    shutil.copytree(store_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["built_at"] = "2000-01-01T00:00:00+00:00"  # another build of the same data
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert current_version(copy) not in (None, store.version)
