"""Tests for geo/importers: UCDP (GED, HDX, Candidate), ACLED (CSV, API JSON) and GTD (CSV, XLSX)
files -> canonical records placed by the real districts, and the import report.

Every fixture in tests/fixtures/importers/ is synthetic: rows written for these tests (each says
so in its headline, notes or summary) in the layout of the providers' real files, with their
codebooks' column names and value codes. The synthetic_* files reproduce each layout in shape: the
GED's 49 columns (synthetic_GEDEvent_v25_1.csv, with a quoted line break, a tab and tripled
quotes), HDX's per-country file of an older release (HXL hashtag row, *_est figures, active_year
True/False, no gwnoa/gwnob, CRLF), a GED file saved again with US dates and a comma at the end of
every line, a Candidate monthly release, ACLED exports of two eras and its API JSON, and the GTD's
135 columns. Points are placed by the session store's tehsils and border sliver (conftest).
"""

import csv
import json
from pathlib import Path

import pytest
import shapely
from openpyxl import Workbook
from pyproj import Geod

from geo.errors import InvalidQuery, SchemaError
from geo.importers import (
    ImportFailed,
    ImportResult,
    Outcome,
    district_locator,
    read_file,
)
from geo.importers.common import FAILED, REFUSED, TAKEN, parse_day, safe_text
from geo.importers.parties import group_of
from geo.importers.places import (
    DISTRICT_DISAGREES,
    NAMES_SAY_KP,
    OTHER_PROVINCE,
    admin1_status,
    reported_districts,
)
from geo.importers.reading import decode_text
from geo.importers.report import REPORT_COLUMNS, summary, write_csv
from geo.store.schemas import LAYERS, validate_feature
from geo.vocab import CATEGORIES, EVENT_TYPES, TARGETS, read_actors
from tests.helpers import FIXTURES, SAMPLES

GED = FIXTURES / "synthetic_GEDEvent_v25_1.csv"
HDX = FIXTURES / "synthetic_hdx_conflict_data_pak.csv"
RESAVED = FIXTURES / "synthetic_GEDEvent_v24_1_resaved.csv"
CANDIDATE = FIXTURES / "synthetic_GEDEvent_v25_0_9.csv"
ACLED_2019 = FIXTURES / "synthetic_acled_export_2019.csv"
ACLED_API = FIXTURES / "synthetic_acled_api.json"
GTD = FIXTURES / "synthetic_globalterrorismdb_0522dist.csv"
ALL_FILES = [
    ("ucdp", GED), ("ucdp", HDX), ("ucdp", RESAVED), ("ucdp", CANDIDATE), ("acled", ACLED_2019),
    ("acled", ACLED_API), ("acled", SAMPLES["acled"]), ("gtd", GTD), ("gtd", SAMPLES["gtd"]),
    ("ucdp", SAMPLES["ucdp"]),
]  # fmt: skip


@pytest.fixture(scope="module")
def places(store):
    return district_locator(store)


@pytest.fixture(scope="module")
def ged(places) -> ImportResult:
    return read_file("ucdp", GED, places)


def by_id(result: ImportResult) -> dict[str, dict]:
    return {r["id"]: r for r in result.records}


def outcomes(result: ImportResult) -> dict[int, Outcome]:
    return {o.line: o for o in result.outcomes}


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# --- every file ------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "path"), ALL_FILES, ids=lambda v: getattr(v, "name", v))
def test_records_follow_the_attack_schema(fmt, path, places, store):
    """Each record, with the properties the build derives, is a valid attacks feature."""
    result = read_file(fmt, path, places)
    assert result.records
    actors = set(read_actors())
    for rec in result.records:
        assert rec["origin"] == fmt and rec["id"].startswith(f"{fmt}-")
        assert rec["dataset"] == result.dataset and rec["release"] == result.release
        assert rec["district"] in store.layer("districts").ids
        assert rec["category"] in CATEGORIES
        assert rec["actor"] is None or rec["actor"] in actors
        assert rec["event_type"] in EVENT_TYPES and rec["target"] in TARGETS
        assert (rec["date_end"] is not None) == (rec["date_precision"] == "range")
        killed = [
            rec[k] for k in ("killed_low", "killed_best", "killed_high") if rec[k] is not None
        ]
        assert killed == sorted(killed)
        assert "synthetic" in rec["description"].lower()
        properties = {k: v for k, v in rec.items() if k not in ("lon", "lat")}
        properties |= {"tehsil": None, "border_sliver_km": None}
        properties |= {"distance_to_border_km": 1.0, "former_fata": False}
        properties |= {"linked": [], "origins": rec["origin"]}
        feature = {
            "type": "Feature",
            "id": rec["id"],
            "geometry": {"type": "Point", "coordinates": [rec["lon"], rec["lat"]]},
            "properties": properties,
        }
        assert validate_feature(feature, LAYERS["attacks"]) == []


