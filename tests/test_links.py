"""geo/build/links.py: records of different datasets reporting one event are linked, never merged
away.

Every record here is SYNTHETIC (tests.helpers.attack_record, or the importer fixtures, which say
so in their text).
"""

import random

import numpy as np
import orjson
import pytest
from pyproj import Geod

from geo.build import links
from geo.build.links import combine, link_records
from geo.importers import read_file
from geo.vocab import event_fields
from tests.helpers import KM_LAT, SAMPLES, attack_record


def in_box(lon: float, lat: float) -> str | None:
    """A box around KP standing in for the districts layer."""
    return "synthetic-district" if 69 <= lon <= 74.5 and 31 <= lat <= 37 else None


def ids(records: list[dict]) -> list[str]:
    return [r["id"] for r in records]


def party(group: str) -> dict:
    return {"name": group, "group": group, "side": "b"}


def test_two_same_actor_ucdp_events_on_consecutive_days_at_one_point_are_both_kept():
    first = attack_record(id="ucdp-1", origin="ucdp", date="2018-06-01", killed_best=5)
    second = attack_record(id="ucdp-2", origin="ucdp", date="2018-06-02", killed_best=7)
    kept, made = link_records([first, second])
    assert kept == [first, second] and made == []  # the same dicts, untouched


@pytest.mark.parametrize("origin", ["acled", "gtd", "ucdp", "authored", "synthetic"])
def test_two_records_of_one_dataset_never_link(origin):
    records = [attack_record(id=f"{origin}-{i}", origin=origin) for i in range(2)]
    records.append(attack_record(id="other-1", origin="gtd" if origin != "gtd" else "acled"))
    kept, _ = link_records(records)
    assert len(kept) == (3 if origin == "synthetic" else 2)  # one of the two joins the other
    for record in kept:
        assert [m["origin"] for m in record.get("linked", [])].count(origin) <= 1


@pytest.mark.parametrize(
    ("second", "links_"),
    [
        ({}, True),
        ({"date": "2018-05-11"}, True),
        ({"date": "2018-05-09"}, True),
        ({"date": "2018-05-12"}, False),
        ({"point": (71.5785, 34.0151 + 1.8 * KM_LAT)}, True),
        ({"point": (71.5785, 34.0151 + 2.2 * KM_LAT)}, False),
        ({"actor": "ISKP"}, False),
        ({"actor": "unknown"}, True),  # one side names no group: compatible
        ({"actor": None}, True),
        ({"actor": "unknown", **event_fields("armed clash", [party("ISKP")])}, False),
        ({"actor": "unknown", **event_fields("armed clash", [party("TTP")])}, True),
        ({"date": "2018-05", "date_precision": "month"}, True),
        ({"date": "2018-06", "date_precision": "month"}, False),
        ({"date": "2018-05-11", "date_precision": "range", "date_end": "2018-05-20"}, True),
        # a span longer than a month cannot say which of its events it is
        ({"date": "2018-05-01", "date_precision": "range", "date_end": "2018-07-31"}, False),
        ({"origin": "acled"}, False),  # the same dataset
        ({"origin": "synthetic"}, False),  # synthetic records never link
    ],
)
def test_link_rules(second, links_):
    first = attack_record(id="acled-1", origin="acled")
    other = attack_record(**{"id": "ucdp-1", "origin": "ucdp", **second})
    kept, made = link_records([first, other])
    assert len(kept) == (1 if links_ else 2)
    assert len(made) == (1 if links_ else 0)


def _pairs_by_brute_force(candidates: list) -> list[tuple]:
    """The rule applied literally to every pair of records: the slow reference for the grid and
    day index. Returns (days apart, metres, i, j) like links._pairs."""
    geod = Geod(ellps="WGS84")
    found = []
    for i, a in enumerate(candidates):
        for j in range(i + 1, len(candidates)):
            b = candidates[j]
            apart = max(0, max(a.start, b.start) - min(a.end, b.end))
            metres = geod.inv(a.record["lon"], a.record["lat"], b.record["lon"], b.record["lat"])[2]
            if (
                a.record["origin"] != b.record["origin"]
                and apart <= 1
                and (not a.groups or not b.groups or a.groups & b.groups)
                and metres <= 2000
            ):
                found.append((apart, metres, i, j))
    return sorted(found)


