"""Tile caches: an in-memory LRU for hot tiles, and an optional disk cache that nginx or a CDN can
serve directly.

    cache = TileCache(directory="/var/cache/kpmap-tiles", version=store_version(store))
    hit = cache.get(key)                      # memory, then disk
    hit = cache.put(key, data, on_disk=True)  # -> CachedTile(data, etag)

The disk cache is laid out as <layer>/<z>/<x>/<y>.<ext> (ext: mvt, png, @2x.png), the same paths
as the URLs under /tiles/, so `try_files` in nginx can serve it. Only unfiltered, non-empty tiles
go to disk (a filtered tile's URL has a query string, which a static file cannot stand for);
everything goes to memory. Files are written to a temporary name and renamed, so a reader never
sees half a tile.

A disk cache belongs to one build of the store: `kpmap-tiles.json` in it records the version
(store_version); opening the cache with another version removes the tile folders it holds (only
folders named after tile layers) and starts afresh, so a rebuilt store never serves old tiles.
"""

import hashlib
import json
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from geo import fsutil

STAMP = "kpmap-tiles.json"


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
    ):
        self.directory = Path(directory) if directory else None
        self.max_bytes = max_bytes
        self._memory: OrderedDict[TileKey, CachedTile] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        if self.directory is not None:
            self._claim(version, layers)

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

    def _claim(self, version: str, layers: Iterable[str]) -> None:
        """Make the disk cache this version's, emptying the tile folders of any other."""
        stamp = self.directory / STAMP
        try:
            found = json.loads(stamp.read_text(encoding="utf-8")).get("version")
        except (OSError, ValueError, AttributeError):
            found = None
        if found == version:
            return
        for layer in layers:
            shutil.rmtree(self.directory / layer, ignore_errors=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(stamp, json.dumps({"version": version}).encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Write a tile whole or not at all (readable by nginx; not fsynced: a cache is rebuilt)."""
    fsutil.write_atomic(path, data, durable=False)