@pytest.mark.parametrize(("fmt", "path"), ALL_FILES, ids=lambda v: getattr(v, "name", v))
def test_every_data_row_has_one_outcome(fmt, path, places):
    result = read_file(fmt, path, places)
    if path.suffix == ".json":
        rows = json.loads(path.read_text())["data"]
    else:
        rows = [r for r in csv_rows(path) if not r[next(iter(r))].startswith("#")]
    assert len(result.outcomes) == len(rows)
    assert [o.line for o in result.outcomes] == sorted(o.line for o in result.outcomes)
    taken = [o.id for o in result.outcomes if o.status == TAKEN]
    assert taken == [r["id"] for r in result.records]
    assert all(o.reason for o in result.rejected)
    assert {o.status for o in result.outcomes} <= {TAKEN, REFUSED, FAILED}


# --- UCDP ------------------------------------------------------------------------------------


def test_ucdp_ged_layout_dataset_and_release(ged):
    assert ged.layout.startswith("UCDP GED columns (with code_status, deaths_a, gwnoa, gwnob)")
    assert (ged.dataset, ged.release) == ("ucdp-ged", "2025 (GED 25.1)")
    assert sorted(by_id(ged)) == [
        f"ucdp-9001{n:02d}" for n in (1, 2, 3, 4, 5, 6, 9, 10, 12, 13, 15, 16)
    ]


def test_quoted_line_breaks_tabs_and_tripled_quotes(ged):
    rally = by_id(ged)["ucdp-900101"]
    assert rally["description"] == "Synthetic row: blast at a rally, reported over two lines"
    assert (
        rally["sources"][0]["title"] == '"Synthetic wire," 2023-07-31, "Blast at rally" (invented)'
    )
    # the first record spans lines 2-3, so the second starts on line 4
    assert outcomes(ged)[4].id == "ucdp-900102"


def test_crlf_and_lf_files_read_alike(tmp_path, places, ged):
    crlf = tmp_path / GED.name
    crlf.write_bytes(GED.read_bytes().replace(b"\n", b"\r\n"))
    assert b"\r\r" not in crlf.read_bytes()
    again = read_file("ucdp", crlf, places)
    assert again.records == ged.records
    assert again.outcomes == ged.outcomes


def _same_event(a: dict, b: dict) -> None:
    keys = ("date", "date_precision", "date_end", "district", "geo_precision", "category")
    keys += ("actor", "parties", "deaths", "killed_low", "killed_best", "killed_high")
    for key in keys:
        assert a[key] == b[key], key


def test_hdx_file_of_an_older_release(places, ged):
    """HXL row skipped as metadata, *_est figures, active_year True/False, no gwnoa/gwnob, CRLF."""
    assert b"\r\n" in HDX.read_bytes()
    result = read_file("ucdp", HDX, places)
    assert result.layout.startswith("UCDP GED columns of an older release (best_est")
    assert "without gwnoa, gwnob" in result.layout
    assert any("line 2 is an HXL hashtag row" in note for note in result.notes)
    assert [o.line for o in result.outcomes] == [3, 4, 5]  # line 2 is no row, not a refusal
    assert [o.status for o in result.outcomes] == [TAKEN] * 3
    for rec in result.records:  # the same events as the GED file's, 100 ids on
        original = by_id(ged)[f"ucdp-{int(rec['id'][5:]) - 100}"]
        _same_event(rec, original)


def test_us_dates_and_a_trailing_comma_on_every_line(places, ged):
    text = RESAVED.read_text()
    assert all(line.endswith(",") for line in text.splitlines())
    assert "07/30/2023 00:00:00" in text
    result = read_file("ucdp", RESAVED, places)
    assert [o.status for o in result.outcomes] == [TAKEN] * 3
    assert any("one empty cell more than the header" in note for note in result.notes)
    for rec in result.records:
        _same_event(rec, by_id(ged)[f"ucdp-{int(rec['id'][5:]) - 200}"])


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("2023-07-30", "2023-07-30"),
        ("2023-07-30 00:00:00.000", "2023-07-30"),
        ("07/30/2023 00:00:00", "2023-07-30"),
        ("7/3/2023", "2023-07-03"),
        ("7/30/2023 12:00 AM", "2023-07-30"),
        ("30 July 2023", "2023-07-30"),
        ("30/07/2023", None),  # day first: refused, never guessed
        ("2023-02-30", None),
    ],
)
def test_dates(text, day):
    if day is None:
        with pytest.raises(ValueError, match="bad date"):
            parse_day({"d": text}, "d")
    else:
        assert parse_day({"d": text}, "d").isoformat() == day


def test_candidate_monthly_release(places):
    result = read_file("ucdp", CANDIDATE, places)
    assert (result.dataset, result.release) == (
        "ucdp-candidate-2025-09",
        "2025-09 (Candidate 25.0.9)",
    )
    records = by_id(result)
    assert records["ucdp-900402"]["flags"] == []
    assert records["ucdp-900401"]["flags"] == [
        "UCDP code_status 'Check deaths': a candidate event UCDP has not yet verified"
    ]


