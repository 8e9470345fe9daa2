"""geo/vocab.py: the authored attacks, the cited facts and the actor table."""

from pathlib import Path

import pytest

from geo.build.authored import EVENT_COLUMNS, read_events, read_facts
from geo.citations import read_citations
from geo.errors import SchemaError
from geo.vocab import EVENT_TYPES, TARGETS, canonical_actor, read_actors

SEEDS = {"express-tribune-2024-01", "asian-politico-2024-05-02"}


@pytest.fixture(scope="module")
def events() -> dict[str, dict]:
    return {e["id"]: e for e in read_events()}


@pytest.fixture(scope="module")
def facts() -> list[dict]:
    return read_facts()


def cited(record: dict) -> set[str]:
    """The citation keys of a record's sources (matched back by title)."""
    by_title = {c["title"]: key for key, c in read_citations().items()}
    return {by_title[s["title"]] for s in record["sources"]}


def test_real_events_load_and_are_canonical(events):
    assert events
    for e in events.values():
        assert e["origin"] == "authored"
        assert e["sources"], e["id"]
        assert e["event_type"] in EVENT_TYPES and e["target"] in TARGETS
        assert e["actor"] in read_actors()
        assert cited(e) & SEEDS, f"{e['id']} cites neither seed article"


def test_bajaur_bombing_keeps_both_tolls_and_both_seed_citations(events):
    bajaur = events["kp-2023-07-30-khar"]
    assert SEEDS <= cited(bajaur)
    assert bajaur["district"] == "bajaur" and bajaur["location"] == "Khar"
    assert (bajaur["date"], bajaur["date_precision"]) == ("2023-07-30", "day")
    assert (bajaur["actor"], bajaur["event_type"]) == ("ISKP", "suicide bombing")
    assert bajaur["killed_low"] < bajaur["killed_high"] == 64
    assert bajaur["killed_low"] <= bajaur["killed_best"] <= bajaur["killed_high"]
    assert bajaur["injured_low"] < bajaur["injured_high"] == 200
    # Day and town come from news reports beyond the seeds: at least one more citation.
    assert len(cited(bajaur) - SEEDS) >= 1


def test_expected_seed_attacks_are_present(events):
    found = {(e["actor"], e["district"], e["date"][:7]) for e in events.values()}
    assert ("ISKP", "bajaur", "2023-07") in found
    assert ("ISKP", "north-waziristan", "2024-04") in found
    nw = [e for e in events.values() if e["district"] == "north-waziristan"]
    assert {e["target"] for e in nw} == {"political party", "police / CTD"}
    claimed_2024 = {
        e["district"]
        for e in events.values()
        if e["claimed"] and e["date_precision"] == "range" and e["date"] == "2024-01-01"
    }
    assert claimed_2024 == {"khyber", "lakki-marwat", "shangla"}
    for e in events.values():
        if e["district"] in claimed_2024:
            # Only the district and the four-month window are known.
            assert (e["geo_precision"], e["date_end"]) == (3, "2024-04-30")


def test_facts_carry_the_seed_figures(facts):
    by = {(f["scope"], f["metric"], f["value"]) for f in facts}
    assert ("kp", "attacks", 117) in by and ("kp", "deaths", 957) in by
    assert ("bajaur", "attacks", 17) in by
    assert ("pakistan", "deaths_change_pct", 65) in by
    for f in facts:
        assert f["citation"]["publication"]
    over = {f["metric"]: f["qualifier"] for f in facts if f["scope"] == "pakistan"}
    assert over["share_of_attacks_pct"] == over["banned_groups"] == "over"


# Synthetic fixture, not real data: every row below is deliberately wrong in some way.
BAD_EVENTS = (
    ",".join(EVENT_COLUMNS) + ",colour\n"
    "synthetic-1,2024-13-01,day,,Nowhere,Atlantis,4,Nobody,maybe,drone,cats,"
    "5,3,9,7,2,,no-such-key,red\n"
    "synthetic-2,2024-04-01,month,,Khar,Bajaur,1,ISKP,,unknown,unknown,-1,,,,,text,"
    "asian-politico-2024-05-02,\n"
    "synthetic-2,2024-04-10,range,2024-04-01,Khar,Bajaur,1,ISKP,,unknown,unknown,,,,,,text,"
    "asian-politico-2024-05-02,\n"
)


