"""geo/districts.py: the KP district selection, the alias table and the shared-border check."""

import geopandas as gpd
import pytest
import shapely

from geo.districts import (
    alias_index,
    build_districts,
    normalise_name,
    read_district_table,
    shared_border_problems,
)
from geo.errors import BuildError

# KP's districts as drawn in geoBoundaries' 2019 ADM2 (see data/districts.toml for later splits).
EXPECTED_IDS = {
    "abbottabad", "bajaur", "bannu", "battagram", "buner", "charsadda", "chitral",
    "dera-ismail-khan", "hangu", "haripur", "karak", "khyber", "kohat", "kohistan", "kurram",
    "lakki-marwat", "lower-dir", "malakand", "mansehra", "mardan", "mohmand", "north-waziristan",
    "nowshera", "orakzai", "peshawar", "shangla", "south-waziristan", "swabi", "swat", "tank",
    "upper-dir",
}  # fmt: skip
MERGED_TRIBAL = {"bajaur", "mohmand", "khyber", "kurram", "orakzai", "north-waziristan",
                 "south-waziristan"}  # fmt: skip


@pytest.fixture(scope="module")
def districts(store) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame.from_features(store.query("districts"), crs="EPSG:4326")


def test_exactly_the_kp_districts(store):
    assert {f["id"] for f in store.query("districts")} == EXPECTED_IDS


def test_former_fata_flags_the_seven_merged_agencies(store):
    assert {f["id"] for f in store.query("districts", former_fata=True)} == MERGED_TRIBAL


def test_areas_add_up_to_kp(districts):
    # KP with the merged tribal districts is about 101,700 km² (2017 census figure: 101,741).
    assert 99_000 < districts["area_km2"].sum() < 104_000
    assert districts.set_index("id").loc["chitral", "area_km2"] > 14_000


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
        ("Lower South Waziristan", "south-waziristan"),
        ("Upper South Waziristan", "south-waziristan"),
        ("Upper Chitral", "chitral"),
        ("Kolai-Palas", "kohistan"),
        ("Kolai Palas", "kohistan"),
        ("Torghar", "mansehra"),
        ("Bajour Agency", "bajaur"),
        ("FR Kohat", "kohat"),
    ],
)
def test_alias_table_maps_names_to_their_polygon(name, district_id):
    assert alias_index(read_district_table())[normalise_name(name)] == district_id


def test_a_name_claimed_by_two_districts_is_an_error(tmp_path):
    table = tmp_path / "districts.toml"
    table.write_text(
        '[[district]]\nid="a"\nname="A"\nsource_name="A"\naliases=["Same"]\n'
        '[[district]]\nid="b"\nname="B"\nsource_name="B"\naliases=["same"]\n'
    )
    with pytest.raises(BuildError, match="claimed by a and b"):
        alias_index(read_district_table(table))


def _synthetic_province():
    """A synthetic ADM1 'KP' square with two ADM2 squares inside and one outside."""
    adm1 = gpd.GeoDataFrame(
        {"shapeName": ["Khyber Pakhtunkhwa"]}, geometry=[shapely.box(0, 0, 2, 1)], crs=4326
    )
    adm2 = gpd.GeoDataFrame(
        {"shapeName": ["West", "East", "Elsewhere"], "shapeID": ["w", "e", "x"]},
        geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1), shapely.box(2, 0, 3, 1)],
        crs=4326,
    )
    return adm1, adm2


def test_unexpected_and_missing_districts_fail_the_build(tmp_path):
    adm1, adm2 = _synthetic_province()
    table = tmp_path / "districts.toml"
    table.write_text(
        '[[district]]\nid="west"\nname="West"\nsource_name="West"\n'
        '[[district]]\nid="north"\nname="North"\nsource_name="North"\n'
    )
    with pytest.raises(BuildError) as err:
        build_districts(adm1, adm2, read_district_table(table), "synthetic")
    assert "unexpected districts inside KP: East" in str(err.value)
    assert "not found inside KP: North" in str(err.value)


def test_selection_keeps_only_polygons_inside_kp(tmp_path):
    adm1, adm2 = _synthetic_province()
    table = tmp_path / "districts.toml"
    table.write_text(
        '[[district]]\nid="west"\nname="West"\nsource_name="West"\n'
        '[[district]]\nid="east"\nname="East"\nsource_name="East"\n'
    )
    result = build_districts(adm1, adm2, read_district_table(table), "synthetic")
    assert sorted(result["id"]) == ["east", "west"]
    assert (result["area_km2"] > 12_000).all()  # a 1°×1° cell near the equator is ~12,300 km²
