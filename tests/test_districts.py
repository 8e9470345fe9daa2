"""geo/districts.py and geo/build/districts.py: the KP district selection, the alias table,
the shared-border check."""

import geopandas as gpd
import pyogrio
import pyproj
import pytest
import shapely

from geo.build.districts import build_districts, shared_border_problems
from geo.districts import alias_index, normalise_name, read_district_table, resolve_district
from geo.errors import BuildError

# KP's 35 districts as OCHA's COD-AB 2022 draws them (see data/districts.toml).
EXPECTED_IDS = {
    "abbottabad", "bajaur", "bannu", "battagram", "buner", "charsadda", "lower-chitral",
    "upper-chitral", "dera-ismail-khan", "hangu", "haripur", "karak", "khyber", "kohat",
    "lower-kohistan", "upper-kohistan", "kolai-palas", "kurram", "lakki-marwat", "lower-dir",
    "malakand", "mansehra", "mardan", "mohmand", "north-waziristan", "nowshera", "orakzai",
    "peshawar", "shangla", "south-waziristan", "swabi", "swat", "tank", "torghar", "upper-dir",
}  # fmt: skip
MERGED_TRIBAL = {"bajaur", "mohmand", "khyber", "kurram", "orakzai", "north-waziristan",
                 "south-waziristan"}  # fmt: skip


@pytest.fixture(scope="module")
def districts(store) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame.from_features(store.query("districts"), crs="EPSG:4326")


def test_exactly_the_kp_districts(store):
    features = store.query("districts")
    assert {f["id"] for f in features} == EXPECTED_IDS
    assert sorted(f["properties"]["pcode"] for f in features) == [
        f"PK5{n:02d}" for n in range(1, 36)
    ]


def test_former_fata_flags_the_seven_merged_agencies(store):
    assert {f["id"] for f in store.query("districts", former_fata=True)} == MERGED_TRIBAL


def test_areas_add_up_to_kp(districts):
    # The COD's KP (ADM1 PK5) is 100,925 km² (geodesic; PROVENANCE.md of the mirror).
    assert districts["area_km2"].sum() == pytest.approx(100_925, rel=0.005)


def test_each_area_is_within_one_percent_of_the_source(districts, source_adm2):
    geod = pyproj.Geod(ellps="WGS84")
    source = source_adm2.set_index("ADM2_PCODE").geometry
    for _, row in districts.iterrows():
        source_km2 = abs(geod.geometry_area_perimeter(source[row["pcode"]])[0]) / 1e6
        assert row["area_km2"] == pytest.approx(source_km2, rel=0.01), row["id"]


def test_frontier_regions_come_from_their_tehsils(store):
    frontier = {
        f["properties"]["district"]: f["properties"]["name"]
        for f in store.query("tehsils", former_frontier_region=True)
    }
    assert frontier == {
        "bannu": "Wazir",
        "dera-ismail-khan": "Darazinda",
        "kohat": "Darra Adam Khel",
        "lakki-marwat": "Bettani",
        "peshawar": "Hassan Khel",
        "tank": "Jandola",
    }
    by_id = {f["id"]: f["properties"] for f in store.query("districts")}
    assert all(by_id[d]["frontier_region"] for d in frontier)


def test_successors_carry_their_creation_and_citation(store):
    successors = {
        s["name"]: (f["id"], s)
        for f in store.query("districts")
        for s in f["properties"]["successors"]
    }
    assert successors["Upper South Waziristan"][0] == "south-waziristan"
    assert successors["Central Dir"][0] == "upper-dir"
    for _, successor in successors.values():
        assert successor["created"][:4] >= "2022"
        assert successor["citation"]["publication"] and successor["citation"]["url"]


def test_neighbours_share_their_borders(districts):
    assert shared_border_problems(districts) == []


def test_shared_border_check_finds_a_gap_and_an_overlap(districts):
    shrunk = districts.copy()
    i = shrunk.index[shrunk["id"] == "orakzai"][0]
    shrunk.loc[i, "geometry"] = shrunk.loc[i, "geometry"].buffer(-0.01)
    assert any("gap" in p for p in shared_border_problems(shrunk))
    grown = districts.copy()
    grown.loc[i, "geometry"] = grown.loc[i, "geometry"].buffer(0.01)
    assert any("overlap" in p and "orakzai" in p for p in shared_border_problems(grown))


