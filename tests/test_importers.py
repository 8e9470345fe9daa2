"""Tests for geo/importers: ACLED, GTD (CSV and XLSX) and UCDP GED files -> canonical records.

The fixtures in tests/fixtures/importers/ are synthetic rows (each says so in its notes/summary)
with the providers' real column names and value conventions. `in_kp` is a box around KP so these
tests do not depend on the store; one test uses the real districts.
"""

import csv
from pathlib import Path

import pytest
from openpyxl import Workbook

from geo.errors import InvalidQuery, SchemaError
from geo.events import EVENT_TYPES, TARGETS, read_actors
from geo.importers import (
    FORMATS,
    ImportResult,
    Rejected,
    district_locator,
    read_file,
)
from geo.importers.common import admin1_status, decode_text, safe_text

FIXTURES = Path(__file__).parent / "fixtures" / "importers"
SAMPLES = {fmt: FIXTURES / f"{fmt}_sample.csv" for fmt in FORMATS}
SYNTHETIC_DISTRICT = "synthetic-district"


def in_box(lon: float, lat: float) -> str | None:
    """A box around KP (69-74.5 E, 31-37 N) standing in for the districts layer."""
    return SYNTHETIC_DISTRICT if 69 <= lon <= 74.5 and 31 <= lat <= 37 else None


def read(fmt: str, path: Path | None = None) -> ImportResult:
    return read_file(fmt, path or SAMPLES[fmt], in_box)


def by_id(result: ImportResult) -> dict[str, dict]:
    return {r["id"]: r for r in result.records}


def reasons(result: ImportResult) -> dict[int, str]:
    return {r.line: r.reason for r in result.rejected}


