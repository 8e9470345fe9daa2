"""A provider's file is read whole or not at all (geo.importers.reading): an over-long cell, a
quote never closed, a byte that is not UTF-8. Every file here is SYNTHETIC, written by the
tests from the ACLED sample's header; no row is a real event.
"""

import csv
import io

import pytest

from geo.cli import main
from geo.errors import SchemaError
from geo.importers import FAILED, district_locator, read_file
from geo.importers.reading import decode, read_table
from tests.helpers import SAMPLES

HEADER = SAMPLES["acled"].read_text(encoding="utf-8").splitlines()[0].split(",")
URDU = "خار، باجوڑ"  # "Khar, Bajaur": UTF-8 characters a cp1252 reading would garble


@pytest.fixture(scope="module")
def places(store):
    return district_locator(store)


def acled_row(i: int, notes: str = "") -> dict[str, str]:
    """A SYNTHETIC ACLED row: a militant attack in Khar, Bajaur (not a real report)."""
    return {
        "event_id_cnty": f"PAK8{i:04d}",
        "event_date": f"2024-04-{i % 28 + 1:02d}",
        "year": "2024",
        "time_precision": "1",
        "disorder_type": "Political violence",
        "event_type": "Explosions/Remote violence",
        "sub_event_type": "Remote explosive/landmine/IED",
        "actor1": "TTP: Tehreek-i-Taliban Pakistan",
        "inter1": "2",
        "actor2": "Civilians (Pakistan)",
        "inter2": "7",
        "interaction": "27",
        "iso": "586",
        "region": "South Asia",
        "country": "Pakistan",
        "admin1": "Khyber Pakhtunkhwa",
        "admin2": "Bajaur",
        "location": "Khar",
        "latitude": "34.7310",
        "longitude": f"{71.5230 + i * 0.0001:.4f}",
        "geo_precision": "1",
        "source": "Synthetic wire",
        "source_scale": "National",
        "notes": notes or f"Synthetic test row {i}, not a real report.",
        "fatalities": "1",
        "timestamp": "1700000000",
    }


def acled_csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, HEADER, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def test_a_cell_over_csvs_field_limit_is_read_and_so_are_the_rows_after_it(tmp_path, places):
    long_notes = "Synthetic over-long notes. " * 8000  # 216,000 characters > 131,072
    rows = [acled_row(i, long_notes if i == 3 else "") for i in range(10)]
    path = tmp_path / "acled_long_cell.csv"
    path.write_text(acled_csv(rows), encoding="utf-8")
    result = read_file("acled", path, places)
    assert len(result.outcomes) == 10  # every row read, none lost after the long one
    assert not result.failed
    (taken,) = [r for r in result.records if r["id"] == "acled-PAK80003"]
    # read whole; the description keeps its first sentences (geo.importers.common.description)
    assert taken["description"].startswith("Synthetic over-long notes. Synthetic")
    assert len(taken["description"]) < len(long_notes)


def test_a_quote_never_closed_refuses_the_whole_file(tmp_path, places, capsys, store_dir):
    rows = [acled_row(i, f"Synthetic row {i} not a real report") for i in range(10)]
    text = acled_csv(rows).replace("Synthetic row 5 not", '"Synthetic row 5 with a quote, not')
    path = tmp_path / "acled_unclosed.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SchemaError, match="a quoted cell on line 7 is never closed"):
        read_file("acled", path, places)
    # on the command line: one line, exit 2, nothing imported
    assert main(["import", "acled", str(path), "--store", str(store_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing of the file is imported" in err[0]


def test_a_bad_byte_in_a_utf8_file_refuses_its_row_naming_line_and_offset(tmp_path, places):
    rows = [acled_row(i, f"Synthetic row {i} at {URDU}, not a real report.") for i in range(8)]
    data = bytearray(acled_csv(rows).encode("utf-8"))
    marker = b"Synthetic row 4 at"
    offset = data.index(marker) + len(b"Synthetic ")
    data[offset] = 0xFF  # a byte that is never UTF-8
    path = tmp_path / "acled_bad_byte.csv"
    path.write_bytes(bytes(data))
    assert decode(bytes(data))[1] == "UTF-8"
    result = read_file("acled", path, places)
    (failed,) = result.failed
    assert failed.status == FAILED and failed.reason == "not valid UTF-8"
    line = bytes(data).count(b"\n", 0, offset) + 1
    assert failed.line == line == 6
    assert f"byte 0xFF at line {line} (byte offset {offset})" in failed.detail
    assert len(result.records) == 7
    for record in result.records:  # the other rows as written: no mojibake, no control chars
        assert URDU in record["description"]
        assert not any("\x80" <= c <= "\x9f" or "\udc80" <= c <= "\udcff" for c in str(record))


def test_a_bad_byte_in_the_header_refuses_the_file(tmp_path):
    data = acled_csv([acled_row(1, URDU)]).encode("utf-8").replace(b"notes", b"not\xffes", 1)
    path = tmp_path / "acled_bad_header.csv"
    path.write_bytes(data)
    with pytest.raises(SchemaError, match=r"byte 0xFF at line 1 \(byte offset \d+\)"):
        read_table(path)


def test_a_file_without_utf8_characters_is_cp1252_and_says_so(tmp_path):
    text = acled_csv([acled_row(1, "Synthetic row at Peña, not a real report.")])
    path = tmp_path / "gtd_like_cp1252.csv"
    path.write_bytes(text.encode("cp1252"))
    table = read_table(path)
    assert any("decoded as cp1252" in note and "line 2" in note for note in table.notes)
    (row,) = [cells for _, cells in table.rows]
    assert "Synthetic row at Peña, not a real report." in row


def test_a_quote_closed_lines_later_refuses_the_joined_row_naming_its_lines(tmp_path, places):
    rows = [acled_row(i, "Synthetic row five" if i == 5 else "") for i in range(10)]
    # the other rows' notes hold commas, so they are quoted: the next quote closes the stray one
    text = acled_csv(rows).replace("Synthetic row five", '"Synthetic row five')
    path = tmp_path / "acled_quote_joins_lines.csv"
    path.write_text(text, encoding="utf-8")
    result = read_file("acled", path, places)
    (failed,) = result.failed
    assert failed.line == 7 and failed.reason == "a quote left open joins lines into one row"
    assert "lines 7-8" in failed.detail
    assert len(result.outcomes) == 9 and len(result.records) == 8
