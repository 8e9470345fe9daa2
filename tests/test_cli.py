"""geo/cli.py: the kpmap command's exit codes and output."""

import csv
import json
import re
import shutil
from pathlib import Path

from geo import paths
from geo.cli import main
from geo.store import Store
from tests.helpers import offline_mirror


def test_info_prints_counts_bounds_and_sources(store_dir, capsys):
    assert main(["info", str(store_dir)]) == 0
    out = capsys.readouterr().out
    assert "districts: Districts of Khyber Pakhtunkhwa" in out
    assert "features  35" in out
    assert "© OpenStreetMap contributors" in out
    assert "reported 2630 km (The Express Tribune" in out


def test_validate_exit_codes(store_dir, tmp_path, capsys):
    assert main(["validate", str(store_dir)]) == 0
    assert "valid" in capsys.readouterr().out
    (tmp_path / "manifest.json").write_text(json.dumps({"layers": {}}))
    assert main(["validate", str(tmp_path)]) == 1
    assert "layer 'districts' is missing" in capsys.readouterr().out


def test_errors_are_one_line_not_a_traceback(tmp_path, capsys):
    assert main(["info", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kpmap info: error: no store at") and "Traceback" not in err


def test_a_reader_that_goes_away_ends_the_output_quietly(store_dir):
    """`kpmap info | head -1`: the pipe closes before kpmap writes; no traceback, exit 141."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "geo.cli", "info", str(store_dir)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the interpreter has even imported kpmap
    errors = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141, errors
    assert "Traceback" not in errors


def _attack_count(store) -> int:
    return json.loads((store / "manifest.json").read_text())["layers"]["attacks"]["count"]


def test_import_prints_the_report_and_adds_the_rows_taken(store_dir, tmp_path, capsys, monkeypatch):
    target = tmp_path / "store"
    shutil.copytree(store_dir, target)
    fixture = "tests/fixtures/importers/synthetic_GEDEvent_v25_1.csv"
    report = tmp_path / "report.csv"
    monkeypatch.setenv("KPMAP_MIRROR", offline_mirror())
    assert main(["import", "ucdp", fixture, "--store", str(target), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "layout    UCDP GED columns" in out
    assert "dataset   ucdp-ged, release 2025 (GED 25.1)" in out
    assert "rows      18 read: 12 taken, 5 refused (not for this map), 1 failed" in out
    assert "names say Khyber Pakhtunkhwa, but the point lies outside it" in out
    assert "unmapped  actor names not in data/actors.toml: 'Jundullah' (1)" in out
    # the dataset's totals in the store, before and after: the rows taken, none lost to links
    taken = re.search(r"totals    12 events taken, (\d+) killed \(best\)", out)
    assert f"ucdp-ged in the store: 0 -> 12 events, 0 -> {taken[1]} killed (best)" in out
    with open(report, encoding="utf-8", newline="") as f:
        assert len(list(csv.DictReader(f))) == 18
    counts = _attack_count(target)
    assert counts > _attack_count(store_dir)
    strike = Store.open(target).feature("attacks", "ucdp-900103")["properties"]
    assert (strike["category"], strike["actor"], strike["dataset"]) == (
        "air/drone strike",
        None,
        "ucdp-ged",
    )
    # re-importing the same file changes nothing: records are keyed by their provider ids
    assert main(["import", "ucdp", fixture, "--store", str(target)]) == 0
    assert _attack_count(target) == counts


def test_import_of_a_mostly_failing_file_changes_nothing(store_dir, tmp_path, capsys):
    target = tmp_path / "store"
    shutil.copytree(store_dir, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    lines = Path("tests/fixtures/importers/synthetic_GEDEvent_v25_1.csv").read_text().split("\n")
    good = next(line for line in lines if line.startswith("900102,"))
    bad = [line.replace("2024-04-01", "2024-04-31") for line in (good,) * 2]
    mostly = tmp_path / "mostly.csv"
    mostly.write_text("\n".join([lines[0], good.replace("900102", "900199"), *bad]) + "\n")
    report = tmp_path / "report.csv"
    assert (
        main(["import", "ucdp", str(mostly), "--store", str(target), "--report", str(report)]) == 1
    )
    captured = capsys.readouterr()
    assert "2 of 3 rows cannot be read (more than half)" in captured.err
    assert "line 3: bad date: date_start '2024-04-31 00:00:00.000'" in captured.err
    assert "failed         2  bad date" in captured.out
    assert report.exists()
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before


def test_import_of_an_unreadable_file_changes_nothing(store_dir, tmp_path, capsys):
    target = tmp_path / "store"
    shutil.copytree(store_dir, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    bad = tmp_path / "bad.csv"
    bad.write_text("just,some,columns\n1,2,3\n")
    assert main(["import", "gtd", str(bad), "--store", str(target)]) == 2
    err = capsys.readouterr().err
    assert "is not a GTD file in any layout kpmap knows" in err
    assert "Columns found (3): just, some, columns" in err
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before


def test_synth_refuses_the_default_store(capsys):
    assert main(["synth", "10", "--store", str(paths.store_dir())]) == 2
    assert "refusing" in capsys.readouterr().err