def test_candidate_file_without_a_header_row(tmp_path, places):
    headerless = tmp_path / CANDIDATE.name
    headerless.write_text(CANDIDATE.read_text().split("\n", 1)[1])
    result = read_file("ucdp", headerless, places)
    assert result.layout.startswith("UCDP GED columns") and "(no header row)" in result.layout
    assert result.records == read_file("ucdp", CANDIDATE, places).records
    assert [o.line for o in result.outcomes] == [1, 2]


@pytest.mark.parametrize(
    ("name", "dataset", "release"),
    [
        ("GEDEvent_v25_1.csv", "ucdp-ged", "2025 (GED 25.1)"),
        ("ged241.csv", "ucdp-ged", "2024 (GED 24.1)"),
        ("GEDEvent_v25_0_10.csv", "ucdp-candidate-2025-10", "2025-10 (Candidate 25.0.10)"),
        (
            "GEDEvent_v24_01_24_03.csv",
            "ucdp-candidate-2024-01-2024-03",
            "2024-03 (Candidate 24.01.24.03)",
        ),
        ("conflict_data_pak.csv", "ucdp-ged", "2024-12-31 (newest event)"),
    ],
)
def test_ucdp_release_names_sort_within_a_dataset(name, dataset, release):
    from geo.importers import ucdp

    assert ucdp.dataset_of(Path(name)) == dataset
    assert ucdp.release_of(Path(name), "2024-12-31") == release
    assert ucdp.release_of(Path("GEDEvent_v25_0_9.csv"), None) < ucdp.release_of(
        Path("GEDEvent_v25_0_10.csv"), None
    )


def test_state_based_event_where_only_the_group_died(ged):
    clash = by_id(ged)["ucdp-900102"]
    assert (clash["category"], clash["actor"]) == ("armed clash", None)
    assert clash["deaths"] == {"side_a": 0, "side_b": 5, "civilians": 0, "unknown": 0}
    assert clash["parties"] == [
        {"name": "Government of Pakistan", "group": "Pakistan (state)", "side": "a"},
        {"name": "TTP", "group": "TTP", "side": "b"},
    ]
    assert (clash["date"], clash["date_precision"]) == ("2024-04", "month")


def test_a_us_strike_is_not_an_attack_by_its_target(ged):
    strike = by_id(ged)["ucdp-900103"]
    assert (strike["category"], strike["actor"]) == ("air/drone strike", None)
    assert [(p["group"], p["side"]) for p in strike["parties"]] == [
        ("United States (state)", "a"),
        ("al-Qaeda", "b"),
    ]
    assert strike["deaths"]["side_b"] == 4


def test_one_sided_and_non_state_events(ged):
    records = by_id(ged)
    rally = records["ucdp-900101"]
    assert (rally["category"], rally["actor"], rally["target"]) == (
        "violence against civilians",
        "ISKP",
        "civilians",
    )
    assert rally["deaths"]["civilians"] == 63
    rivals = records["ucdp-900104"]
    assert (rivals["category"], rivals["actor"]) == ("violence between groups", None)
    assert (rivals["date"], rivals["date_end"]) == ("2022-05-03", "2022-05-06")  # the span kept
    assert records["ucdp-900115"]["parties"][1]["group"] == "Afghan Taliban"  # UCDP "Taleban"


def test_out_of_order_figures_keep_the_event(ged):
    rec = by_id(ged)["ucdp-900109"]
    assert (rec["killed_low"], rec["killed_best"], rec["killed_high"]) == (5, 5, 20)
    assert rec["flags"] == [
        "UCDP low 10, best 5, high 20 were out of order: low and high widened to cover all three"
    ]


def test_where_prec_5(ged):
    records, lines = by_id(ged), outcomes(ged)
    assert (records["ucdp-900105"]["district"], records["ucdp-900105"]["geo_precision"]) == (
        "kurram",
        3,
    )
    # "Birmal tehsil" names a tehsil of the point's district
    birmal = records["ucdp-900106"]
    assert (birmal["district"], birmal["geo_precision"]) == ("south-waziristan", 2)
    spans = lines[9]
    assert (spans.id, spans.status, spans.reason) == (
        "ucdp-900107",
        REFUSED,
        "where_prec 5: the area spans districts",
    )
    assert "adm_2 'Khyber agency' is khyber, the point lies in orakzai" in spans.detail
    unknown = lines[10]
    assert (unknown.id, unknown.reason) == (
        "ucdp-900108",
        "where_prec 5: the area is not known to lie in one district",
    )
    assert lines[16].reason == "place known only to the country or beyond (where_prec 6)"


# --- places and names ------------------------------------------------------------------------


def test_kp_districts_spelled_the_providers_way(ged):
    records = by_id(ged)
    for rec_id, spelled, district in (
        ("ucdp-900101", "Bajaur agency", "bajaur"),
        ("ucdp-900104", "Khyber agency", "khyber"),
        ("ucdp-900105", "Kurram agency", "kurram"),
    ):
        assert records[rec_id]["district_reported"] == spelled
        assert records[rec_id]["district"] == district
        assert records[rec_id]["flags"] == []
    assert reported_districts("North Waziristan agency") == ("north-waziristan",)
    assert reported_districts("F.R. Kohat") == ("kohat",)
    assert reported_districts("Upper South Waziristan District") == ("south-waziristan",)
    assert reported_districts("Bhakkar district") is None