# --- every format ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_records_follow_the_schema(fmt):
    result = read(fmt)
    assert result.records
    actors = set(read_actors())
    for rec in result.records:
        assert rec["origin"] == fmt
        assert rec["id"].startswith(f"{fmt}-")
        assert rec["district"] == SYNTHETIC_DISTRICT
        assert rec["date_precision"] in ("day", "month", "range")
        assert (rec["date_end"] is not None) == (rec["date_precision"] == "range")
        assert len(rec["date"]) == (7 if rec["date_precision"] == "month" else 10)
        assert rec["geo_precision"] in (1, 2, 3)
        assert rec["actor"] in actors
        assert rec["event_type"] in EVENT_TYPES
        assert rec["target"] in TARGETS
        assert rec["claimed"] in (True, False, None)
        killed = [
            rec[k] for k in ("killed_low", "killed_best", "killed_high") if rec[k] is not None
        ]
        assert killed == sorted(killed)
        assert isinstance(rec["lon"], float) and isinstance(rec["lat"], float)
        assert "synthetic" in rec["description"].lower()
        [source] = rec["sources"]
        assert set(source) == {"publication", "title", "date", "url"}
        assert source["date"] == rec["date"]
        assert "distance_to_border_km" not in rec and "former_fata" not in rec


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_row_is_either_a_record_or_rejected(fmt):
    result = read(fmt)
    with open(SAMPLES[fmt], encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(result.records) + len(result.rejected) == len(rows)
    assert all(isinstance(r, Rejected) and r.reason for r in result.rejected)


# --- ACLED -----------------------------------------------------------------------------------


def test_acled_mapping():
    records = by_id(read("acled"))
    assert sorted(records) == [
        "acled-PAK90001",
        "acled-PAK90002",
        "acled-PAK90003",
        "acled-PAK90004",
        "acled-PAK90012",
        "acled-PAK90014",
    ]
    bajaur = records["acled-PAK90001"]
    assert bajaur["date"] == "2023-07-30" and bajaur["date_precision"] == "day"
    assert (bajaur["lon"], bajaur["lat"]) == (71.523, 34.731)
    assert bajaur["actor"] == "ISKP"
    assert bajaur["event_type"] == "suicide bombing"
    assert bajaur["target"] == "political party"  # Civilians with JUI-F as associated actor
    assert (bajaur["killed_low"], bajaur["killed_best"], bajaur["killed_high"]) == (None, 54, None)
    assert bajaur["claimed"] is None and bajaur["injured_low"] is None
    assert bajaur["sources"] == [
        {"publication": "ACLED", "title": "Dawn; Express Tribune", "date": "2023-07-30", "url": ""}
    ]
    # ISO event_date as in newer exports
    assert records["acled-PAK90002"]["date"] == "2023-07-30"
    # time_precision 2: the week, a range of ± 3 days
    police = records["acled-PAK90003"]
    assert (police["date"], police["date_precision"], police["date_end"]) == (
        "2024-03-09",
        "range",
        "2024-03-15",
    )
    assert police["target"] == "police / CTD" and police["actor"] == "unknown"
    # time_precision 3: the month; the army's clash with the TTP is the TTP's, against soldiers
    clash = records["acled-PAK90004"]
    assert (clash["date"], clash["date_precision"]) == ("2024-04", "month")
    assert clash["actor"] == "TTP" and clash["target"] == "security forces"
    assert clash["geo_precision"] == 2
    # an old province name is KP
    assert records["acled-PAK90012"]["event_type"] == "bombing / IED"
    assert records["acled-PAK90014"]["target"] == "polio workers"


def test_acled_rejections():
    assert reasons(read("acled")) == {
        6: "outside Khyber Pakhtunkhwa (admin1=Punjab, point 74.3436,31.5497)",
        7: "missing coordinates",
        8: "coordinates are 0,0 (a placeholder, not a place)",
        9: "latitude/longitude look swapped (latitude 71.5785, longitude 34.0151)",
        10: "bad date: event_date '31 June 2023'",
        11: "fatalities 'several' is not a whole number",
        12: "not an attack: event_type 'Protests'",
        14: "outside Khyber Pakhtunkhwa (admin1=Khyber Pakhtunkhwa, point 67.0011,24.8607)",
        16: "geo_precision '4' is not one of 1, 2, 3",
    }


def test_other_provinces_are_rejected_without_the_point_test():
    calls = []

    def counting(lon, lat):
        calls.append((lon, lat))
        return in_box(lon, lat)

    read_file("acled", SAMPLES["acled"], counting)
    assert (74.3436, 31.5497) not in calls  # the Punjab row
    assert (67.0011, 24.8607) in calls  # admin1 says KP: the point decides


def test_formula_text_is_neutralised():
    records = by_id(read("acled"))
    assert records["acled-PAK90003"]["description"].startswith("'=HYPERLINK(")
    assert records["acled-PAK90004"]["description"].startswith("'+Synthetic")
    assert records["acled-PAK90012"]["description"].startswith("'@Synthetic")
    assert by_id(read("ucdp"))["ucdp-900003"]["description"].startswith("'=cmd|")
    assert by_id(read("gtd"))["gtd-200800000003"]["description"].startswith("'-Synthetic")


# --- GTD -------------------------------------------------------------------------------------


def test_gtd_mapping():
    records = by_id(read("gtd"))
    bajaur = records["gtd-202307300001"]
    assert bajaur["actor"] == "ISKP" and bajaur["claimed"] is True
    assert bajaur["event_type"] == "suicide bombing" and bajaur["target"] == "political party"
    assert bajaur["killed_best"] == 63
    assert (bajaur["injured_low"], bajaur["injured_high"]) == (200, 200)
    assert bajaur["sources"][0]["publication"] == "GTD"
    assert bajaur["sources"][0]["title"].startswith('"Synthetic citation one,"')
    # iday 0: the month; specificity 2; claimed -9 is not known; nkill blank is not known
    bara = records["gtd-202402000002"]
    assert (bara["date"], bara["date_precision"], bara["date_end"]) == ("2024-02", "month", None)
    assert bara["geo_precision"] == 2 and bara["claimed"] is None and bara["killed_best"] is None
    assert bara["actor"] == "Lashkar-e-Islam" and bara["target"] == "security forces"
    # imonth 0: the whole year; specificity 3 -> 3; an NWFP-era row
    year = records["gtd-200800000003"]
    assert (year["date"], year["date_precision"], year["date_end"]) == (
        "2008-01-01",
        "range",
        "2008-12-31",
    )
    assert year["geo_precision"] == 3 and year["claimed"] is False
    assert year["event_type"] == "targeted killing" and year["target"] == "police / CTD"
    # specificity 1 but in the city's vicinity -> 2; polio in target1
    swat = records["gtd-201904250004"]
    assert swat["geo_precision"] == 2 and swat["target"] == "polio workers"
    assert swat["actor"] == "TTP"
    assert records["gtd-202405060011"]["target"] == "religious leaders"
    assert records["gtd-202405170012"]["event_type"] == "kidnapping"


def test_gtd_rejections_and_multiline_rows():
    assert reasons(read("gtd")) == {
        6: "outside Khyber Pakhtunkhwa (admin1=Balochistan, point 66.9967,30.1833)",
        7: "coordinates out of range (latitude 95, longitude 71)",
        8: "bad date: iyear/imonth/iday 2023/2/31 is not a day",
        9: "nkill '2.5' is not a whole number >= 0",
        10: "claimed 'yes' is not one of 1, 0, -9",
        11: "missing coordinates",
        12: "duplicate id gtd-202307300001 (first on line 2)",
    }
    # the summary of the row on line 13 spans two lines, so the next row starts on line 15
    text = SAMPLES["gtd"].read_text(encoding="utf-8").splitlines()
    assert text[14].startswith("202405170012,")
    scholar = by_id(read("gtd"))["gtd-202405060011"]["description"]
    assert "shot dead after prayers" in scholar  # whitespace collapsed


def _write_gtd_xlsx(path: Path) -> None:
    """The CSV fixture as the GTD workbook is distributed: one sheet, numbers stored as numbers."""
    book = Workbook()
    sheet = book.active
    sheet.title = "Data"
    with open(SAMPLES["gtd"], encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        sheet.append(next(reader))
        for cells in reader:
            sheet.append([_as_number(c) for c in cells])
    book.save(path)


def _as_number(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text or None


def test_gtd_xlsx_matches_csv(tmp_path):
    path = tmp_path / "globalterrorismdb_sample.xlsx"
    _write_gtd_xlsx(path)
    from_xlsx, from_csv = read("gtd", path), read("gtd")
    assert from_xlsx.records == from_csv.records
    # XLSX lines are sheet rows: the same as the CSV's lines up to the two-line summary
    xlsx_reasons = reasons(from_xlsx)
    assert xlsx_reasons == reasons(from_csv)
    assert [r.line for r in from_xlsx.rejected] == [6, 7, 8, 9, 10, 11, 12]
    # told apart by content, not by name
    misnamed = tmp_path / "export.csv"
    misnamed.write_bytes(path.read_bytes())
    assert read("gtd", misnamed).records == from_csv.records


def test_gtd_xlsx_row_numbers_count_empty_rows(tmp_path):
    path = tmp_path / "gaps.xlsx"
    book = Workbook()
    sheet = book.active
    with open(SAMPLES["gtd"], encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    sheet.append(rows[0])
    sheet.append([])  # row 2 empty
    sheet.append([_as_number(c) for c in rows[5]])  # row 3: the Balochistan row
    book.save(path)
    result = read("gtd", path)
    assert [r.line for r in result.rejected] == [3]


def test_cp1252_file_is_decoded(tmp_path):
    text = SAMPLES["gtd"].read_text(encoding="utf-8")
    text = text.replace("a suicide bomber attacked", "a suicide bomber — at a café — attacked")
    path = tmp_path / "gtd_cp1252.csv"
    path.write_bytes(text.encode("cp1252"))
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    result = read("gtd", path)
    assert "— at a café —" in by_id(result)["gtd-202307300001"]["description"]
    assert reasons(result) == reasons(read("gtd"))


def test_decode_text_falls_back_for_the_whole_file():
    assert decode_text("Peña".encode()) == "Peña"
    assert decode_text(b"\xef\xbb\xbfid") == "id"  # BOM dropped
    assert decode_text(b"Pe\xf1a \x93q\x94") == "Peña “q”"  # cp1252
    assert decode_text(b"\x81\xf1") == "\x81ñ"  # not cp1252 either: latin-1


# --- UCDP ------------------------------------------------------------------------------------


def test_ucdp_mapping():
    records = by_id(read("ucdp"))
    assert sorted(records) == ["ucdp-900001", "ucdp-900002", "ucdp-900003", "ucdp-900010"]
    rally = records["ucdp-900001"]
    assert rally["actor"] == "ISKP"  # one-sided: side_a
    assert rally["target"] == "civilians" and rally["event_type"] == "unknown"
    assert (rally["killed_low"], rally["killed_best"], rally["killed_high"]) == (54, 63, 70)
    assert rally["date"] == "2023-07-30" and rally["date_precision"] == "day"
    assert rally["geo_precision"] == 1 and rally["location"] == "Khar town"
    assert rally["sources"][0]["publication"] == "UCDP GED"
    # state-based: side_b; date_prec 4 spanning one calendar month; where_prec 3
    clash = records["ucdp-900002"]
    assert clash["actor"] == "TTP" and clash["target"] == "unknown"
    assert (clash["date"], clash["date_precision"]) == ("2024-04", "month")
    assert clash["geo_precision"] == 3
    # non-state: side_a; a range of days; where_prec 2
    rivals = records["ucdp-900003"]
    assert rivals["actor"] == "Lashkar-e-Islam"
    assert (rivals["date"], rivals["date_end"], rivals["date_precision"]) == (
        "2022-05-03",
        "2022-05-06",
        "range",
    )
    assert rivals["geo_precision"] == 2
    # blank adm_1: the point decides
    assert records["ucdp-900010"]["date_precision"] == "range"


def test_ucdp_rejections():
    assert reasons(read("ucdp")) == {
        5: "outside Khyber Pakhtunkhwa (admin1=Sindh province, point 67.0011,24.8607)",
        6: "bad date: date_start '2023-13-01'",
        7: "best 'n/a' is not a whole number",
        8: "low 10, best 5, high 20 are not in order",
        9: "where_prec '9' is not a whole number from 1 to 7",
        10: "latitude/longitude look swapped (latitude 70.6056, longitude 32.9889)",
    }


# --- files that cannot be read ---------------------------------------------------------------


def test_wrong_format_names_the_missing_columns():
    with pytest.raises(SchemaError) as err:
        read("acled", SAMPLES["ucdp"])
    message = str(err.value)
    assert "event_id_cnty" in message and "sub_event_type" in message
    assert "ACLED" in message
    assert err.value.status == 422


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(200), "old binary Excel"),
        (b"PK\x03\x04 not really a zip", "not a readable XLSX"),
        (b"\x00\x01\x02\x03binary", "neither CSV nor XLSX"),
        (b"just some text\nwithout the columns\n", r"lacks the column\(s\)"),
    ],
)
def test_unreadable_files_raise_schema_error(tmp_path, content, expected):
    path = tmp_path / "input.csv"
    path.write_bytes(content)
    with pytest.raises(SchemaError, match=expected):
        read("gtd", path)


def test_missing_file_raises_schema_error(tmp_path):
    with pytest.raises(SchemaError, match="cannot read"):
        read("ucdp", tmp_path / "nope.csv")


def test_unknown_format():
    with pytest.raises(InvalidQuery, match="acled, gtd, ucdp"):
        read_file("csv", SAMPLES["acled"], in_box)


def test_ragged_rows_and_blank_lines_are_handled(tmp_path):
    lines = SAMPLES["ucdp"].read_text(encoding="utf-8").splitlines()
    path = tmp_path / "ragged.csv"
    path.write_text("\n".join([lines[0], "", lines[1], "900099,too,few", ""]), encoding="utf-8")
    result = read("ucdp", path)
    assert [r["id"] for r in result.records] == ["ucdp-900001"]
    assert result.rejected == [Rejected(4, "the row has 3 cells, the header has 49")]


def test_semicolon_separated_csv(tmp_path):
    with open(SAMPLES["ucdp"], encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    path = tmp_path / "semicolons.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter=";").writerows(rows)
    assert read("ucdp", path).records == read("ucdp").records


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
    assert safe_text("@SUM(A1)") == "'@SUM(A1)"
    assert safe_text("-2 killed") == "'-2 killed"
    long = safe_text("word " * 100)
    assert len(long) <= 300 and long.endswith("word…")


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
