"""geo/renders.py: expensive files rendered once per key, shared by threads and processes."""

import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from geo import renders
from geo.errors import RenderBusy
from geo.renders import RenderCache, render_key

V1, V2 = "1" * 16, "2" * 16
KEY = render_key("gpkg", {"actor": ["ISKP"]})
OTHER = render_key("gpkg", {"actor": ["TTP"]})


class Writer:
    """A render that counts its calls, optionally waits for a gate, and writes `data`."""

    def __init__(self, data: bytes = b"rendered", gate: threading.Event | None = None):
        self.data = data
        self.gate = gate
        self.calls = 0
        self.started = threading.Event()

    def __call__(self, path: Path) -> None:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        path.write_bytes(self.data)


def read(f) -> bytes:
    with f:
        return f.read()


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def test_a_file_is_rendered_once_and_then_sent_from_the_cache(tmp_path):
    cache = RenderCache(tmp_path, max_bytes=2**20, max_renders=2)
    write = Writer()
    assert read(cache.get(V1, KEY, ".gpkg", write)) == b"rendered"
    assert read(cache.get(V1, KEY, ".gpkg", write)) == b"rendered"
    assert write.calls == 1
    assert files(tmp_path) == [f"{V1}-{KEY}.gpkg"]  # no temporary file left
    with cache.open(V1, KEY, ".gpkg", write) as f:
        assert f.read() == b"rendered"
    # another version, or other filters: another file
    assert read(cache.get(V2, KEY, ".gpkg", Writer(b"v2"))) == b"v2"
    assert read(cache.get(V2, OTHER, ".gpkg", Writer(b"ttp"))) == b"ttp"


def test_concurrent_requests_for_one_key_render_it_once(tmp_path):
    cache = RenderCache(tmp_path, max_bytes=2**30, max_renders=1)
    gate = threading.Event()
    write = Writer(b"x" * 100_000, gate)
    got, errors = [], []

    def ask() -> None:
        try:
            got.append(read(cache.get(V1, KEY, ".gpkg", write)))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for t in threads:
        t.start()
    assert write.started.wait(5)
    time.sleep(0.2)  # the others are now waiting for the writer (and take no render slot)
    gate.set()
    for t in threads:
        t.join(10)
    assert errors == [] and write.calls == 1
    assert got == [b"x" * 100_000] * 12


def _render_in_process(folder: str, counter: str, go) -> None:
    def write(path: Path) -> None:
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        path.write_bytes(b"from another process")

    go.wait(10)
    cache = RenderCache(folder, max_bytes=2**20, max_renders=1)
    assert read(cache.get(V1, KEY, ".gpkg", write)) == b"from another process"


