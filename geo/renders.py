"""Expensive answers rendered once: files kept on disk by what they are made of.

A filtered GeoPackage of a million-attack store takes half a minute to write. The render cache
writes each distinct one once and hands the file to every later request, in this process and in
every other one that shares the folder (gunicorn's workers, several servers on one disk):

    cache = RenderCache("/var/cache/kpmap-downloads", max_bytes=2 * 2**30, max_renders=2)
    key = render_key("gpkg", policy_key, selections)          # what the bytes depend on
    with cache.open(store.version, key, ".gpkg", write) as f:  # write(path) renders the file
        ...send f...
    cache.peek(store.version, key, ".gpkg")                   # the file if rendered, else None

- One writer per key: the first request renders, the others wait for it and send its file. A
  lock file per key (fcntl.flock) does this across threads and processes alike; the writer
  writes to a temporary file and renames it into place, so no reader sees half a file, and a
  writer that dies (even by kill -9) leaves no lock held and no file half-written.
- A cap on renders running at once (`max_renders`, across the processes sharing the folder:
  one lock file a slot). A render past it raises RenderBusy (HTTP 503, with Retry-After): a
  busy server says so at once rather than stacking up renders that each slow the others down.
  Requests waiting for a render already running take no slot.
- Files are named <version>-<key><suffix>: a store version's files are never sent for another,
  and those of versions other than the one served are removed once unused for a minute.
- The folder is bounded (`max_bytes`): after each render the least recently used files are
  removed until the rest fit (a file's mtime is its last use: every hit touches it). A file
  being sent when it is removed is still sent whole: an open file outlives its name.
"""

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

from geo.errors import RenderBusy

log = logging.getLogger(__name__)

LOCKS = ".locks"
# <version>-<key><suffix>, and its lock and temporary files.
_NAME = re.compile(r"^(?P<version>[0-9a-zA-Z]+)-(?P<key>[0-9a-f]{32})(?P<suffix>\.[\w.]+)$")
_TEMP = re.compile(r"^\.(?P<stem>[0-9a-zA-Z]+-[0-9a-f]{32})\..*\.tmp(\.[\w.]+)?$")
# Another version's files are removed once unused this long: while a server switches to a new
# store, requests on the old one may still ask for them (and servers sharing the folder may be
# on either version for a moment).
OLD_VERSION_GRACE = 60
# Retry-After before any render has been timed: about a filtered GeoPackage of a 1M store.
DEFAULT_RETRY_AFTER = 30