def test_a_point_in_the_border_sliver(ged, places):
    assert places(71.54861, 35.31028) == "lower-chitral"
    sliver = by_id(ged)["ucdp-900110"]
    # "Chitral" is the former district, now Lower and Upper Chitral: no disagreement
    assert (sliver["district"], sliver["flags"]) == ("lower-chitral", [])


def test_names_say_kp_but_the_point_is_outside(ged, store):
    refused = outcomes(ged)[13]
    assert (refused.id, refused.status, refused.reason) == ("ucdp-900111", REFUSED, NAMES_SAY_KP)
    km = float(refused.detail.rsplit(": ", 1)[1].split(" km")[0])
    # measured again, geodesically, to the nearest point of KP's outline
    outline = shapely.union_all(store.layer("districts").geometries())
    point = shapely.Point(71.5436, 32.5853)
    nearest = shapely.shortest_line(point, outline).coords[1]
    expected = Geod(ellps="WGS84").inv(71.5436, 32.5853, *nearest)[2] / 1000
    assert abs(km - expected) < 0.3 and km > 5


def test_names_say_punjab_but_the_point_is_in_kp(ged):
    rec = by_id(ged)["ucdp-900112"]
    assert rec["district"] == "dera-ismail-khan"
    text = "adm_1 'Punjab province' names another province, but the point lies in KP"
    assert rec["flags"] == [f"{text} (dera-ismail-khan)"]
    [notice] = [n for n in ged.notices if n.kind == OTHER_PROVINCE]
    assert (notice.id, notice.line) == ("ucdp-900112", 14)


def test_a_district_named_differently_from_the_point(ged):
    rec = by_id(ged)["ucdp-900113"]
    expected = "adm_2 'Bannu district' is bannu, but the point lies in north-waziristan"
    assert (rec["district"], rec["district_reported"], rec["flags"]) == (
        "north-waziristan",
        "Bannu district",
        [expected],
    )
    assert [(n.id, n.text) for n in ged.notices if n.kind == DISTRICT_DISAGREES] == [
        ("ucdp-900113", expected)
    ]


def test_other_provinces_outside_kp_are_refused(ged):
    sindh = outcomes(ged)[19]
    assert (sindh.status, sindh.reason) == (REFUSED, "outside Khyber Pakhtunkhwa")
    assert sindh.detail == "adm_1=Sindh province, adm_2=Karachi district, point 67.0011,24.8607"


def test_swapped_coordinates_fail(places):
    result = read_file("ucdp", SAMPLES["ucdp"], places)
    swapped = outcomes(result)[10]
    assert (swapped.status, swapped.reason) == (FAILED, "latitude/longitude look swapped")


# --- actors ----------------------------------------------------------------------------------


def test_unmapped_groups_are_listed_not_folded_into_unknown(ged):
    assert ged.unmapped == {"Jundullah": 1}
    rec = by_id(ged)["ucdp-900116"]
    assert rec["actor"] == "other" and rec["parties"][0] == {
        "name": "Jundullah",
        "group": None,
        "side": "a",
    }


@pytest.mark.parametrize(
    ("name", "key", "state"),
    [
        ("Taleban", "Afghan Taliban", None),
        ("TTP", "TTP", None),
        ("TTP - Sajna group", "TTP", None),  # a faction written after its group counts as it
        ("Government of Pakistan", "Pakistan (state)", "Pakistan"),
        ("Military Forces of Pakistan (2018-)", "Pakistan (state)", "Pakistan"),
        ("Police Forces of Pakistan (2008-2013)", "Pakistan (state)", "Pakistan"),
        ("Government of United States of America", "United States (state)", "United States"),
        ("Government of India", None, "India"),  # a state nobody mapped: still a state
        ("Unidentified Armed Group (Pakistan)", "unknown", None),
        ("Civilians (Pakistan)", None, None),
    ],
)
def test_provider_names_of_groups(name, key, state):
    group = group_of(name)
    assert (group.key, group.state) == (key, state)
    assert group.unmapped == (name == "Government of India")


def test_actor_table_states_and_factions(tmp_path):
    path = tmp_path / "actors.toml"
    path.write_text(
        '[TTP]\nname = "TTP"\n[JuA]\nname = "JuA"\npart_of = "TTP"\n'
        '[US]\nname = "US"\nstate = "United States"\n[unknown]\nname = "?"\n'
    )
    actors = read_actors(path)
    assert (actors["JuA"]["part_of"], actors["US"]["state"], actors["TTP"]["state"]) == (
        "TTP",
        "United States",
        None,
    )
    path.write_text('[JuA]\nname = "JuA"\npart_of = "TTP"\n[unknown]\nname = "?"\n')
    with pytest.raises(SchemaError, match="part_of 'TTP' is not a group"):
        read_actors(path)


