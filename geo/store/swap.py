"""Replacing a store with never a moment without a complete one.

The path users give (default data/store) is a symbolic link to a complete store folder kept
beside it; a build or import writes a new folder and then moves the link with one rename(2),
which is atomic: a reader, or a kill at any instant, finds the old store or the new one.

    data/store -> .store.versions/20250101T120000-3fa2c1   the store (a relative link)
    data/.store.versions/20250101T120000-3fa2c1/           the current store's files
    data/.store.versions/20250102T090000-77b0e4.work/      a build in progress (or killed)
    data/.store.lock                                       held by a build or import (flock)

A build holds the lock from reading the store's imported records to moving the link, so two
imports never lose each other's records, and whatever it finds under the versions folder but
the current store is a leftover of a killed run, removed then (`recover`). A store folder from
an older kpmap (a plain folder at the path) becomes a link at its first build: the link and the
folder change places with renameat2(RENAME_EXCHANGE) where the system has it (Linux), else with
two renames and a marker that lets the next start finish the move.

KPMAP_TEST_CRASH_AT=<step> kills the process with SIGKILL at that step (see CRASH_STEPS): the
crash tests use it; it does nothing else.
"""

import ctypes
import errno
import fcntl
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from geo.errors import BuildError
from geo.fsutil import fsync_dir, fsync_file, write_atomic

WORK_SUFFIX = ".work"
MIGRATING = "migrating"  # in the versions folder: the version a plain folder is being replaced by
CRASH_ENV = "KPMAP_TEST_CRASH_AT"
# Where a build or import can be killed, in order (the crash tests kill at each).
CRASH_STEPS = (
    "work",  # the work folder made, nothing written
    "written",  # every file written but the manifest
    "complete",  # the manifest written: the work folder is a complete store
    "versioned",  # the work folder renamed to its version
    "linked",  # the new link made beside the store, not yet moved
    "migrating",  # (a plain store folder, no RENAME_EXCHANGE) the old folder moved aside
    "switched",  # the link moved: the new store is current; the old one not yet removed
)


def crash_point(step: str) -> None:
    """SIGKILL this process when KPMAP_TEST_CRASH_AT names `step` (for the crash tests)."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def versions_dir(store: Path) -> Path:
    return store.parent / f".{store.name}.versions"


def lock_file(store: Path) -> Path:
    return store.parent / f".{store.name}.lock"


class Busy(BuildError):
    """Another build or import holds the store's lock."""


