"""Writing files whole or not at all: the one home for kpmap's temp-then-rename writes.

A reader (another worker, nginx, a later run) sees either the old file or the new one, never
half of one: the new content is written to a temporary name in the same folder (so the rename is
atomic: same file system, never a copy) and renamed over the target with rename(2). A failure,
or a kill, leaves at worst a hidden `.tmp-*` file beside the target, never a torn target.

    with atomic_write(path) as f:     # a binary file object
        f.write(data)
    with atomic_path(out) as tmp:     # for writers that want a path (GDAL, zip, ...)
        write_geopackage(tmp, ...)
    write_atomic(path, data)

`durable=True` (the default) also fsyncs the file and its folder, so that the rename survives a
power cut and not only a killed process; caches that can be rebuilt pass durable=False.
"""

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

# Temporary names: hidden, and recognisable as leftovers (see temp_name).
TEMP_PREFIX = ".tmp-"


def temp_name(path: Path) -> Path:
    """A fresh hidden name beside `path` that keeps its suffix (some writers choose their format
    by it): data/x.gpkg -> data/.tmp-1f2e3d4c-x.gpkg."""
    return path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(4)}-{path.name}")


@contextmanager
def atomic_path(path: str | Path, *, durable: bool = True, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without an exception, the file
    written there replaces `path` in one rename (with permissions `mode`). If the block raises,
    or leaves no file there, `path` is untouched and the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        if not tmp.exists():
            return  # the block chose not to write (e.g. a download with a wrong hash)
        os.chmod(tmp, mode)
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_write(
    path: str | Path, *, durable: bool = True, mode: int = 0o644
) -> Iterator[BinaryIO]:
    """Yield a binary file whose content replaces `path` in one rename when the block ends
    without an exception (see atomic_path)."""
    with atomic_path(path, durable=durable, mode=mode) as tmp, open(tmp, "xb") as f:
        yield f


def write_atomic(path: str | Path, data: bytes, *, durable: bool = True, mode: int = 0o644) -> None:
    """Write `data` to `path` whole or not at all."""
    with atomic_write(path, durable=durable, mode=mode) as f:
        f.write(data)


def replace_dir(work: Path, target: Path) -> None:
    """Put the folder `work` in place of the folder `target` (which may be missing).

    Two renames: a reader between them finds no `target`, and a kill between them leaves the
    old folder at a hidden `.tmp-*` name. Good enough for what can be made again (front-end
    assets); the store, which cannot, switches an atomic pointer instead (geo.store.swap).
    """
    if not target.exists():
        work.rename(target)
        return
    old = temp_name(target)
    target.rename(old)
    try:
        work.rename(target)
    except OSError:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def fsync_file(path: Path) -> None:
    """Flush a written file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename, a new file) to the disk; a no-op where folders cannot
    be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the data files are synced already
    finally:
        os.close(fd)