# --- ACLED -----------------------------------------------------------------------------------


def test_acled_export_of_2019(places):
    result = read_file("acled", ACLED_2019, places)
    assert result.layout == (
        "ACLED columns (with iso, event_id_no_cnty, timestamp; without disorder_type, "
        "civilian_targeting, tags, population_best) in CSV"
    )
    assert (result.dataset, result.release) == ("acled", "2021-08-26")  # newest timestamp
    expected = {
        # id: (category, actor, target)
        "acled-PAK70001": ("armed clash", None, "security forces"),
        "acled-PAK70002": ("militant attack", "unknown", "civilians"),
        "acled-PAK70003": ("militant attack", "TTP", "police / CTD"),
        "acled-PAK70004": ("security operation", None, "security forces"),
        "acled-PAK70005": ("violence between groups", None, "other"),
        "acled-PAK70006": ("violence against civilians", "Pakistan (state)", "civilians"),
        "acled-PAK70007": ("armed clash", "Afghanistan (state)", "civilians"),
        "acled-PAK70008": ("violence against civilians", "other", "civilians"),
    }
    got = {r["id"]: (r["category"], r["actor"], r["target"]) for r in result.records}
    assert got == expected
    assert [(o.line, o.reason, o.detail) for o in result.rejected] == [
        (10, "ACLED event type not imported", "event_type 'Protests'"),
        (11, "ACLED event type not imported", "event_type 'Strategic developments'"),
    ]
    assert result.unmapped == {"Mohmand Tribal Militia (Pakistan)": 1}
    khyber = by_id(result)["acled-PAK70004"]  # admin1 says FATA: the point decides
    assert (khyber["district"], khyber["district_reported"], khyber["flags"]) == (
        "khyber",
        "Khyber",
        [],
    )


def test_acled_export_without_timestamp_or_iso(tmp_path, places):
    rows = csv_rows(ACLED_2019)
    kept = [c for c in rows[0] if c not in ("timestamp", "iso", "iso3", "data_id")]
    path = tmp_path / "acled_without_timestamp.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, kept, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    result = read_file("acled", path, places)
    assert "without iso, " in result.layout and "timestamp" in result.layout.split("without")[1]
    newest = max(parse_day(r, "event_date") for r in rows)
    assert result.release == f"{newest.isoformat()} (newest event)"
    assert [r["id"] for r in result.records] == [
        r["id"] for r in read_file("acled", ACLED_2019, places).records
    ]


def test_acled_new_export(places):
    result = read_file("acled", SAMPLES["acled"], places)
    assert "with iso, disorder_type, civilian_targeting, tags, timestamp" in result.layout
    records = by_id(result)
    police = records["acled-PAK90003"]
    assert (police["date"], police["date_precision"], police["date_end"]) == (
        "2024-03-09",
        "range",
        "2024-03-15",
    )
    assert records["acled-PAK90001"]["flags"] == ["ACLED civilian_targeting: Civilian targeting"]
    assert records["acled-PAK90014"]["target"] == "polio workers"
    punjab = outcomes(result)[6]
    assert (punjab.status, punjab.reason) == (REFUSED, "outside Khyber Pakhtunkhwa")


def test_acled_api_json_and_a_bare_list(tmp_path, places):
    result = read_file("acled", ACLED_API, places)
    assert result.layout.endswith("in ACLED API JSON ({status, data: [...]})")
    assert "population_best" in result.layout.split(";")[0]
    assert result.release == "2024-03-17"
    strike = by_id(result)["acled-PAK80001"]
    assert (strike["category"], strike["actor"]) == ("air/drone strike", "Pakistan (state)")
    assert outcomes(result)[3].reason == "ACLED event type not imported"  # Riots
    bare = tmp_path / "events.json"
    bare.write_text(json.dumps(json.loads(ACLED_API.read_text())["data"]))
    again = read_file("acled", bare, places)
    assert again.layout.endswith("in ACLED API JSON (a bare list of events)")
    assert again.records == result.records


def test_acled_api_error_is_not_read_as_events(tmp_path, places):
    error = tmp_path / "error.json"
    error.write_text('{"status": 403, "success": false, "error": {"message": "Access denied"}}')
    with pytest.raises(SchemaError, match="API error"):
        read_file("acled", error, places)


# --- GTD -------------------------------------------------------------------------------------


