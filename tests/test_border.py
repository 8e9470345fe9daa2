"""geo/border.py and the durand_line layer: the derived border, its segments and lengths, and the
bands along it."""

import numpy as np
import pytest
import shapely
import shapely.affinity
from shapely.geometry import LineString

from geo.border import BorderIndex, border_bands, distance_to_border_km
from geo.build.durand_line import split_by_province
from geo.crs import GEOD, geodesic_length_km


@pytest.fixture(scope="module")
def segments(store):
    return store.query("durand_line")


def test_segments_run_from_gilgit_baltistan_through_kp_to_balochistan(segments):
    assert [s["properties"]["province"] for s in segments] == [
        "Gilgit-Baltistan",
        "Khyber Pakhtunkhwa",
        "Balochistan",
    ]
    # consecutive stretches meet: the line is unbroken
    for a, b in zip(segments, segments[1:], strict=False):
        assert a["geometry"]["coordinates"][-1] == b["geometry"]["coordinates"][0]


def test_measured_length_is_longer_than_the_reported_figure(segments):
    props = segments[0]["properties"]
    assert props["reported_length_km"] == 2630
    assert props["reported_length_source"]["publication"] == "The Express Tribune"
    # A detailed line follows every bend: longer than the reported 2,630 km, but not wildly so.
    assert 2630 < props["measured_total_km"] < 3000
    parts = sum(s["properties"]["measured_length_km"] for s in segments)
    assert parts == pytest.approx(props["measured_total_km"], abs=0.5)


def test_kp_stretch(segments, store):
    kp = next(s for s in segments if s["properties"]["province"] == "Khyber Pakhtunkhwa")
    assert 1100 < kp["properties"]["measured_length_km"] < 1500
    # The KP stretch runs along KP's districts. The OSM-derived line and the COD-AB outline
    # differ by a few hundred metres (test_locate measures it): half its vertices within ~1 km.
    districts = shapely.union_all(store.layer("districts").geometries())
    line = shapely.geometry.shape(kp["geometry"])
    off = shapely.distance(shapely.points(line.coords), districts)
    assert np.percentile(off, 50) < 0.01 and np.percentile(off, 99) < 0.15
    # while the other stretches lie well away from KP
    others = [shapely.geometry.shape(s["geometry"]) for s in segments if s is not kp]
    assert all(
        np.median(shapely.distance(shapely.points(o.coords), districts)) > 0.2 for o in others
    )
    # and it touches the border districts, not the ones in the interior
    touching = {f["id"] for f in store.query("districts", bbox=line.buffer(0.01).bounds)}
    assert {"upper-chitral", "lower-chitral", "bajaur", "khyber", "kurram"} <= touching


def test_fence_attributes_carry_citations(segments):
    fence = {f["attribute"]: f for f in segments[0]["properties"]["fence"]}
    assert fence["construction_start"]["value"] == "2017-03"
    assert fence["status"]["as_of"] == "2024-01-02"
    assert "sabotage" in fence
    assert all(f["citation"]["publication"] for f in fence.values())


def test_split_by_province_on_synthetic_squares():
    west, east = shapely.box(-1, -1, 0, 1), shapely.box(0, -1, 1, 1)
    # a line along y=1.05 just north of both squares, 2 degrees long, crossing x=0
    line = LineString([(x / 100 - 1, 1.05) for x in range(201)])
    parts = split_by_province(line, {"West": west, "East": east})
    assert [name for name, _ in parts] == ["West", "East"]
    assert parts[0][1].coords[-1] == parts[1][1].coords[0]


def test_distance_to_border():
    line = LineString([(70, 30), (70, 35)])
    # one degree of longitude at 32°N is about 94.5 km
    far, on = distance_to_border_km([shapely.Point(71, 32), shapely.Point(70, 33)], line)
    assert far == pytest.approx(94.5, abs=0.5)
    assert on == pytest.approx(0, abs=1e-6)
    assert geodesic_length_km(LineString([(0, 0), (0, 1)])) == pytest.approx(110.57, abs=0.01)


def test_nearest_segments_agree_with_brute_force():
    # A SYNTHETIC zigzag of 2,000 segments, and enough random points for several parallel chunks.
    rng = np.random.default_rng(3)
    t = np.linspace(0, 5, 2001)
    line = LineString(
        np.column_stack([70 + 0.3 * np.sin(t * 7) + rng.normal(0, 0.01, t.size), 30 + t])
    )
    index = BorderIndex(line)
    lon, lat = rng.uniform(69, 72, 30_000), rng.uniform(29.5, 35.5, 30_000)
    scaled = shapely.points(lon * index._scale, lat)
    segment = index._nearest_segments(scaled, lon, lat)
    chosen = shapely.linestrings(
        np.stack([index._starts[segment], index._ends[segment]], axis=1) * [index._scale, 1.0]
    )
    whole = shapely.affinity.scale(line, xfact=index._scale, yfact=1.0, origin=(0, 0))
    np.testing.assert_allclose(
        shapely.distance(scaled, chosen), shapely.distance(scaled, whole), atol=1e-12
    )


def test_border_bands_on_a_synthetic_straight_border():
    # A SYNTHETIC border along the meridian 71°E, and a "Pakistan" square east of it that the
    # line overruns by a degree at each end: each band is a strip along the square's west edge.
    # The square has a vertex every 0.01°, as a real outline does, so its edges stay on their
    # meridians and parallels through the metric projection.
    line = LineString([(71, 30), (71, 34)])
    pakistan = shapely.segmentize(shapely.box(71, 31, 73, 33), 0.01)
    bands = border_bands(line, pakistan, (25, 10, 50))
    assert [km for km, _ in bands] == [10, 25, 50]  # nearest first, whatever the order asked
    edge_km = geodesic_length_km(LineString([(71, 31), (71, 33)]))  # about 222 km
    for (km, band), width_km in zip(bands, (10, 15, 25), strict=True):
        assert band.is_valid and not band.is_empty
        area_km2 = abs(GEOD.geometry_area_perimeter(band)[0]) / 1e6
        # within 1 %: the bands' edges are right to 2 % of their distance (see border_bands)
        assert area_km2 == pytest.approx(width_km * edge_km, rel=0.01), km
        assert band.difference(pakistan).area < 1e-6  # nothing on the far side of the line
    # each band is a ring outside the one before: no two overlap
    geoms = [band for _, band in bands]
    for i, a in enumerate(geoms):
        for b in geoms[i + 1 :]:
            assert a.intersection(b).area < 1e-9


def test_border_bands_are_valid_on_a_coarse_outline():
    # A SYNTHETIC 4-corner square: simplifying the 25-50 km band folds a sliver where it meets
    # the 10-25 km band over itself; the band must come out valid all the same.
    bands = border_bands(
        LineString([(71, 30), (71, 34)]), shapely.box(71, 31, 73, 33), (10, 25, 50)
    )
    assert all(band.is_valid and not band.is_empty for _, band in bands)
