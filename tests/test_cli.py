"""geo/cli.py: the kpmap command's exit codes and output."""

import json
import shutil

from geo import paths
from geo.cli import main
from tests.conftest import offline_mirror


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


def test_import_reports_rejected_rows_and_adds_the_rest(store_dir, tmp_path, capsys, monkeypatch):
    target = tmp_path / "store"
    shutil.copytree(store_dir, target)
    fixture = "tests/fixtures/importers/acled_sample.csv"
    monkeypatch.setenv("KPMAP_MIRROR", offline_mirror())
    assert main(["import", "acled", fixture, "--store", str(target)]) == 0
    out = capsys.readouterr().out
    assert "not imported: outside Khyber Pakhtunkhwa" in out
    # the Khar bombing: the nearer of ACLED's two reports is linked to the authored record
    assert "linked: 1 attack(s) reported by more than one dataset, 2 record(s)" in out
    assert "  acled-PAK90002: 0.4 km from kp-2023-07-30-khar, dates overlap, both name ISKP" in out
    counts = json.loads((target / "manifest.json").read_text())["layers"]["attacks"]["count"]
    assert (
        counts > json.loads((store_dir / "manifest.json").read_text())["layers"]["attacks"]["count"]
    )
    # re-importing the same file changes nothing: records are keyed by their provider ids
    assert main(["import", "acled", fixture, "--store", str(target)]) == 0
    again = json.loads((target / "manifest.json").read_text())["layers"]["attacks"]["count"]
    assert again == counts


def test_import_of_an_unreadable_file_changes_nothing(store_dir, tmp_path, capsys):
    target = tmp_path / "store"
    shutil.copytree(store_dir, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    bad = tmp_path / "bad.csv"
    bad.write_text("just,some,columns\n1,2,3\n")
    assert main(["import", "gtd", str(bad), "--store", str(target)]) == 2
    assert "is not a GTD file" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before


def test_synth_refuses_the_default_store(capsys):
    assert main(["synth", "10", "--store", str(paths.store_dir())]) == 2
    assert "refusing" in capsys.readouterr().err
