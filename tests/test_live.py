"""geo/store/live.py: a store that changes while it is served, and what the app makes of it."""

import gc
import logging
import shutil
import threading
import time
import weakref
from pathlib import Path

import mercantile
import pytest

from app import create_app
from app.extensions import KEY
from geo import aggregate
from geo.build.pipeline import build_store
from geo.store import current_version
from geo.store import live as live_module
from geo.store.live import LiveStore
from tests.helpers import PESHAWAR, attack_record, offline_mirror

# --- the holder, with stand-in stores ------------------------------------------------------


class FakeStore:
    def __init__(self, version: str):
        self.version = version


class Disk:
    """The version at the path, and what opening it gives (a FakeStore or an error)."""

    def __init__(self, version: str = "v1"):
        self.version: str | None = version
        self.opened: list[str] = []
        self.fail: set[str] = set()
        self.gate: threading.Event | None = None  # set: opening waits for it

    def open(self, path: Path) -> FakeStore:
        version = self.version
        assert version is not None
        self.opened.append(version)
        if self.gate is not None:
            self.gate.wait(10)
        if version in self.fail:
            raise ValueError(f"attacks.geojson: bad hash\n(and a second line) {version}")
        return FakeStore(version)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def disk(monkeypatch) -> Disk:
    disk = Disk()
    monkeypatch.setattr(live_module, "current_version", lambda path: disk.version)
    return disk


def holder(disk: Disk, clock: Clock | None = None, **kwargs) -> LiveStore:
    kwargs.setdefault("background", False)
    return LiveStore("store", check_every=1.0, opener=disk.open, clock=clock or Clock(), **kwargs)


def test_the_version_is_looked_at_once_per_interval(disk, monkeypatch):
    clock = Clock()
    looks = []
    monkeypatch.setattr(live_module, "current_version", lambda path: looks.append(1) or "v1")
    live = holder(disk, clock)
    for _ in range(100):
        live.current()
    assert looks == []
    clock.now = 1.5
    for _ in range(100):
        live.current()
    assert len(looks) == 1


def test_a_new_version_is_served_from_the_next_request_on(disk):
    clock = Clock()
    live = holder(disk, clock)
    in_flight = live.current()
    disk.version = "v2"
    assert live.current() is in_flight  # within the interval: not looked at yet
    clock.now = 2.0
    new = live.current()
    assert new.version == "v2" and live.version == "v2"
    assert in_flight.version == "v1"  # a request that took the old store keeps it
    assert disk.opened == ["v1", "v2"]
    clock.now = 4.0
    assert live.current() is new and disk.opened == ["v1", "v2"]  # same version: not reopened


