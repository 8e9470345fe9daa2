"""geo/build/locate.py: districts and tehsils decided by the point, the border sliver rule, and a
cited
table of real towns (tests/fixtures/towns.csv) that must fall in their districts and tehsils."""

import csv
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Geod

from geo.build.locate import SLIVER_MAX_KM, Locator, read_sliver

TOWNS = Path(__file__).parent / "fixtures" / "towns.csv"
GEOD = Geod(ellps="WGS84")


def read_towns() -> list[dict[str, str]]:
    with open(TOWNS, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def locator(store) -> Locator:
    return Locator.from_store(store)


def test_the_town_table_is_cited_and_broad():
    towns = read_towns()
    assert len(towns) >= 30
    assert all(t["coordinate_source"] and t["expected_source"] for t in towns)
    kinds = {t["kind"] for t in towns}
    assert {"district headquarters", "tehsil town", "border crossing"} <= kinds
    names = {t["name"] for t in towns}
    assert {"Bannu", "Hangu", "Jamrud", "Torkham", "Angoor Adda", "Arandu"} <= names


@pytest.mark.parametrize("town", read_towns(), ids=lambda t: t["name"])
def test_each_town_falls_in_its_district_and_tehsil(town, locator, store):
    lon, lat = float(town["lon"]), float(town["lat"])
    found = locator.locate(lon, lat)
    tolerance = float(town.get("tolerance_km") or 0)
    if tolerance:  # a point the table itself says lies within its own uncertainty of an edge
        district = store.feature("districts", town["district"])
        polygon = shapely.geometry.shape(district["geometry"])
        edge = shapely.shortest_line(shapely.Point(lon, lat), polygon)
        (x0, y0), (x1, y1) = edge.coords
        assert GEOD.inv(x0, y0, x1, y1)[2] / 1000 <= tolerance
        return
    assert found.district == town["district"]
    assert (
        store.feature("districts", found.district)["properties"]["pcode"] == town["district_pcode"]
    )
    if town["tehsil_pcode"]:
        assert store.feature("tehsils", found.tehsil)["properties"]["pcode"] == town["tehsil_pcode"]


def test_points_inside_and_outside_kp(locator):
    peshawar = locator.locate(71.5785, 34.0151)
    assert (peshawar.district, peshawar.sliver_km) == ("peshawar", None)
    assert peshawar.tehsil.startswith("peshawar-")
    assert locator.locate(67.0011, 24.8607).district is None  # Karachi
    assert locator.locate(74.3587, 31.5204).district is None  # Lahore
    assert locator.locate(69.1723, 34.5281).district is None  # Kabul


def test_the_sliver_rule_gives_border_points_to_the_nearest_district(store, locator):
    sliver = read_sliver(Path(store.path))
    assert sliver is not None and not sliver.is_empty
    districts = shapely.union_all(store.layer("districts").geometries())
    # points of the sliver zone: outside every district, yet given to one within 5 km
    xs, ys = [], []
    for polygon in list(shapely.get_parts(sliver))[:200]:
        p = polygon.representative_point()
        xs.append(p.x)
        ys.append(p.y)
    assert not shapely.intersects(districts, shapely.points(xs, ys)).any()
    found, _, km = locator.locate_many(xs, ys)
    assert all(found) and all(0 <= k <= SLIVER_MAX_KM + 0.01 for k in km)
    # just outside the zone on the Afghan side: no district
    afghan = locator.locate(71.07, 34.11)  # ~1.5 km west of Torkham, across the line
    assert afghan.district is None


def test_a_shared_edge_goes_to_the_first_tehsil_in_id_order():
    left, right = shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)
    locator = Locator(["b-right", "a-left"], ["b", "a"], [right, left])
    assert locator.locate(1.0, 0.5).tehsil == "a-left"
    assert locator.locate(1.5, 0.5).tehsil == "b-right"
    assert locator.locate(3.0, 0.5).district is None
    # the bulk path (polygon by polygon) follows the same rule
    assert locator.locate_many([1.0, 1.5, 3.0, 0.2], [0.5, 0.5, 0.5, 0.5])[1] == [
        "a-left",
        "b-right",
        None,
        "a-left",
    ]


def test_one_point_at_a_time_and_in_bulk_agree(locator):
    """locate (a tree query) and locate_many (polygon by polygon) are two paths to one answer:
    20,000 synthetic points over KP and beyond its border, the sliver included."""
    rng = np.random.default_rng(7)
    lon, lat = rng.uniform(69.2, 74.2, 20_000), rng.uniform(31.0, 36.9, 20_000)
    districts, tehsils, sliver_km = locator.locate_many(lon, lat)
    assert 0 < sum(d is not None for d in districts) < len(lon)
    for i in range(len(lon)):
        one = locator.locate(lon[i], lat[i])
        assert (one.district, one.tehsil, one.sliver_km) == (districts[i], tehsils[i], sliver_km[i])


def test_border_and_districts_agree(store, capsys):
    """The KP stretch of the Durand Line lies within 0.5 km (median) of the districts' edge."""
    kp = next(
        f for f in store.query("durand_line") if f["properties"]["province"] == "Khyber Pakhtunkhwa"
    )
    line = shapely.geometry.shape(kp["geometry"])
    # one sample every ~250 m along the line
    samples = shapely.line_interpolate_point(line, np.arange(0, line.length, 0.0025))
    outline = shapely.union_all(store.layer("districts").geometries()).boundary
    nearest = shapely.shortest_line(samples, outline)
    coords = shapely.get_coordinates(nearest).reshape(-1, 4)
    km = GEOD.inv(coords[:, 0], coords[:, 1], coords[:, 2], coords[:, 3])[2] / 1000
    median, p90, top = np.median(km), np.percentile(km, 90), km.max()
    with capsys.disabled():
        print(
            f"\nDurand Line (KP) to the districts' edge: median {median:.2f} km, "
            f"p90 {p90:.2f} km, max {top:.2f} km over {len(km)} samples"
        )
    assert median <= 0.5
    assert p90 <= 1.0 and top <= 6.0


def test_every_authored_attack_lies_in_its_stated_district(store, locator):
    authored = store.query("attacks", origin="authored")
    assert authored
    for feature in authored:
        lon, lat = feature["geometry"]["coordinates"]
        found = locator.locate(lon, lat)
        assert found.district == feature["properties"]["district"], feature["id"]
        if feature["properties"]["geo_precision"] < 3:
            assert found.tehsil == feature["properties"]["tehsil"], feature["id"]
        else:  # known only to its district: no tehsil claimed
            assert feature["properties"]["tehsil"] is None
