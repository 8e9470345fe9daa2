"""geo/cli.py: the kpmap command's exit codes and output."""

import json

from geo.cli import main


def test_info_prints_counts_bounds_and_sources(store_dir, capsys):
    assert main(["info", str(store_dir)]) == 0
    out = capsys.readouterr().out
    assert "districts: Districts of Khyber Pakhtunkhwa" in out
    assert "features  31" in out
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
