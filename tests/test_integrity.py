"""A damaged store file is refused when the store opens and by `kpmap validate`, in one line that
names the file and what to run (geo.store.integrity)."""

import json
import shutil

import pytest

from geo.cli import main
from geo.errors import StoreCorrupt
from geo.store import Store


@pytest.fixture
def copy(store_dir, tmp_path):
    target = tmp_path / "store"
    shutil.copytree(store_dir, target)
    return target


def flip(path, needle: bytes | None = None) -> None:
    """Change one byte of a file (in `needle`'s first occurrence, else in the middle)."""
    data = bytearray(path.read_bytes())
    at = data.index(needle) + len(needle) if needle else len(data) // 2
    data[at] = ord("9") if data[at] != ord("9") else ord("8")
    path.write_bytes(bytes(data))


def test_the_manifest_records_every_file(store_dir):
    manifest = json.loads((store_dir / "manifest.json").read_text())
    on_disk = {p.name for p in store_dir.iterdir() if p.name != "manifest.json"}
    assert set(manifest["files"]) == on_disk
    for name in ("attacks.index.npz", "facts.json", "links.json", "imported.jsonl"):
        assert name in manifest["files"]
        assert len(manifest["files"][name]["sha256"]) == 64


@pytest.mark.parametrize(
    "name, needle",
    [
        ("attacks.geojson", b'"killed_best":'),  # a death toll: valid JSON, wrong figure
        ("attacks.index.npz", None),
        ("districts.geojson", b'"area_km2":'),
        ("facts.json", b'"value":'),
        ("links.json", None),
        ("border_sliver.geojson", None),
    ],
)
def test_one_changed_byte_is_refused_at_open_in_one_line(copy, capsys, name, needle):
    flip(copy / name, needle)
    with pytest.raises(StoreCorrupt) as caught:
        Store.open(copy)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{name} in {copy} is damaged") and "kpmap build" in message
    assert main(["info", str(copy)]) == 2  # the command line: one line, no traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"kpmap info: error: {message}"]
    assert main(["validate", str(copy)]) == 1
    assert any(
        line.startswith(f"{name} in {copy} is damaged")
        for line in capsys.readouterr().out.splitlines()
    )


def test_a_cut_short_or_missing_file_is_named(copy):
    with open(copy / "attacks.geojson", "r+b") as f:
        f.truncate(100)
    (copy / "links.json").unlink()
    with pytest.raises(StoreCorrupt, match=r"attacks.geojson in .* 100 bytes .* \(and 1 more"):
        Store.open(copy)


def test_damaged_imported_records_are_never_rebuilt_from(copy):
    from geo.build.pipeline import read_imported

    with open(copy / "imported.jsonl", "ab") as f:
        f.write(b'{"id": "synthetic-forged"}\n')
    with pytest.raises(StoreCorrupt, match="imported.jsonl .*`kpmap import`"):
        read_imported(copy)


def test_an_unreadable_manifest_is_one_line(copy):
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(StoreCorrupt, match="manifest.json in .* cannot be read"):
        Store.open(copy)