@contextmanager
def locked(store: Path, wait: bool = True) -> Iterator[None]:
    """Hold the store's lock (an flock on .<name>.lock beside it) for the block. With wait, a
    second build waits for the first (saying so on stderr); without, Busy is raised."""
    store.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file(store), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise Busy(f"another build or import of {store} is running") from None
            print(f"waiting for another build or import of {store} to finish", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def new_work(store: Path) -> Path:
    """A fresh work folder for the next version of `store` (call with the lock held)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    work = versions_dir(store) / f"{stamp}-{secrets.token_hex(3)}{WORK_SUFFIX}"
    work.mkdir(parents=True, mode=0o755)
    work.chmod(0o755)  # whatever the umask: the store is meant to be served and shared
    crash_point("work")
    return work


def commit(work: Path, store: Path) -> Path:
    """Make the complete store in `work` the store at `store` (call with the lock held): sync
    it to disk, give it its version name, move the link, remove the version it replaced.
    Returns the new version's folder."""
    for path in work.iterdir():
        fsync_file(path)
    fsync_dir(work)
    version = work.with_name(work.name.removesuffix(WORK_SUFFIX))
    work.rename(version)
    fsync_dir(version.parent)
    crash_point("versioned")
    _point(store, version)
    crash_point("switched")
    recover(store)  # the version replaced is a leftover now
    return version


def discard(work: Path, store: Path) -> None:
    """Remove a work folder that will not be committed (and the versions folder, if that leaves
    it empty beside a plain store folder)."""
    _remove(work)
    versions = versions_dir(store)
    if versions.is_dir() and not store.is_symlink() and not any(versions.iterdir()):
        versions.rmdir()


def current(store: Path) -> Path | None:
    """The version folder the link at `store` points to (None for a plain folder or none)."""
    if not store.is_symlink():
        return None
    return (store.parent / os.readlink(store)).resolve()


def resolve(store: Path) -> Path:
    """The folder holding the store now at `store`. A store left without its link by a crash
    is put back first (see recover) when no build is running."""
    if not store.exists():
        try:
            with locked(store, wait=False):
                recover(store)
        except (Busy, OSError):
            pass  # a running build finishes it; a read-only location cannot be repaired here
    return store.resolve()


def recover(store: Path) -> list[str]:
    """Finish or undo what a killed build left (call with the lock held): a store path left
    without a store gets it back, and every leftover beside it (work folders, versions no
    longer current, links not moved) is removed. Returns what it did, for messages."""
    done = []
    versions = versions_dir(store)
    if not store.exists() and not store.is_symlink():
        done += _restore(store)
    live = current(store)
    if versions.is_dir():
        for entry in versions.iterdir():
            if entry.name == MIGRATING or (live is not None and entry.resolve() == live):
                continue
            _remove(entry)
            done.append(f"removed {entry}")
    for entry in store.parent.glob(f".{store.name}.link-*"):
        _remove(entry)
        done.append(f"removed {entry}")
    # Work folders of older kpmap versions (".store-<name>-XXXXXXXX"); their "-old-" folders
    # are a store before an interrupted swap, restored above when the store is missing, else
    # kept and named by the build (they may hold imported records).
    for entry in store.parent.glob(f".store-{store.name}-*"):
        if "-old-" not in entry.name and entry.is_dir():
            _remove(entry)
            done.append(f"removed {entry}")
    if versions.is_dir() and not store.is_symlink() and not any(versions.iterdir()):
        versions.rmdir()
    return done


def legacy_old_folders(store: Path) -> list[Path]:
    """Folders an older kpmap's interrupted swap left beside a store that has been rebuilt."""
    return sorted(store.parent.glob(f".store-{store.name}-old-*"))


def _restore(store: Path) -> list[str]:
    """Put a store back at `store`, which has none: the version an interrupted move of a plain
    folder was switching to, or the old store an older kpmap's interrupted swap moved aside."""
    versions = versions_dir(store)
    marker = versions / MIGRATING
    if marker.exists():
        version = versions / marker.read_text(encoding="utf-8").strip()
        if (version / "manifest.json").exists():
            _point(store, version)
            marker.unlink()
            return [f"finished moving {store} to {version}"]
        replaced = versions / f"{version.name}-replaced"
        if (replaced / "manifest.json").exists():
            replaced.rename(store)
            marker.unlink()
            return [f"restored {store} from {replaced}"]
        marker.unlink()
    complete = [p for p in legacy_old_folders(store) if (p / "manifest.json").exists()]
    if complete:
        newest = max(complete, key=lambda p: (p / "manifest.json").stat().st_mtime)
        newest.rename(store)
        return [f"restored {store} from {newest}, left by an interrupted swap"]
    return []


def _point(store: Path, version: Path) -> None:
    """Make `store` a link to `version` in one rename; a plain folder at `store` (an older
    kpmap's store) changes places with the link and is removed."""
    link = store.with_name(f".{store.name}.link-{secrets.token_hex(4)}")
    os.symlink(os.path.relpath(version, store.parent), link)
    crash_point("linked")
    if store.is_symlink() or not store.exists():
        os.replace(link, store)
    elif store.is_dir():
        _replace_plain_folder(link, store, version)
    else:
        link.unlink()
        raise BuildError(f"{store} is neither a store folder nor a link to one: move it away")
    fsync_dir(store.parent)


def _replace_plain_folder(link: Path, store: Path, version: Path) -> None:
    if _exchange(link, store):
        crash_point("switched")
        _remove(link)  # the old folder, now at the link's hidden name
        return
    # No RENAME_EXCHANGE: two renames, with a marker naming the version for a start that
    # finds the store missing between them (recover).
    marker = versions_dir(store) / MIGRATING
    write_atomic(marker, version.name.encode())
    old = versions_dir(store) / f"{version.name}-replaced"
    store.rename(old)
    crash_point("migrating")
    os.replace(link, store)
    marker.unlink()
    _remove(old)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two names atomically with renameat2(RENAME_EXCHANGE); False where the system or the
    file system cannot (the caller falls back)."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