@pytest.mark.parametrize("latitude", [34.0, 62.0])
def test_the_index_finds_every_pair_brute_force_finds(latitude):
    # SYNTHETIC records crowded into a few km and days, so many pairs lie near the 2 km and
    # one-day limits; at 62° N a longitude degree is half as long as in KP.
    rng = np.random.default_rng(7)
    records = []
    for i in range(400):
        month = i % 10 == 0
        records.append(
            attack_record(
                id=f"r{i:03d}",
                origin=("acled", "gtd", "ucdp", "authored")[i % 4],
                actor=("TTP", "ISKP", "unknown")[i % 3],
                date="2024-01" if month else f"2024-01-{int(rng.integers(1, 8)):02d}",
                date_precision="month" if month else "day",
                point=(71.5 + rng.uniform(-0.06, 0.06), latitude + rng.uniform(-0.03, 0.03)),
            )
        )
    ordered = sorted(records, key=lambda r: r["id"])
    candidates = [links._Candidate(p, r, *links.span(r)) for p, r in enumerate(ordered)]
    expected = _pairs_by_brute_force(candidates)
    assert len(expected) > 100  # the data does exercise linking
    found = links._pairs(candidates)
    assert [(d, i, j) for d, _, i, j in found] == [(d, i, j) for d, _, i, j in expected]
    assert [m for _, m, _, _ in found] == pytest.approx([m for _, m, _, _ in expected], abs=1e-6)


def test_groups_are_complete_do_not_chain_and_hold_one_record_per_origin():
    step = 1.5 * KM_LAT  # each 1.5 km from the one before: the third is 3 km from the first
    records = [
        attack_record(id=f"{origin}-1", origin=origin, point=(71.5785, 34.0151 + i * step))
        for i, origin in enumerate(("acled", "gtd", "ucdp"))
    ]
    kept, made = link_records(records)
    assert [m["members"] for m in made] == [["acled-1", "gtd-1"]]  # closest pair first
    assert ids(kept) == ["acled-1", "ucdp-1"]
    geod = Geod(ellps="WGS84")
    for group in kept:
        members = group.get("linked") or [group]
        assert len({m["origin"] for m in members}) == len(members)
        for a in members:
            for b in members:
                ra = next(r for r in records if r["id"] == a["id"])
                rb = next(r for r in records if r["id"] == b["id"])
                assert geod.inv(ra["lon"], ra["lat"], rb["lon"], rb["lat"])[2] <= 2000


def test_a_group_keeps_every_member_and_covers_their_figures():
    acled = attack_record(
        id="acled-1",
        origin="acled",
        geo_precision=2,
        killed_best=3,
        injured_low=1,
        injured_high=4,
        event_type="bombing / IED",
        dataset="acled",
        release="2025-01-01",
    )
    ucdp = attack_record(
        id="ucdp-1",
        origin="ucdp",
        actor="unknown",
        geo_precision=1,
        location="Exact place",
        point=(71.58, 34.0151),
        date="2018-05-09",
        date_precision="range",
        date_end="2018-05-11",
        killed_low=2,
        killed_best=4,
        killed_high=9,
        flags=["low, best and high out of order"],
        sources=[{"publication": "UCDP GED", "title": "wire", "date": "", "url": ""}],
    )
    gtd = attack_record(id="gtd-1", origin="gtd", geo_precision=2, killed_best=12, claimed=True)
    before = orjson.dumps([acled, ucdp, gtd])
    [group], [made] = link_records([ucdp, gtd, acled])
    assert orjson.dumps([acled, ucdp, gtd]) == before  # members untouched
    assert group["id"] == "acled-1" and made["id"] == "acled-1"
    assert made["members"] == ["acled-1", "gtd-1", "ucdp-1"]
    # the place of the most precise member
    assert (group["location"], group["geo_precision"], group["lon"]) == ("Exact place", 1, 71.58)
    # dates covering every member's, never narrowed
    assert (group["date"], group["date_precision"], group["date_end"]) == (
        "2018-05-09",
        "range",
        "2018-05-11",
    )
    # figures covering every member's; killed_best the first member's (ACLED before GTD, UCDP)
    assert (group["killed_low"], group["killed_best"], group["killed_high"]) == (2, 3, 12)
    assert (group["injured_low"], group["injured_high"]) == (1, 4)
    assert group["actor"] == "TTP" and group["claimed"] is True
    assert group["event_type"] == "bombing / IED"
    assert group["flags"] == ["low, best and high out of order"]
    assert [s["publication"] for s in group["sources"]] == ["acled", "gtd", "UCDP GED"]
    first, second, third = group["linked"]
    assert first == {
        "id": "acled-1",
        "origin": "acled",
        "dataset": "acled",
        "release": "2025-01-01",
        "date": "2018-05-10",
        "date_precision": "day",
        "date_end": None,
        "killed_low": None,
        "killed_best": 3,
        "killed_high": None,
        "injured_low": 1,
        "injured_high": 4,
        "sources": acled["sources"],
        "reason": None,
    }
    assert (second["id"], second["dataset"], second["release"]) == ("gtd-1", "gtd", None)
    assert third["dataset"] == "ucdp-ged"  # the default of a UCDP record that does not say
    assert (third["killed_low"], third["killed_best"], third["killed_high"]) == (2, 4, 9)
    assert third["reason"] == "0.1 km from acled-1, dates overlap, ucdp-1 names no group"