def test_gtd_mapping(places):
    result = read_file("gtd", GTD, places)
    assert (result.dataset, result.release) == ("gtd", "2022-05 (GTD 0522dist)")
    records = by_id(result)
    market = records["gtd-201407290001"]
    assert (market["date"], market["date_precision"], market["date_end"]) == (
        "2014-07-29",
        "range",
        "2014-07-30",
    )
    assert market["flags"] == [
        "GTD approxdate 'July 29-30, 2014': the date is approximate "
        "(kept as 2014-07-29..2014-07-30)"
    ]
    assert market["deaths"] == {"side_a": 1, "side_b": None, "civilians": None, "unknown": 2}
    assert (market["category"], market["actor"], market["district"]) == (
        "militant attack",
        "TTP",
        "peshawar",
    )
    late = records["gtd-201407000002"]
    assert (late["date"], late["date_precision"], late["geo_precision"]) == ("2014-07", "month", 3)
    assert "not read" in late["flags"][0]
    doubt = records["gtd-201805120003"]
    assert doubt["geo_precision"] == 3  # specificity 2: a region's centroid, not the town
    assert doubt["flags"][1] == (
        "GTD doubtterr 1: GTD doubts this incident is terrorism "
        "(alternative: Insurgency/Guerilla Action)"
    )
    assert doubt["flags"][2] == "city 'Kohat' is kohat, but the point lies in hangu"
    swat = records["gtd-201911030006"]
    assert swat["geo_precision"] == 2  # specificity 1 in the town's vicinity
    assert swat["actor"] == "other" and [p["group"] for p in swat["parties"]] == [None, "TTP"]
    assert result.unmapped == {"Tehrik-e-Nafaz-e-Shariat-e-Mohammadi": 1}
    assert [(o.line, o.reason) for o in result.rejected] == [
        (5, "place known only to the province (GTD specificity 4)"),
        (6, "place unknown (GTD specificity 5)"),
    ]


def _write_xlsx(source: Path, path: Path, skip_blank_row: bool = False) -> None:
    """A CSV fixture as GTD's workbook: one sheet, numbers stored as numbers."""
    book = Workbook()
    sheet = book.active
    sheet.title = "Data"
    with open(source, encoding="utf-8", newline="") as f:
        for cells in csv.reader(f):
            sheet.append([_as_number(c) for c in cells])
    book.save(path)


def _as_number(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text or None


@pytest.mark.parametrize("source", [GTD, SAMPLES["gtd"]], ids=["0522dist", "sample"])
def test_gtd_xlsx_matches_csv(tmp_path, places, source):
    path = tmp_path / source.with_suffix(".xlsx").name
    _write_xlsx(source, path)
    from_xlsx, from_csv = read_file("gtd", path, places), read_file("gtd", source, places)
    assert from_xlsx.layout.endswith("in XLSX") and from_csv.layout.endswith("in CSV")
    assert from_xlsx.records == from_csv.records
    assert from_xlsx.release == from_csv.release
    reasons = [(o.reason, o.detail) for o in from_xlsx.rejected]
    assert reasons == [(o.reason, o.detail) for o in from_csv.rejected]
    # told apart by content, not by name
    misnamed = path.with_suffix(".csv")  # the same name (the release is read from it)
    misnamed.write_bytes(path.read_bytes())
    assert read_file("gtd", misnamed, places).records == from_csv.records


def test_gtd_sample(places):
    result = read_file("gtd", SAMPLES["gtd"], places)
    assert [(o.line, o.status, o.reason) for o in result.rejected] == [
        (6, REFUSED, "outside Khyber Pakhtunkhwa"),
        (7, FAILED, "coordinates out of range"),
        (8, FAILED, "bad date"),
        (9, FAILED, "nkill is not a whole number >= 0"),
        (10, FAILED, "claimed is not one of 1, 0, -9"),
        (11, FAILED, "missing coordinates"),
        (12, FAILED, "duplicate id"),
    ]
    records = by_id(result)
    year = records["gtd-200800000003"]  # imonth 0: the year; provstate "North-West Frontier"
    assert (year["date"], year["date_precision"], year["date_end"]) == (
        "2008-01-01",
        "range",
        "2008-12-31",
    )
    assert records["gtd-201904250004"]["target"] == "polio workers"
    # the summary of the row on line 13 spans two lines, so the next row starts on line 15
    assert outcomes(result)[15].id == "gtd-202405170012"
    assert "shot dead after prayers" in records["gtd-202405060011"]["description"]


def test_gtd_xlsx_row_numbers_count_empty_rows(tmp_path, places):
    path = tmp_path / "gaps.xlsx"
    book = Workbook()
    sheet = book.active
    with open(SAMPLES["gtd"], encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    sheet.append(rows[0])
    sheet.append([])  # row 2 empty
    sheet.append([_as_number(c) for c in rows[1]])  # row 3
    book.save(path)
    assert [o.line for o in read_file("gtd", path, places).outcomes] == [3]


def test_cp1252_file_is_decoded(tmp_path, places):
    text = SAMPLES["gtd"].read_text(encoding="utf-8")
    text = text.replace("a suicide bomber attacked", "a suicide bomber — at a café — attacked")
    path = tmp_path / "gtd_cp1252.csv"
    path.write_bytes(text.encode("cp1252"))
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    result = read_file("gtd", path, places)
    assert "— at a café —" in by_id(result)["gtd-202307300001"]["description"]


def test_decode_text_falls_back_for_the_whole_file():
    assert decode_text("Peña".encode()) == "Peña"
    assert decode_text(b"\xef\xbb\xbfid") == "id"  # BOM dropped
    assert decode_text(b"Pe\xf1a \x93q\x94") == "Peña “q”"  # cp1252
    assert decode_text(b"\x81\xf1") == "\x81ñ"  # not cp1252 either: latin-1


def test_formula_text_is_stored_as_the_provider_wrote_it(places, tmp_path):
    """Every reader of the API and popups sees the source's words; only CSV files, which open in
    spreadsheets, neutralise them (the report here, the downloads in test_api)."""
    result = read_file("acled", SAMPLES["acled"], places)
    acled = by_id(result)
    assert acled["acled-PAK90003"]["description"].startswith("=HYPERLINK(")
    assert acled["acled-PAK90012"]["description"].startswith("@Synthetic")
    ucdp = by_id(read_file("ucdp", SAMPLES["ucdp"], places))
    assert ucdp["ucdp-900003"]["description"].startswith("=cmd|")
    report = tmp_path / "report.csv"
    write_csv(result, report)
    with open(report, encoding="utf-8", newline="") as f:
        cells = [c for row in csv.reader(f) for c in row]
    assert not any(c.startswith(("=", "+", "@")) for c in cells)


# --- files that cannot be read, files that mostly fail ---------------------------------------


def test_an_unrecognised_layout_names_the_columns_and_the_layouts_known(places):
    with pytest.raises(SchemaError) as err:
        read_file("acled", GED, places)
    message = str(err.value)
    assert "is not an ACLED file in any layout kpmap knows" in message
    assert "Columns found (49): id, relid, year" in message
    assert "ACLED columns: lacks the column(s) event_id_cnty, event_date" in message
    assert err.value.status == 422
    with pytest.raises(SchemaError, match=r"UCDP GED columns of an older release .* lacks"):
        read_file("ucdp", GTD, places)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(200), "old binary Excel"),
        (b"PK\x03\x04 not really a zip", "not a readable XLSX"),
        (b"\x00\x01\x02\x03binary", "neither CSV, XLSX nor JSON"),
        (b"{not json", "not readable JSON"),
        (b'{"data": []}', "holds no events"),
        (b"just some text\nwithout the columns\n", r"lacks the column\(s\)"),
    ],
)
def test_unreadable_files_raise_schema_error(tmp_path, places, content, expected):
    path = tmp_path / "input.csv"
    path.write_bytes(content)
    with pytest.raises(SchemaError, match=expected):
        read_file("gtd", path, places)