def test_processes_sharing_the_folder_render_a_key_once(tmp_path):
    """gunicorn's workers: the lock files hold across processes, not only threads."""
    context = multiprocessing.get_context("fork")
    counter = tmp_path / "renders.txt"
    folder = tmp_path / "cache"
    go = context.Event()
    procs = [
        context.Process(target=_render_in_process, args=(str(folder), str(counter), go))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(20)
    assert [p.exitcode for p in procs] == [0] * 4
    assert len(counter.read_text().split()) == 1


def test_peek_never_renders(tmp_path):
    cache = RenderCache(tmp_path, max_bytes=2**20, max_renders=1)
    assert cache.peek(V1, KEY, ".gpkg") is None
    assert files(tmp_path) == []
    read(cache.get(V1, KEY, ".gpkg", Writer(b"abc")))
    assert read(cache.peek(V1, KEY, ".gpkg")) == b"abc"
    assert cache.peek(V2, KEY, ".gpkg") is None


def test_past_the_cap_a_render_is_refused_with_a_retry_after(tmp_path):
    cache = RenderCache(tmp_path, max_bytes=2**20, max_renders=1)
    gate = threading.Event()
    slow = Writer(gate=gate)
    first = threading.Thread(target=lambda: read(cache.get(V1, KEY, ".gpkg", slow)))
    first.start()
    assert slow.started.wait(5)
    refused = Writer()
    with pytest.raises(RenderBusy, match="KPMAP_MAX_RENDERS") as busy:
        cache.get(V1, OTHER, ".gpkg", refused)
    assert busy.value.status == 503 and busy.value.retry_after >= 5
    assert refused.calls == 0
    # a kept file is still sent while the renders are all taken
    gate.set()
    first.join(10)
    assert read(cache.get(V1, KEY, ".gpkg", Writer())) == b"rendered"
    assert read(cache.get(V1, OTHER, ".gpkg", refused)) == b"rendered"  # a slot is free again


def test_retry_after_follows_the_renders_timed(tmp_path, monkeypatch):
    cache = RenderCache(tmp_path, max_bytes=2**20, max_renders=1)
    assert cache.retry_after() == renders.DEFAULT_RETRY_AFTER
    cache._timed = [0.1, 42.2]
    assert cache.retry_after() == 43
    cache._timed = [0.1]
    assert cache.retry_after() == 5


def test_a_failed_render_leaves_nothing_and_the_next_request_renders(tmp_path):
    cache = RenderCache(tmp_path, max_bytes=2**20, max_renders=1)

    def broken(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cache.get(V1, KEY, ".gpkg", broken)
    assert files(tmp_path) == []
    assert read(cache.get(V1, KEY, ".gpkg", Writer())) == b"rendered"


def test_the_least_recently_used_files_go_past_the_size_bound(tmp_path):
    cache = RenderCache(tmp_path, max_bytes=2500, max_renders=1)
    keys = [render_key("gpkg", i) for i in range(4)]
    for i, key in enumerate(keys[:2]):
        read(cache.get(V1, key, ".gpkg", Writer(bytes(1000))))
        os.utime(cache.path(V1, key, ".gpkg"), (1000 + i, 1000 + i))
    assert read(cache.peek(V1, keys[0], ".gpkg")) == bytes(1000)  # used now: the most recent
    read(cache.get(V1, keys[2], ".gpkg", Writer(bytes(1000))))
    assert files(tmp_path) == sorted(f"{V1}-{k}.gpkg" for k in (keys[0], keys[2]))
    # a file larger than the bound is still sent (then it is the first to go)
    assert len(read(cache.get(V1, keys[3], ".gpkg", Writer(bytes(5000))))) == 5000


def test_other_versions_and_dead_renders_are_swept(tmp_path, monkeypatch):
    cache = RenderCache(tmp_path, max_bytes=2**20, max_renders=1)
    read(cache.get(V1, KEY, ".gpkg", Writer()))
    dead = tmp_path / f".{V1}-{OTHER}.abc123.tmp"  # a render killed half-way
    dead.write_bytes(b"half")
    read(cache.get(V2, KEY, ".gpkg", Writer()))
    # the old version's file stays a while: requests on the old store may still ask for it
    assert (tmp_path / f"{V1}-{KEY}.gpkg").exists() and not dead.exists()
    monkeypatch.setattr(renders, "OLD_VERSION_GRACE", -1)
    cache.sweep(V2)
    assert files(tmp_path) == [f"{V2}-{KEY}.gpkg"]
    assert not (tmp_path / renders.LOCKS / f"{V1}-{KEY}.lock").exists()


def test_a_file_being_rendered_or_waited_for_is_not_swept(tmp_path, monkeypatch):
    monkeypatch.setattr(renders, "OLD_VERSION_GRACE", -1)
    cache = RenderCache(tmp_path, max_bytes=2**20, max_renders=2)
    read(cache.get(V1, KEY, ".gpkg", Writer()))
    tmp = tmp_path / f".{V1}-{KEY}.x.tmp"
    with cache._key_lock(f"{V1}-{KEY}"):
        tmp.write_bytes(b"being written")
        cache.sweep(V2)
        assert tmp.exists() and (tmp_path / f"{V1}-{KEY}.gpkg").exists()
    cache.sweep(V2)
    assert not tmp.exists() and not (tmp_path / f"{V1}-{KEY}.gpkg").exists()


def test_a_lock_taken_on_a_removed_lock_file_is_taken_again(tmp_path):
    """A sweep removes a key's lock file while holding it; a request that opened the old file
    and waited must not believe it holds the key's lock."""
    cache = RenderCache(tmp_path, max_bytes=2**20, max_renders=1)
    lock = tmp_path / renders.LOCKS / "k.lock"
    got = threading.Event()
    with cache._key_lock("k"):
        waiter = threading.Thread(target=lambda: cache._key_lock("k").__enter__() and got.set())
        waiter.start()
        time.sleep(0.1)
        lock.unlink()
    waiter.join(5)
    assert got.is_set() and lock.exists()  # held on the file that now has the name


def test_render_keys_are_canonical():
    assert render_key("gpkg", {"a": 1, "b": [2]}) == render_key("gpkg", {"b": (2,), "a": 1})
    assert render_key("gpkg", {"a": 1}) != render_key("gpkg", {"a": 2})
    assert len(render_key("x")) == 32


def test_lock_files_of_keys_without_a_file_are_swept(tmp_path):
    cache = RenderCache(tmp_path, max_bytes=2**20, max_renders=1)
    with cache._slot("elsewhere"), pytest.raises(RenderBusy):
        cache.get(V1, OTHER, ".gpkg", Writer())  # refused: its lock file stays behind
    locks = tmp_path / renders.LOCKS
    assert (locks / f"{V1}-{OTHER}.lock").exists()
    read(cache.get(V1, KEY, ".gpkg", Writer()))  # a render sweeps
    assert sorted(p.name for p in locks.iterdir() if not p.name.startswith("slot")) == [
        f"{V1}-{KEY}.lock"
    ]