def test_members_with_one_figure_each_give_a_range_only_when_they_differ():
    same = [attack_record(id=f"{o}-1", origin=o, killed_best=5) for o in ("acled", "gtd")]
    killed = ("killed_low", "killed_best", "killed_high")
    assert [combine(same)[k] for k in killed] == [None, 5, None]
    differ = [*same[:1], attack_record(id="gtd-1", origin="gtd", killed_best=8)]
    assert [combine(differ)[k] for k in killed] == [5, 5, 8]


def test_a_day_and_its_month_cover_the_month():
    day = attack_record(id="acled-1", origin="acled", date="2018-05-10")
    month = attack_record(id="gtd-1", origin="gtd", date="2018-05", date_precision="month")
    group = combine([day, month])
    assert (group["date"], group["date_precision"], group["date_end"]) == ("2018-05", "month", None)


def test_the_result_does_not_depend_on_the_order_of_the_records():
    rng = random.Random(3)
    records = [
        attack_record(
            id=f"{('acled', 'gtd', 'ucdp')[i % 3]}-{i}",
            origin=("acled", "gtd", "ucdp")[i % 3],
            actor=("TTP", "unknown")[i % 2],
            date=f"2018-05-{rng.randint(1, 4):02d}",
            point=(71.5 + rng.uniform(0, 0.04), 34.0 + rng.uniform(0, 0.04)),
        )
        for i in range(300)
    ]
    expected = orjson.dumps(link_records(records))
    assert len(link_records(records)[1]) > 20
    for _ in range(3):
        rng.shuffle(records)
        assert orjson.dumps(link_records(records)) == expected


def test_the_same_attack_in_three_datasets_links_and_each_dataset_keeps_its_own_rows():
    records = [
        r for fmt in ("acled", "gtd", "ucdp") for r in read_file(fmt, SAMPLES[fmt], in_box).records
    ]
    kept, made = link_records(records)
    [khar] = [r for r in kept if r["id"] == "acled-PAK90001"]
    assert [m["origin"] for m in khar["linked"]] == ["acled", "gtd", "ucdp"]
    # ACLED's second row of the same bombing is ACLED's own record: kept, not merged into it
    assert "acled-PAK90002" in ids(kept)
    assert len(kept) + sum(len(m["members"]) - 1 for m in made) == len(records)


def test_linking_a_large_grid_pairs_every_record_with_its_own():
    # 50,000 SYNTHETIC records of two datasets, pairs at the points of a 3 km grid: each record
    # links to its pair and to no neighbour, though a dozen lie within reach of the index (how
    # fast this runs is the benchmarks' business: benchmarks.bench_scale)
    records = [
        attack_record(
            id=f"{origin}-{i}",
            origin=origin,
            point=(70 + (i // 200) * 0.03, 31 + (i % 200) * 0.03),
        )
        for origin in ("acled", "ucdp")
        for i in range(25_000)
    ]
    kept, made = link_records(records)
    assert len(made) == 25_000 and len(kept) == 25_000
    assert all(m["members"][0].split("-")[1] == m["members"][1].split("-")[1] for m in made)
