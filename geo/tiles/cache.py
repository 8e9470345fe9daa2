"""Tile caches: an in-memory LRU for hot tiles, and an optional disk cache that nginx or a CDN can
serve directly.

    cache = TileCache(directory="/var/cache/kpmap-tiles", version=store_version(store))
    hit = cache.get(key)                      # memory, then disk
    hit = cache.put(key, data, on_disk=True)  # -> CachedTile(data, etag)

The disk cache keeps each version's tiles in a folder of its own, laid out as
<version>/<layer>/<z>/<x>/<y>.<ext> (ext: mvt, png, @2x.png), the same paths as the URLs under
/tiles/ below the version; `current` is a symbolic link to the folder of the newest version a
server opened the cache for, which nginx serves (`/tiles/` mapped onto `<dir>/current/`). Only
unfiltered, non-empty tiles go to disk (a filtered tile's URL has a query string, which a static
file cannot stand for); everything goes to memory. Files are written to a temporary name and
renamed, so a reader never sees half a tile.

A version (store_version) stands for the store's layers, the tile code, the towns and the
licences: two servers of different versions sharing one folder each read and write only their
own version's folder, so neither ever serves the other's tiles. Opening the cache for a version
removes the folders of all others but the one `current` named before (a server still on it
may be finishing its requests) -- only folders it recognises as its own (a version's name
holding its stamp, and the tile layer folders of the flat layout before versions).
"""

import hashlib
import json
import os
import re
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from geo import fsutil

STAMP = "kpmap-tiles.json"
CURRENT = "current"
# What a version folder is called: store_version's 16 hex digits (anything else, e.g. in tests,
# is made safe by _folder_name).
_VERSION_NAME = re.compile(r"^[0-9a-f]{16}$")


class TileKey(NamedTuple):
    layer: str
    z: int
    x: int
    y: int
    ext: str  # "mvt", "png" or "@2x.png"
    filters: str = ""  # geo.tiles.tiler.filter_key of the filters; "" for none

    def path(self) -> str:
        """Where the tile lives under a disk cache (and under /tiles/ in URLs)."""
        name = f"{self.y}{self.ext}" if self.ext.startswith("@") else f"{self.y}.{self.ext}"
        return f"{self.layer}/{self.z}/{self.x}/{name}"


@dataclass(frozen=True)
class CachedTile:
    data: bytes
    etag: str  # a strong ETag's value, without the quotes


def etag_of(data: bytes) -> str:
    """A strong ETag from the tile's bytes: equal bytes, equal tag, whichever process made it."""
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def store_version(manifest: dict[str, Any], tiles_version: str) -> str:
    """What a disk cache's tiles depend on: the store's layer hashes and the tile code version."""
    layers = {name: entry.get("sha256") for name, entry in sorted(manifest["layers"].items())}
    text = json.dumps({"layers": layers, "tiles": tiles_version}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class TileCache:
    """A thread-safe LRU of up to `max_bytes` of tiles, over an optional disk cache."""

    def __init__(
        self,
        directory: str | Path | None = None,
        version: str = "",
        layers: Iterable[str] = (),
        max_bytes: int = 64 * 2**20,
        publish: bool = True,
    ):
        """`publish` points `current` at this version's folder (for nginx): a server does, as
        it opens the newest store; a tool seeding an older store may not want to."""
        self.root = Path(directory) if directory else None
        self.version = version
        # This version's own folder: another version's tiles are never read or written.
        self.directory = self.root / _folder_name(version) if self.root else None
        self.max_bytes = max_bytes
        self._memory: OrderedDict[TileKey, CachedTile] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        if self.root is not None:
            self._claim(layers, publish)

    def get(self, key: TileKey) -> CachedTile | None:
        """The cached tile, from memory or else from disk (then kept in memory); None if not."""
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                return hit
        path = self._disk_path(key)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        return self._remember(key, CachedTile(data, etag_of(data)))

    def put(self, key: TileKey, data: bytes, on_disk: bool = True) -> CachedTile:
        """Keep a tile in memory and, if `on_disk` and the key is unfiltered, on disk."""
        tile = self._remember(key, CachedTile(data, etag_of(data)))
        path = self._disk_path(key) if on_disk else None
        if path is not None:
            write_atomic(path, data)
        return tile

    def on_disk(self, key: TileKey) -> bool:
        path = self._disk_path(key)
        return path is not None and path.exists()

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._memory)

    def _remember(self, key: TileKey, tile: CachedTile) -> CachedTile:
        size = len(tile.data) + 200  # the bytes plus roughly what the key and entry cost
        with self._lock:
            old = self._memory.pop(key, None)
            if old is not None:
                self._bytes -= len(old.data) + 200
            self._memory[key] = tile
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._memory) > 1:
                _, evicted = self._memory.popitem(last=False)
                self._bytes -= len(evicted.data) + 200
        return tile

    def _disk_path(self, key: TileKey) -> Path | None:
        if self.directory is None or key.filters:
            return None
        return self.directory / key.path()

    def _claim(self, layers: Iterable[str], publish: bool) -> None:
        """Make this version's folder, point `current` at it, and remove older versions'."""
        assert self.root is not None and self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = self.directory / STAMP
        if not stamp.exists():
            write_atomic(stamp, json.dumps({"version": self.version}).encode())
        link = self.root / CURRENT
        previous = _link_target(link)
        if publish and previous != self.directory.name:
            tmp = self.root / f".{CURRENT}-{os.getpid()}-{threading.get_ident()}"
            tmp.unlink(missing_ok=True)
            os.symlink(self.directory.name, tmp)
            os.replace(tmp, link)  # atomic: nginx sees the old folder or the new, never none
        keep = {self.directory.name, previous}
        for child in self.root.iterdir():
            if child.name in keep or child.is_symlink() or not child.is_dir():
                continue
            ours = _VERSION_NAME.match(child.name) or (child / STAMP).exists()
            if ours or child.name in layers:  # layers: the flat layout of before versions
                shutil.rmtree(child, ignore_errors=True)
        (self.root / STAMP).unlink(missing_ok=True)  # the flat layout's stamp


def _folder_name(version: str) -> str:
    """A version as a folder name: store_version's hex as it is, anything else hashed."""
    if _VERSION_NAME.match(version):
        return version
    return hashlib.sha256(version.encode()).hexdigest()[:16]


def _link_target(link: Path) -> str | None:
    try:
        return os.readlink(link)
    except OSError:
        return None


def write_atomic(path: Path, data: bytes) -> None:
    """Write a tile whole or not at all (readable by nginx; not fsynced: a cache is rebuilt)."""
    fsutil.write_atomic(path, data, durable=False)