def test_missing_file_and_unknown_format(tmp_path, places):
    with pytest.raises(SchemaError, match="cannot read"):
        read_file("ucdp", tmp_path / "nope.csv", places)
    with pytest.raises(InvalidQuery, match="acled, gtd, ucdp"):
        read_file("csv", GED, places)


def _ged_with_rows(tmp_path: Path, good: int, bad: int) -> Path:
    lines = GED.read_text().split("\n")
    header, rows = lines[0], [r for r in lines[1:] if r.startswith("9001")]
    good_rows = [r for r in rows if r.startswith(("900102", "900104", "900105"))][:good]
    bad_rows = [rows[-1].replace("900118", f"9009{i:02d}") for i in range(bad)]  # bad dates
    path = tmp_path / "mostly_failing.csv"
    path.write_text("\n".join([header, *good_rows, *bad_rows]) + "\n")
    return path


def test_a_file_that_mostly_fails_is_not_imported(tmp_path, places):
    with pytest.raises(ImportFailed) as err:
        read_file("ucdp", _ged_with_rows(tmp_path, good=2, bad=3), places)
    assert "3 of 5 rows cannot be read (more than half)" in str(err.value)
    assert "line 4: bad date: date_start '2023-13-01 00:00:00.000'" in str(err.value)
    assert len(err.value.result.records) == 2  # kept for the report, not imported
    # half failing is not "mostly"
    half = read_file("ucdp", _ged_with_rows(tmp_path, good=3, bad=3), places)
    assert len(half.records) == 3 and len(half.failed) == 3


def test_a_file_from_which_nothing_is_taken_is_not_imported(tmp_path, places):
    lines = GED.read_text().split("\n")
    path = tmp_path / "sindh.csv"
    path.write_text("\n".join([lines[0], *[r for r in lines if r.startswith("900117")]]) + "\n")
    with pytest.raises(ImportFailed, match=r"none of its 1 rows is taken \(1 outside Khyber"):
        read_file("ucdp", path, places)
    path.write_text(lines[0] + "\n")
    with pytest.raises(ImportFailed, match="no data rows"):
        read_file("ucdp", path, places)


def test_rows_of_another_width_and_blank_lines(tmp_path, places):
    lines = GED.read_text().split("\n")
    path = tmp_path / "ragged.csv"
    first = next(r for r in lines if r.startswith("900102"))
    path.write_text("\n".join([lines[0], "", first, "900099,too,few", ""]))
    result = read_file("ucdp", path, places)
    assert [r["id"] for r in result.records] == ["ucdp-900102"]
    assert [(o.line, o.reason, o.detail) for o in result.rejected] == [
        (4, "the row has another number of cells than the header", "3 cells, the header has 49")
    ]


