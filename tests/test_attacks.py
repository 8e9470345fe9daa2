"""The attacks layer as built: geocoded seed events, derived fields, district totals, facts."""

import pytest
import shapely

from geo.build.attacks import geocode_events
from geo.build.gazetteer import Gazetteer


@pytest.fixture(scope="module")
def attacks(store):
    return {f["id"]: f for f in store.query("attacks")}


def test_bajaur_bombing_keeps_both_tolls_and_all_citations(attacks):
    p = attacks["kp-2023-07-30-khar"]["properties"]
    assert (p["date"], p["date_precision"], p["district"]) == ("2023-07-30", "day", "bajaur")
    assert (p["actor"], p["claimed"], p["event_type"]) == ("ISKP", True, "suicide bombing")
    assert p["killed_low"] < p["killed_high"] == 64
    assert (p["injured_low"], p["injured_high"]) == (100, 200)
    publications = {s["publication"] for s in p["sources"]}
    assert {"The Express Tribune", "The Asian Politico"} <= publications
    assert p["former_fata"] is True
    assert 10 < p["distance_to_border_km"] < 40  # Khar lies some 25 km from the border


def test_district_only_events_sit_on_the_district_point_at_precision_3(store, attacks):
    for district in ("khyber", "lakki-marwat", "shangla"):
        p = next(
            a["properties"] for a in attacks.values() if a["properties"]["district"] == district
        )
        assert p["geo_precision"] == 3
        assert p["date_precision"] == "range"


def test_every_attack_lies_in_its_district(store):
    districts = store.layer("districts")
    for feat in store.query("attacks"):
        point = shapely.Point(feat["geometry"]["coordinates"])
        inside = set(districts.ids[shapely.intersects(districts.geometries(), point)].tolist())
        assert feat["properties"]["district"] in inside


def test_attack_queries_by_time_actor_and_border_distance(store):
    in_april = store.query("attacks", start="2024-04-01", end="2024-04-30")
    assert {"kp-2024-04-02-miranshah-bazaar", "kp-2024-04-02-mir-ali"} <= {
        f["id"] for f in in_april
    }
    near = store.query("attacks", max_border_km=20)
    assert all(f["properties"]["distance_to_border_km"] <= 20 for f in near)
    assert {f["properties"]["actor"] for f in store.query("attacks", actor="iskp")} == {"ISKP"}


def test_districts_carry_totals_and_their_facts(store):
    bajaur = store.feature("districts", "bajaur")["properties"]
    assert bajaur["attacks"] >= 1 and bajaur["killed_best"] >= 64
    assert any(f["value"] == 17 for f in bajaur["facts"])
    assert any(f["metric"] == "attacks" and f["value"] == 117 for f in store.facts)


def test_a_stated_district_that_disagrees_with_the_place_is_an_error(store):
    gazetteer = Gazetteer.default(store.query("districts"))
    event = {
        "id": "synthetic-wrong-district",
        "location": "Khar",
        "district": "swat",
        "geo_precision": 1,
    }
    records, problems = geocode_events([event], gazetteer)
    assert records == []
    assert "states district swat" in problems[0] and "bajaur" in problems[0]
