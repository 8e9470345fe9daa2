"""geo/build/tehsils.py: KP's 153 tehsils rebuilt from the COD-AB's lines and points."""

import geopandas as gpd
import pandas as pd
import pytest
import shapely

from geo.build.districts import shared_border_problems
from geo.build.tehsils import build_tehsils, dissolve_problems
from geo.errors import BuildError


@pytest.fixture(scope="module")
def tehsils(store) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame.from_features(store.query("tehsils"), crs="EPSG:4326")


@pytest.fixture(scope="module")
def districts(store) -> gpd.GeoDataFrame:
    frame = gpd.GeoDataFrame.from_features(store.query("districts"), crs="EPSG:4326")
    frame["id"] = [f["id"] for f in store.query("districts")]
    return frame


def test_153_tehsils_each_in_a_district(tehsils, districts):
    assert len(tehsils) == 153
    assert tehsils["pcode"].is_unique and tehsils["id"].is_unique
    assert set(tehsils["district"]) == set(districts["id"])
    # every tehsil's P-code extends its district's (PK50306 is in PK503)
    assert all(t.pcode.startswith(t.district_pcode) for t in tehsils.itertuples())


def test_tehsils_tile_their_districts(tehsils, districts):
    assert dissolve_problems(tehsils, districts) == []
    assert shared_border_problems(tehsils) == []


def test_known_tehsils(store):
    birmal = store.query("tehsils", name="Birmal")[0]["properties"]
    assert (birmal["district"], birmal["pcode"]) == ("south-waziristan", "PK53001")
    wazir = store.query("tehsils", pcode="PK50306")[0]["properties"]
    assert wazir["former_frontier_region"] and wazir["frontier_region"] == "FR Bannu"


def _square_world():
    """Synthetic COD parts: a 2°×1° 'district' PK501 in KP, cut in two tehsils at 71° E."""
    lines = gpd.GeoDataFrame(
        geometry=[shapely.box(70, 33, 72, 34).boundary, shapely.LineString([(71, 33), (71, 34)])],
        crs=4326,
    )
    points = gpd.GeoDataFrame(
        {
            "ADM3_PCODE": ["PK50101", "PK50102"],
            "ADM3_EN": ["West", "East"],
            "ADM2_PCODE": ["PK501", "PK501"],
            "ADM1_PCODE": ["PK5", "PK5"],
        },
        geometry=[shapely.Point(70.5, 33.5), shapely.Point(71.5, 33.5)],
        crs=4326,
    )
    adm3 = pd.DataFrame(
        {
            "ADM3_PCODE": ["PK50101", "PK50102"],
            "ADM1_PCODE": ["PK5", "PK5"],
            "Shape_Area": [1.0, 1.0],
            "Shape_Leng": [4.0, 4.0],
        }
    )
    districts = gpd.GeoDataFrame(
        {"id": ["square"], "pcode": ["PK501"]}, geometry=[shapely.box(70, 33, 72, 34)], crs=4326
    )
    return lines, points, adm3, districts


def test_a_rebuild_that_differs_from_the_stored_shape_fails(monkeypatch):
    monkeypatch.setattr("geo.build.tehsils.EXPECTED_KP_TEHSILS", 2)
    lines, points, adm3, districts = _square_world()
    built = build_tehsils(lines, points, adm3, districts, {"PK50102": "FR East"}, "synthetic")
    assert list(built["id"]) == ["square-east", "square-west"]
    assert list(built["frontier_region"].fillna("none")) == ["FR East", "none"]
    adm3.loc[0, "Shape_Area"] = 1.5  # as if the lines had lost a segment
    with pytest.raises(BuildError, match=r"PK50101 \(West\): rebuilt area 1 differs"):
        build_tehsils(lines, points, adm3, districts, {}, "synthetic")


def test_tehsils_that_do_not_cover_their_district_fail(monkeypatch):
    monkeypatch.setattr("geo.build.tehsils.EXPECTED_KP_TEHSILS", 2)
    lines, points, adm3, districts = _square_world()
    districts.loc[0, "geometry"] = shapely.box(70, 33, 72.1, 34)
    with pytest.raises(BuildError, match="square: tehsils differ from the district"):
        build_tehsils(lines, points, adm3, districts, {}, "synthetic")
