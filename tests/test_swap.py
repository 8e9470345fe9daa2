"""The swap has no crash window (geo.store.swap): builds and imports are killed with SIGKILL at
every step (KPMAP_TEST_CRASH_AT), and after each kill a complete store is there, no record of an
import that finished is lost, and the next run leaves no work folder.

Every imported row here is SYNTHETIC (tests.test_build.write_ucdp_csv), not a real event.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from geo.build.pipeline import read_imported
from geo.store import Store, swap
from geo.store.integrity import problems
from tests.helpers import offline_mirror, write_ucdp_csv

ROOT = Path(__file__).resolve().parent.parent
RUN_CLI = "import sys; from geo.cli import main; sys.exit(main(sys.argv[1:]))"
# The same, on a system without renameat2(RENAME_EXCHANGE): a plain folder is replaced by two
# renames and a marker.
RUN_CLI_WITHOUT_EXCHANGE = (
    "import geo.store.swap as s; s._exchange = lambda a, b: False; " + RUN_CLI
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("swap-cache")


def kpmap(cache: Path, *args: str, crash: str | None = None, exchange: bool = True):
    env = {**os.environ, "KPMAP_MIRROR": offline_mirror(), "KPMAP_CACHE": str(cache)}
    env.pop(swap.CRASH_ENV, None)
    if crash:
        env[swap.CRASH_ENV] = crash
    code = RUN_CLI if exchange else RUN_CLI_WITHOUT_EXCHANGE
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def ucdp_file(folder: Path, batch: str, n: int = 3) -> tuple[Path, set[str]]:
    """A SYNTHETIC UCDP GED file of n events near Peshawar; (path, the ids it imports)."""
    rows = [
        {
            "id": f"{batch}{i}",
            "day": f"2018-03-{i + 1:02d}",
            "best": i,
            "low": i,
            "high": i,
            "longitude": f"{71.3 + i * 0.05:.4f}",
            "latitude": "33.9000",
        }
        for i in range(n)
    ]
    path = folder / f"ged-{batch}.csv"
    write_ucdp_csv(path, rows)
    return path, {f"ucdp-{batch}{i}" for i in range(n)}


def assert_complete(store: Path, imported: set[str]) -> None:
    """A whole store answers at `store`, and holds every record of the finished imports."""
    opened = Store.open(store)  # checks every file's sha256 against the manifest
    assert opened.layer("attacks")
    ids = {r["id"] for r in read_imported(store)}
    assert imported <= ids, sorted(imported - ids)


def leftovers(store: Path) -> list[str]:
    """Everything beside the store but the store, its current version and its lock."""
    live = swap.current(store)
    found = [
        p.name
        for p in store.parent.iterdir()
        if p.name not in (store.name, swap.lock_file(store).name, swap.versions_dir(store).name)
        and not p.name.endswith(".csv")
    ]
    versions = swap.versions_dir(store)
    if versions.is_dir():
        found += [f"versions/{p.name}" for p in versions.iterdir() if p.resolve() != live]
    return sorted(found)


def test_kills_at_every_step_never_leave_the_store_incomplete(store_dir, cache, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(store_dir, store)  # a plain folder, as an older kpmap left it
    assert not store.is_symlink()
    imported: set[str] = set()

    # While the store is still a plain folder: an import killed before the store is touched
    # (its work folder made; complete but not yet renamed) and with the new link made but not
    # moved. (Each kill costs a build: steps that leave the same state are not repeated.)
    for step in ("work", "complete", "linked"):
        path, _ = ucdp_file(tmp_path, f"p{step[:2]}")
        done = kpmap(cache, "import", "ucdp", path, "--store", store, crash=step)
        assert done.returncode == -signal.SIGKILL, (step, done.stderr)
        assert_complete(store, imported)
    # Two renames where there is no RENAME_EXCHANGE: killed between them, the next start
    # finishes the move.
    path, ids = ucdp_file(tmp_path, "m")
    done = kpmap(cache, "import", "ucdp", path, "--store", store, crash="migrating", exchange=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert not store.exists()  # the window the marker covers
    assert_complete(store, imported | ids)  # Store.open finished the move
    imported |= ids
    assert store.is_symlink()

    # Once the store is a link: the steps that move it, killed.
    for step in ("versioned", "linked", "switched"):
        path, ids = ucdp_file(tmp_path, f"l{step[:2]}")
        done = kpmap(cache, "import", "ucdp", path, "--store", store, crash=step)
        assert done.returncode == -signal.SIGKILL, (step, done.stderr)
        if step == "switched":
            imported |= ids  # the link had moved: that import is done
        assert_complete(store, imported)
    assert leftovers(store)  # what the kills left

    # The next run removes every leftover and keeps every finished import.
    path, ids = ucdp_file(tmp_path, "z")
    done = kpmap(cache, "import", "ucdp", path, "--store", store)
    assert done.returncode == 0, done.stderr
    imported |= ids
    assert_complete(store, imported)
    assert leftovers(store) == []
    assert problems(store.resolve(), json.loads((store / "manifest.json").read_bytes())) == []


def test_a_build_killed_once_a_plain_folder_is_exchanged_keeps_the_new_store(
    store_dir, cache, tmp_path
):
    """kpmap build on a store folder of an older kpmap, killed right after the folder and the
    link changed places (RENAME_EXCHANGE): the new store is there, the old folder a leftover."""
    store = tmp_path / "store"
    shutil.copytree(store_dir, store)
    done = kpmap(cache, "build", "--store", store, crash="switched")
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert store.is_symlink()
    assert_complete(store, set())
    assert leftovers(store)  # the old folder, removed by the next build (see above)


def test_a_store_an_older_kpmap_lost_in_its_swap_is_restored(store_dir, tmp_path):
    """The older two-rename swap, killed between its renames, left the store only in a hidden
    .store-<name>-old-* folder: the next start puts it back (imported records included)."""
    store = tmp_path / "store"
    shutil.copytree(store_dir, tmp_path / ".store-store-old-x1y2z3")
    (tmp_path / ".store-store-abcd1234").mkdir()  # its killed work folder
    assert Store.open(store).layer("attacks")
    assert store.is_dir() and not (tmp_path / ".store-store-old-x1y2z3").exists()


def test_a_second_build_waits_for_the_first(tmp_path):
    store = tmp_path / "store"
    with swap.locked(store):
        with pytest.raises(swap.Busy):
            with swap.locked(store, wait=False):
                pass
    with swap.locked(store, wait=False):  # released
        pass


def test_a_work_folder_in_use_is_never_removed(tmp_path):
    """Leftovers are removed only with the lock held, so never a running build's work folder."""
    store = tmp_path / "store"
    with swap.locked(store):
        work = swap.new_work(store)
        # another process's start finds no store and may not take the lock: it leaves it be
        assert swap.resolve(store) == store.resolve()
        assert work.is_dir()