def test_bad_csv_gives_one_error_listing_every_problem(tmp_path: Path):
    (tmp_path / "synthetic_bad.csv").write_text(BAD_EVENTS, encoding="utf-8")
    with pytest.raises(SchemaError) as info:
        read_events(tmp_path)
    message = str(info.value)
    expected = [
        "synthetic_bad.csv:1: unknown column(s) 'colour'",
        "synthetic_bad.csv:2: date '2024-13-01'",
        "synthetic_bad.csv:2: district 'Atlantis'",
        "synthetic_bad.csv:2: geo_precision '4'",
        "synthetic_bad.csv:2: actor 'Nobody'",
        "synthetic_bad.csv:2: claimed 'maybe'",
        "synthetic_bad.csv:2: event_type 'drone'",
        "synthetic_bad.csv:2: target 'cats'",
        "synthetic_bad.csv:2: killed_low <= killed_best <= killed_high",
        "synthetic_bad.csv:2: injured_low 7 is more than injured_high 2",
        "synthetic_bad.csv:2: description is empty",
        "synthetic_bad.csv:2: unknown citation 'no-such-key'",
        "synthetic_bad.csv:3: date '2024-04-01' must be YYYY-MM",
        "synthetic_bad.csv:3: killed_low '-1'",
        "synthetic_bad.csv:4: date_end 2024-04-01 is before date 2024-04-10",
    ]
    for text in expected:
        assert text in message, text
    assert message.count("\n  - ") >= len(expected)


def test_duplicate_ids_and_missing_columns_are_reported(tmp_path: Path):
    good = (
        "synthetic-3,2024-04,month,,Khar,Bajaur,1,ISKP,,unknown,unknown,,,,,,text,"
        "asian-politico-2024-05-02\n"
    )
    (tmp_path / "a.csv").write_text(",".join(EVENT_COLUMNS) + "\n" + good * 2, encoding="utf-8")
    (tmp_path / "b.csv").write_text("id,date\nsynthetic-4,2024-04-01\n", encoding="utf-8")
    with pytest.raises(SchemaError) as info:
        read_events(tmp_path)
    message = str(info.value)
    assert "a.csv:3: duplicate id 'synthetic-3' (first at a.csv:2)" in message
    assert "b.csv:1: missing column(s) date_precision" in message


def test_bad_facts_are_listed_with_line_numbers(tmp_path: Path):
    path = tmp_path / "facts.csv"
    path.write_text(
        "id,scope,period_start,period_end,metric,value,qualifier,actor,target,note,citation\n"
        "synthetic-f1,mars,2024,2023,Attacks,-3,roughly,Nobody,cats,,nope\n"
        "synthetic-f2,bajaur,2024-01,2024-04,attacks,17,,ISKP,,,asian-politico-2024-05-02\n",
        encoding="utf-8",
    )
    with pytest.raises(SchemaError) as info:
        read_facts(path)
    message = str(info.value)
    for text in ("scope 'mars'", "period_end 2023 is before", "metric 'Attacks'", "value '-3'",
                 "qualifier 'roughly'", "actor 'Nobody'", "target 'cats'",
                 "unknown citation 'nope'"):  # fmt: skip
        assert f"facts.csv:2: {text}" in message, text
    assert "facts.csv:3" not in message
    assert message.startswith("facts.csv has 8 problem(s)")


def test_a_repeated_fact_id_names_both_lines(tmp_path: Path):
    path = tmp_path / "facts.csv"
    row = "synthetic-f2,bajaur,2024-01,2024-04,attacks,17,,ISKP,,,asian-politico-2024-05-02\n"
    path.write_text(
        "id,scope,period_start,period_end,metric,value,qualifier,actor,target,note,citation\n"
        + row * 2,
        encoding="utf-8",
    )
    with pytest.raises(SchemaError, match=r"facts.csv:3: duplicate id 'synthetic-f2' \(first at "
                       r"facts.csv:2\)"):  # fmt: skip
        read_facts(path)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Tehrik-i-Taliban Pakistan (TTP)", "TTP"),
        ("TTP: Tehreek-i-Taliban Pakistan", "TTP"),
        ("Tahreek-e-Taliban Pakistan", "TTP"),
        ("Khorasan Chapter of the Islamic State", "ISKP"),
        ("IS: Islamic State (Pakistan)", "ISKP"),
        ("Islamic State Khorasan Province", "ISKP"),
        ("ISIS-K", "ISKP"),
        ("daesh", "ISKP"),
        ("IS", "ISKP"),
        ("Baloch Liberation Army (BLA)", "BLA"),
        ("BLA", "BLA"),
        ("Unidentified Armed Group (Pakistan)", "unknown"),
        ("Unknown", "unknown"),
        ("Taliban", "unknown"),
        ("", "unknown"),
        ("Some group nobody lists", "unknown"),
    ],
)
def test_canonical_actor(name, key):
    assert canonical_actor(name) == key


def test_actor_table_has_the_spec_groups():
    assert {
        "ISKP", "TTP", "BLA", "Lashkar-e-Islam", "Jamaat-ul-Ahrar", "Hafiz Gul Bahadur group",
        "Lashkar-e-Jhangvi", "al-Qaeda", "Afghan Taliban", "unknown",
    } <= set(read_actors())  # fmt: skip
