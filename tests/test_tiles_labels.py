"""geo/tiles/labels.py: the basemap's towns (GeoNames, district headquarters) and their labels."""

import pytest
import shapely

from geo.districts import District, read_district_table
from geo.errors import BuildError
from geo.geonames import read_geonames
from geo.tiles.canvas import text_box
from geo.tiles.labels import Candidate, min_zoom, place_labels, read_towns
from geo.tiles.tiler import Tiler


@pytest.fixture(scope="module")
def towns(store):
    return read_towns(store.layer("districts").geometries())


@pytest.fixture(scope="module")
def by_name(towns):
    return {t.name: t for t in towns}


@pytest.mark.parametrize(
    "population, headquarters, zoom",
    [
        (4_758_762, False, 7),
        (500_000, False, 7),
        (151_427, False, 8),
        (20_000, False, 9),
        (19_999, False, 10),
        (5_000, False, 10),
        (4_999, False, 11),
        (0, False, 11),  # GeoNames gives some seats no population
        (0, True, 7),
        (151_427, True, 7),
    ],
)
def test_min_zoom_falls_with_population_and_is_7_for_a_headquarters(population, headquarters, zoom):
    assert min_zoom(population, headquarters) == zoom


def test_every_cited_headquarters_is_a_town_in_its_own_district(store, towns):
    districts = {f["id"]: shapely.geometry.shape(f["geometry"]) for f in store.query("districts")}
    by_id = {t.geonameid: t for t in towns}
    table = read_district_table()
    for district in table:
        if district.headquarters is None:
            continue
        town = by_id[district.headquarters]
        assert town.district_headquarters and town.min_zoom == 7
        assert districts[district.id].covers(shapely.Point(town.lon, town.lat)), district.id
    # the districts.toml header names the districts left without one
    without = {d.id for d in table if d.headquarters is None}
    assert without == {"kolai-palas", "mohmand", "orakzai", "torghar"}
    assert sum(t.district_headquarters for t in towns) == len(table) - len(without)


def test_towns_are_kp_places_and_the_cities_just_outside_it(store, towns, by_name):
    kp = shapely.union_all(store.layer("districts").geometries())
    for name in ("Peshawar", "Bannu", "Wana", "Mingora", "Datta Khel"):
        assert kp.covers(shapely.Point(by_name[name].lon, by_name[name].lat))
    # Outside KP only big cities near it: Islamabad and Rawalpindi, not Lahore or Karachi, and
    # no small town of Punjab, however near.
    assert {"Islamabad", "Rawalpindi", "Attock City"} <= set(by_name)
    assert not {"Lahore", "Karachi", "Quetta"} & set(by_name)
    outside = [t for t in towns if not kp.covers(shapely.Point(t.lon, t.lat))]
    assert outside and all(t.population >= 100_000 for t in outside)
    records = {int(r["geonameid"]) for r in read_geonames()}
    assert all(t.geonameid in records for t in towns)


def test_names_take_the_gazetteers_spelling(by_name):
    # data/places.toml: GeoNames spells Alpuri "Alpurai" and names the town of Dir "Upper Dir"
    assert by_name["Alpuri"].geonameid == 1482305 and "Alpurai" not in by_name
    assert by_name["Dir"].district_headquarters and "Upper Dir" not in by_name


def test_towns_come_in_label_priority(towns):
    seats = [t.district_headquarters for t in towns]
    assert seats == sorted(seats, reverse=True)  # every headquarters first
    others = [t.population for t in towns if not t.district_headquarters]
    assert others == sorted(others, reverse=True)


def test_a_headquarters_geonames_lacks_is_a_build_error(store):
    table = [District("PK501", "abbottabad", "Abbottabad", headquarters=999_999_999)]
    with pytest.raises(BuildError, match=r"abbottabad \(999999999\)"):
        read_towns(store.layer("districts").geometries(), table=table)


def test_district_table_refuses_a_headquarters_that_is_not_an_id(tmp_path):
    path = tmp_path / "districts.toml"
    path.write_text('[[district]]\npcode="PK501"\nid="a"\nname="A"\nheadquarters="Khar"\n')
    with pytest.raises(BuildError, match="headquarters 'Khar' is not a GeoNames id"):
        read_district_table(path)


# -- placement ----------------------------------------------------------------------------------


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_a_town_that_would_touch_a_placed_label_moves_aside_or_is_left_out():
    u, v = 0.7, 0.4
    first = Candidate(u, v, "Peshawar", 3)
    twin = Candidate(u, v, "Twin", 2)
    # 16 px to the left: its text cannot go right, over the first dot, so it goes left
    beside = Candidate(u - 16 / (256 * 2**9), v, "Beside", 2)
    under = Candidate(u + 20 / (256 * 2**9), v, "Under", 2)  # its dot under the first label
    placed = place_labels([first, twin, beside, under], 9, text_box)
    assert [label.text for label in placed] == ["Peshawar", "Beside"]
    assert placed[0].anchor == "lm"  # right of its dot, the first choice
    assert placed[1].anchor == "rm" and not _overlap(placed[0].box, placed[1].box)


def test_a_district_name_is_centred_and_never_moved():
    (label,) = place_labels([Candidate(0.5, 0.5, "Bannu")], 8, text_box)
    assert (label.anchor, label.dx, label.dy, label.radius) == ("mm", 0, 0, 0)
    twice = [Candidate(0.5, 0.5, "Bannu"), Candidate(0.5, 0.5, "Bannu")]
    assert len(place_labels(twice, 8, text_box)) == 1


@pytest.mark.parametrize("z", [7, 8, 9, 10, 11, 14])
def test_the_basemap_layout_has_no_overlapping_labels(store, z):
    layout = Tiler(store).label_layout(z)
    assert layout
    for i, a in enumerate(layout):
        assert not any(_overlap(a.box, b.box) for b in layout[i + 1 :]), a.text


def test_the_layout_names_headquarters_first_and_more_towns_as_one_zooms_in(store):
    tiler = Tiler(store)
    at = {z: [label.text for label in tiler.label_layout(z)] for z in (6, 7, 9, 11)}
    assert at[6] == []  # no labels below zoom 7
    assert "Peshawar" in at[7] and at[7][0] == "Peshawar"  # the most populous headquarters
    assert len(at[7]) < len(at[9]) < len(at[11])
    assert "Datta Khel" not in at[9] and "Datta Khel" in at[11]  # 1,037 people: from zoom 11