def test_one_thread_opens_the_new_store_while_the_others_serve_the_old(disk):
    clock = Clock()
    live = holder(disk, clock, background=True)
    old = live.current()
    disk.version, disk.gate = "v2", threading.Event()
    clock.now = 2.0
    got: list[FakeStore] = []
    threads = [threading.Thread(target=lambda: got.append(live.current())) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert got == [old] * 16  # nobody waited for the opening
    clock.now = 4.0
    assert live.current() is old  # still opening
    disk.gate.set()
    deadline = time.monotonic() + 5
    while live.version != "v2" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert live.current().version == "v2"
    assert disk.opened == ["v1", "v2"]  # opened once, by one thread


def test_a_store_that_fails_to_open_leaves_the_old_one_served_and_is_logged_once(disk, caplog):
    clock = Clock()
    live = holder(disk, clock)
    disk.version = "v2"
    disk.fail.add("v2")
    with caplog.at_level(logging.ERROR, logger="geo.store.live"):
        for step in range(1, 6):
            clock.now = 2.0 * step
            assert live.current().version == "v1"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "v2" in lines[0] and "still serving version v1" in lines[0] and "bad hash" in lines[0]
    assert disk.opened == ["v1", "v2"]  # the bad version is not tried again...
    disk.version = "v3"  # ...a later one is
    clock.now = 20.0
    assert live.current().version == "v3"


def test_no_store_at_the_path_for_a_moment_keeps_the_old_one(disk):
    clock = Clock()
    live = holder(disk, clock)
    disk.version = None  # between two renames of a swap
    clock.now = 2.0
    assert live.current().version == "v1"


def test_a_warm_up_that_fails_counts_as_a_failed_open(disk, caplog):
    clock = Clock()
    warmed = []

    def warm(store):
        warmed.append(store.version)
        if store.version == "v2":
            raise RuntimeError("cannot read the attack table")

    live = holder(disk, clock, warm=[warm])
    disk.version, clock.now = "v2", 2.0
    with caplog.at_level(logging.ERROR, logger="geo.store.live"):
        assert live.current().version == "v1"
    assert warmed == ["v1", "v2"] and "cannot read the attack table" in caplog.text


def test_derived_objects_belong_to_one_version(disk):
    clock = Clock()
    live = holder(disk, clock)
    made = []

    def make(store):
        made.append(store.version)
        return object()

    old = live.current()
    tiler = live.derived("tiler", old, make)
    assert live.derived("tiler", old, make) is tiler and made == ["v1"]
    disk.version, clock.now = "v2", 2.0
    new = live.current()
    assert live.derived("tiler", new, make) is not tiler
    # a request still on the old store gets an old-version object, made for it alone
    assert live.derived("tiler", old, make) is not tiler
    assert live.derived("tiler", new, make) is live.derived("tiler", new, make)
    assert made == ["v1", "v2", "v1"]


def test_warm_ups_make_the_new_versions_objects_before_it_is_served(disk):
    clock = Clock()
    made = []
    live = holder(disk, clock)
    live.warm.append(lambda s: live.derived("cache", s, lambda s: made.append(s.version)))
    disk.version, clock.now = "v2", 2.0
    new = live.current()
    assert made == ["v2"]
    live.derived("cache", new, lambda s: made.append("again"))
    assert made == ["v2"]


def test_concurrent_first_calls_make_a_derived_object_once(disk):
    live = holder(disk)
    store = live.current()
    made = []

    def make(s):
        made.append(1)
        time.sleep(0.05)
        return object()

    got = []
    threads = [
        threading.Thread(target=lambda: got.append(live.derived("x", store, make)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(made) == 1 and len({id(g) for g in got}) == 1


# --- real stores ----------------------------------------------------------------------------

LIVE_ID = "synthetic-live-1"


@pytest.fixture
def served_dir(store_dir, tmp_path) -> Path:
    """A copy of the session's store, to build over while it is served."""
    served = tmp_path / "store"
    shutil.copytree(store_dir, served)
    return served


def rebuild_with_an_attack(store: Path, cache: Path) -> None:
    """What `kpmap import` does to a served store: build a new one and swap it in."""
    record = attack_record(id=LIVE_ID, point=PESHAWAR, killed_best=41, date="2019-03-02")
    build_store(store, cache=cache, mirror=offline_mirror(), added=[record])


def test_a_rebuilt_store_is_switched_to_and_the_old_one_freed(served_dir, build_cache):
    live = LiveStore(served_dir, check_every=0, background=False)
    first = live.current()
    count = len(first.layer("attacks"))
    table = aggregate.attack_table(first)
    rebuild_with_an_attack(served_dir, build_cache)
    second = live.current()
    assert second is not first and second.version == current_version(served_dir)
    assert len(second.layer("attacks")) == count + 1
    assert LIVE_ID in second.layer("attacks").by_id and LIVE_ID not in first.layer("attacks").by_id
    # per-store tables: the new store's own, never the old one's
    assert len(aggregate.attack_table(second)) == count + 1 and len(table) == count
    gone = weakref.ref(first)
    del first, table
    gc.collect()
    assert gone() is None  # nothing kept the old store alive: its memory is freed


@pytest.fixture
def served_app(served_dir, tmp_path):
    app = create_app(
        {
            "STORE": str(served_dir),
            "TESTING": True,
            "STORE_CHECK_INTERVAL": 0,
            "TILE_CACHE_DIR": str(tmp_path / "tiles"),
        }
    )
    return app


def wait_for_version(client, version: str) -> None:
    """Requests until the app answers from `version` (it opens it in the background)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        client.get("/ogc")
        if client.application.extensions[KEY].live.version == version:
            return
        time.sleep(0.05)
    raise AssertionError(f"the app never switched to {version}")


def test_the_app_serves_a_rebuilt_store_without_a_restart(served_app, served_dir, build_cache):
    client = served_app.test_client()
    item = f"/ogc/collections/attacks/items/{LIVE_ID}"
    x, y, z = mercantile.tile(*PESHAWAR, 12)
    tile = f"/tiles/attacks/{z}/{x}/{y}.mvt"
    assert client.get(item).status_code == 404
    before = client.get("/ogc/collections/attacks/items?limit=1").json["numberMatched"]
    old_tile = client.get(tile)
    old_download = client.get("/download/attacks.geojson")
    rebuild_with_an_attack(served_dir, build_cache)
    wait_for_version(client, current_version(served_dir))

    assert client.get(item).status_code == 200
    after = client.get("/ogc/collections/attacks/items?limit=1").json["numberMatched"]
    assert after == before + 1
    new_tile = client.get(tile, headers={"If-None-Match": old_tile.headers["ETag"]})
    assert new_tile.status_code == 200 and new_tile.data != old_tile.data  # not the old tile
    download = client.get("/download/attacks.geojson")
    assert download.headers["ETag"] != old_download.headers["ETag"]
    assert download.json["metadata"]["count"] == old_download.json["metadata"]["count"] + 1
    # the tile on disk is the new version's, and nginx's `current` points at it
    tiles = served_dir.parent / "tiles"
    assert (tiles / "current" / f"attacks/{z}/{x}/{y}.mvt").read_bytes() == new_tile.data