def test_semicolon_separated_csv(tmp_path, places):
    path = tmp_path / SAMPLES["ucdp"].name
    with open(SAMPLES["ucdp"], encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter=";").writerows(rows)
    expected = read_file("ucdp", SAMPLES["ucdp"], places).records
    assert read_file("ucdp", path, places).records == expected


# --- the report ------------------------------------------------------------------------------


def test_report_summary(ged):
    text = "\n".join(summary(ged))
    assert f"layout    {ged.layout}" in text
    assert "dataset   ucdp-ged, release 2025 (GED 25.1)" in text
    assert "rows      18 read: 12 taken, 5 refused (not for this map), 1 failed" in text
    assert "refused        1  where_prec 5: the area spans districts" in text
    assert "line 13: adm_1=Khyber Pakhtunkhwa province, adm_2=Lakki Marwat district" in text
    assert "failed         1  bad date" in text
    assert "districts named differently from the point's district: 1" in text
    assert "line 15: ucdp-900113: adm_2 'Bannu district' is bannu" in text
    assert "rows whose province is not KP but whose point is in KP (taken): 1" in text
    assert "unmapped  actor names not in data/actors.toml: 'Jundullah' (1)" in text
    # the totals are the provider's best figures of the rows taken, read again from the file
    taken = {o.id for o in ged.outcomes if o.status == TAKEN}
    best = sum(int(r["best"]) for r in csv_rows(GED) if f"ucdp-{r['id']}" in taken)
    assert f"totals    12 events taken, {best} killed (best)" in text


def test_report_lists_the_first_three_lines_per_reason(places):
    result = read_file("acled", ACLED_2019, places)
    lines = summary(result)
    at = lines.index(next(line for line in lines if "ACLED event type not imported" in line))
    assert "line 10: event_type 'Protests'" in lines[at + 1]
    assert "line 11: event_type 'Strategic developments'" in lines[at + 2]


def test_report_csv_has_every_row(tmp_path, ged):
    path = tmp_path / "report.csv"
    write_csv(ged, path)
    rows = csv_rows(path)
    assert tuple(rows[0]) == REPORT_COLUMNS
    assert [(int(r["line"]), r["outcome"]) for r in rows] == [
        (o.line, o.status) for o in ged.outcomes
    ]
    disagreeing = next(r for r in rows if r["id"] == "ucdp-900113")
    assert (disagreeing["district"], disagreeing["district_reported"]) == (
        "north-waziristan",
        "Bannu district",
    )
    assert "is bannu, but the point lies in north-waziristan" in disagreeing["flags"]
    spans = next(r for r in rows if r["id"] == "ucdp-900107")
    assert (spans["outcome"], spans["reason"]) == (
        "refused",
        "where_prec 5: the area spans districts",
    )


# --- helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("Khyber Pakhtunkhwa", True),
        ("Khyber-Pakhtunkhwa", True),
        ("Khyber Pakhtunkhwa province", True),
        ("Khyber Pakhtoonkhwa", True),
        ("KPK", True),
        ("NWFP", True),
        ("North-West Frontier Province", True),
        ("North West Frontier", True),
        ("FATA", True),
        ("Federally Administered Tribal Areas", True),
        ("Federally Administered Tribal Areas (FATA)", True),
        ("Punjab", False),
        ("Balochistān province", False),
        ("Islamabad Capital Territory", False),
        ("", None),
        ("Unknown", None),
    ],
)
def test_admin1_status(name, status):
    assert admin1_status(name) is status


def test_safe_text():
    assert safe_text("  plain   text ") == "plain text"
    assert safe_text("@SUM(A1)") == "@SUM(A1)"  # as written: CSV writers neutralise it
    long = safe_text("word " * 100)
    assert len(long) <= 300 and long.endswith("word…")


def test_distances_are_measured_at_once_and_only_with_an_outline(places, ged):
    km = places.distances_km([71.5436, 72.36], [32.5853, 33.77])
    assert len(km) == 2 and all(5 < k < 40 for k in km)
    plain = read_file("ucdp", GED, lambda lon, lat: places(lon, lat))
    assert outcomes(plain)[13].detail.endswith("outside KP (distance not measured)")
    assert [r["id"] for r in plain.records] == [r["id"] for r in ged.records]


# --- the real districts ----------------------------------------------------------------------


def test_real_districts_locate_peshawar(store, tmp_path):
    in_kp = district_locator(store)
    assert in_kp(71.5785, 34.0151) == "peshawar"
    assert in_kp(67.0011, 24.8607) is None  # Karachi
    # Arandu crossing: 0.6 km outside the COD outline, in the sliver before the Durand Line
    assert in_kp(71.54861, 35.31028) == "lower-chitral"
    result = read_file("acled", SAMPLES["acled"], in_kp)
    districts = {r["id"]: r["district"] for r in result.records}
    assert districts["acled-PAK90003"] == "peshawar"
    assert districts["acled-PAK90001"] == "bajaur"