def render_key(*parts: Any) -> str:
    """A key for what a render's bytes depend on: the same parts, the same key, in any process.

    Parts are encoded as canonical JSON (dict keys sorted; tuples as lists; dates and other
    values by str), so equal filters written in another order of keywords give one key.

    >>> render_key("gpkg", {"b": 1, "a": [1, 2]}) == render_key("gpkg", {"a": (1, 2), "b": 1})
    True
    """
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class RenderCache:
    """Rendered files in `directory`, one writer per key, at most `max_renders` renders at once
    (thread- and process-safe), at most `max_bytes` kept."""

    def __init__(self, directory: str | Path, max_bytes: int, max_renders: int):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_renders = max(1, max_renders)
        self._locks = self.directory / LOCKS
        self._locks.mkdir(parents=True, exist_ok=True)
        self._timed: list[float] = []  # recent render times, for Retry-After
        self._timing = threading.Lock()

    # --- asking ------------------------------------------------------------------------------

    def path(self, version: str, key: str, suffix: str) -> Path:
        return self.directory / f"{version}-{key}{suffix}"

    def path_of(self, stem: str) -> Path:
        """Any file of the key `stem` (<version>-<key>), whatever its suffix, else a path that
        does not exist."""
        return next(self.directory.glob(f"{stem}.*"), self.directory / f"{stem}.none")

    def peek(self, version: str, key: str, suffix: str) -> BinaryIO | None:
        """The rendered file, open, if it is there (and counted as used); never renders."""
        return self._open_kept(self.path(version, key, suffix))

    @contextmanager
    def open(
        self, version: str, key: str, suffix: str, write: Callable[[Path], None]
    ) -> Iterator[BinaryIO]:
        """The rendered file, open for reading: kept, or waited for while another request
        renders it, or rendered now by `write(path)` (which writes the whole file at `path`).

        Raises RenderBusy when it must be rendered and `max_renders` renders are running.
        An error in `write` propagates and leaves nothing behind; a waiting request then tries
        to render it itself.
        """
        f = self.get(version, key, suffix, write)
        try:
            yield f
        finally:
            f.close()

    def get(self, version: str, key: str, suffix: str, write: Callable[[Path], None]) -> BinaryIO:
        """As `open`, but the caller closes the file (e.g. when a streamed response ends)."""
        target = self.path(version, key, suffix)
        kept = self._open_kept(target)
        if kept is not None:
            return kept
        with self._key_lock(target.stem) as _:
            # Whoever held the key's lock before us may have rendered it meanwhile.
            kept = self._open_kept(target)
            if kept is not None:
                return kept
            with self._slot(target.stem):
                started = time.perf_counter()
                self._render(target, write)
                elapsed = time.perf_counter() - started
                with self._timing:
                    self._timed = [*self._timed[-4:], elapsed]
            f = open(target, "rb")  # noqa: SIM115 - handed to the caller
        self.sweep(version, keep=target)
        return f

    def retry_after(self) -> int:
        """Seconds a client turned away should wait: about one render (the slowest of the last
        few, or DEFAULT_RETRY_AFTER before any), at least 5."""
        with self._timing:
            slowest = max(self._timed, default=DEFAULT_RETRY_AFTER)
        return max(5, int(slowest + 0.999))

    # --- housekeeping ------------------------------------------------------------------------

    def sweep(self, version: str, keep: Path | None = None) -> None:
        """Remove other versions' files not used for OLD_VERSION_GRACE seconds, temporary files
        of renders that died, and the least recently used files past `max_bytes`; files being
        rendered or waited for are left alone. `version` is the store version served now."""
        current: list[tuple[float, int, Path]] = []
        now = time.time()
        for entry in os.scandir(self.directory):
            if not entry.is_file(follow_symlinks=False):
                continue
            name = _NAME.match(entry.name)
            temp = _TEMP.match(entry.name)
            if temp is not None:
                self._remove_unless_locked(Path(entry.path), temp["stem"])
            elif name is not None:
                try:
                    stat = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                path = Path(entry.path)
                if name["version"] != version and stat.st_mtime < now - OLD_VERSION_GRACE:
                    self._remove_unless_locked(path, path.stem)
                else:
                    current.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in current)
        for _, size, path in sorted(current):  # least recently used first
            if total <= self.max_bytes:
                break
            if path != keep and self._remove_unless_locked(path, path.stem):
                total -= size
        # Lock files of keys with no file (a render refused as busy, or that failed), unless
        # someone is rendering or waiting: the lock folder does not grow with every key.
        kept = {path.stem for _, _, path in current}
        for entry in os.scandir(self._locks):
            stem = entry.name.removesuffix(".lock")
            if _NAME.match(stem + ".x") and stem not in kept and not self.path_of(stem).exists():
                with self._key_lock(stem, wait=False) as held:
                    if held:
                        Path(entry.path).unlink(missing_ok=True)

    def _remove_unless_locked(self, path: Path, stem: str) -> bool:
        with self._key_lock(stem, wait=False) as held:
            if not held:
                return False  # being rendered, or waited for: leave it
            path.unlink(missing_ok=True)
            if _TEMP.match(path.name) is None:
                # The key's lock file goes with its file (held now: see _flock), so the lock
                # folder does not grow with every filter ever asked for.
                (self._locks / f"{stem}.lock").unlink(missing_ok=True)
            return True

    # --- the parts ---------------------------------------------------------------------------

    def _open_kept(self, target: Path) -> BinaryIO | None:
        try:
            f = open(target, "rb")  # noqa: SIM115 - handed to the caller
        except FileNotFoundError:
            return None
        with suppress(OSError):
            os.utime(f.fileno())  # used now: the least recently used go first
        return f

    def _render(self, target: Path, write: Callable[[Path], None]) -> None:
        # The temporary file keeps the suffix: GDAL checks a GeoPackage's extension.
        suffix = f".tmp{target.suffix}"
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{target.stem}.", suffix=suffix)
        os.close(fd)
        try:
            write(Path(tmp))
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; a front server may send the file
            os.replace(tmp, target)  # whole or not at all
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @contextmanager
    def _key_lock(self, stem: str, wait: bool = True) -> Iterator[bool]:
        """Hold the key's lock (yields True), waiting for it if `wait`; else yields False when
        someone else holds it."""
        with self._flock(self._locks / f"{stem}.lock", wait) as held:
            yield held

    @contextmanager
    def _slot(self, stem: str) -> Iterator[None]:
        """One of `max_renders` slots (lock files), or RenderBusy if none is free."""
        for i in range(self.max_renders):
            with self._flock(self._locks / f"slot-{i}.lock", wait=False) as held:
                if held:
                    yield
                    return
        raise RenderBusy(
            f"{self.max_renders} downloads are being prepared right now (KPMAP_MAX_RENDERS); "
            f"try again in {self.retry_after()} s: a prepared one is then sent at once",
            retry_after=self.retry_after(),
        )

    @contextmanager
    def _flock(self, path: Path, wait: bool) -> Iterator[bool]:
        """An exclusive flock on the file at `path`. A key's lock file may be removed by a
        sweep (which holds it meanwhile), so a lock taken on a file that no longer has that
        name is let go and taken again on the file that has it now."""
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                yield False
                return
            try:
                named = os.stat(path)
            except FileNotFoundError:
                named = None
            mine = os.fstat(fd)
            if named is None or (named.st_dev, named.st_ino) != (mine.st_dev, mine.st_ino):
                os.close(fd)  # closing lets the stale lock go
                continue
            try:
                yield True
            finally:
                os.close(fd)
            return