@pytest.mark.parametrize(
    "name, district_id",
    [
        ("D.I. Khan", "dera-ismail-khan"),
        ("Dera Ismail Khan", "dera-ismail-khan"),
        ("di khan", "dera-ismail-khan"),
        ("D. I. Khan", "dera-ismail-khan"),
        ("PK509", "dera-ismail-khan"),
        ("Lower South Waziristan", "south-waziristan"),
        ("Upper South Waziristan", "south-waziristan"),
        ("Central Dir", "upper-dir"),
        ("Chitral Upper", "upper-chitral"),
        ("Kolai-Palas", "kolai-palas"),
        ("Kolai Palas Kohistan", "kolai-palas"),
        ("Tor Ghar", "torghar"),
        ("Batagram", "battagram"),
        ("Bajour Agency", "bajaur"),
        ("FR Kohat", "kohat"),
    ],
)
def test_alias_table_maps_names_to_their_polygon(name, district_id):
    assert alias_index(read_district_table())[normalise_name(name)] == district_id


@pytest.mark.parametrize(
    "name, ids, note",
    [
        ("Upper South Waziristan", ("south-waziristan",), "not drawn in the 2022 boundaries"),
        ("Paharpur", ("dera-ismail-khan",), "created 2025-11"),
        ("Kohistan", ("lower-kohistan", "upper-kohistan", "kolai-palas"), "was split"),
        ("Chitral", ("lower-chitral", "upper-chitral"), "was split"),
        ("pk503", ("bannu",), None),
    ],
)
def test_resolve_district_says_when_a_name_is_not_a_polygon(name, ids, note):
    resolved = resolve_district(name)
    assert resolved.ids == ids
    assert (resolved.note is None) if note is None else (note in resolved.note)
    assert resolve_district("Lahore") is None


def test_a_name_claimed_by_two_districts_is_an_error(tmp_path):
    table = tmp_path / "districts.toml"
    table.write_text(
        '[[district]]\npcode="PK501"\nid="a"\nname="A"\naliases=["Same"]\n'
        '[[district]]\npcode="PK502"\nid="b"\nname="B"\naliases=["same"]\n'
    )
    with pytest.raises(BuildError, match="claimed by a and b"):
        alias_index(read_district_table(table))


def _synthetic_adm2():
    """Synthetic ADM2 rows: two squares in 'KP' (PK5) and one in another province."""
    return gpd.GeoDataFrame(
        {
            "ADM2_PCODE": ["PK501", "PK502", "PK601"],
            "ADM2_EN": ["West", "East", "Elsewhere"],
            "ADM1_PCODE": ["PK5", "PK5", "PK6"],
        },
        geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1), shapely.box(2, 0, 3, 1)],
        crs=4326,
    )


def test_unexpected_and_missing_pcodes_fail_the_build(tmp_path):
    table = tmp_path / "districts.toml"
    table.write_text(
        '[[district]]\npcode="PK501"\nid="west"\nname="West"\n'
        '[[district]]\npcode="PK509"\nid="north"\nname="North"\n'
    )
    with pytest.raises(BuildError) as err:
        build_districts(_synthetic_adm2(), read_district_table(table), "synthetic", {})
    assert "unexpected P-codes in KP: PK502 (East)" in str(err.value)
    assert "not in the source's KP: ['PK509']" in str(err.value)


def test_selection_keeps_only_kp_polygons(tmp_path):
    table = tmp_path / "districts.toml"
    table.write_text(
        '[[district]]\npcode="PK501"\nid="west"\nname="West"\n'
        '[[district]]\npcode="PK502"\nid="east"\nname="East"\n'
    )
    result = build_districts(_synthetic_adm2(), read_district_table(table), "synthetic", {})
    assert sorted(result["id"]) == ["east", "west"]
    assert (result["area_km2"] > 12_000).all()  # a 1°×1° cell near the equator is ~12,300 km²


@pytest.fixture(scope="module")
def source_adm2():
    """The upstream ADM2 file, from the offline mirror (or the fetch cache)."""
    from geo.build.sources import fetch, read_sources
    from tests.helpers import offline_mirror

    sources = read_sources()
    for ext in ("shx", "dbf", "prj", "cpg"):
        fetch(sources[f"cod_adm2_{ext}"], mirror=offline_mirror())
    return pyogrio.read_dataframe(fetch(sources["cod_adm2_shp"], mirror=offline_mirror()))
