"""Tile caches: an in-memory LRU for hot tiles, and an optional disk cache that nginx or a CDN can
serve directly.

    cache = TileCache(directory="/var/cache/kpmap-tiles", version=store_version(store))
    hit = cache.get(key)                      # memory, then disk
    hit = cache.put(key, data, on_disk=True)  # -> CachedTile(data, etag)
    body = cache.coded(key, hit, "gzip")      # the tile gzip-coded: made once, then kept

The disk cache keeps each version's tiles in a folder of its own, laid out as
<version>/<layer>/<z>/<x>/<y>.<ext> (ext: mvt, png, @2x.png), the same paths as the URLs under
/tiles/ below the version; `current` is a symbolic link to the folder of the newest version a
server opened the cache for, which nginx serves (`/tiles/` mapped onto `<dir>/current/`). Only
unfiltered, non-empty tiles go to disk (a filtered tile's URL has a query string, which a static
file cannot stand for); everything goes to memory. Files are written to a temporary name and
renamed, so a reader never sees half a tile.

Vector tiles are kept content-coded too (CODINGS: gzip, br, zstd), each coding made once per
tile, at a higher level than a per-request compressor could afford, and kept beside the tile:
in memory with it, and on disk as `<y>.mvt.gz` (written with the tile, so that nginx's
`gzip_static` sends it as it is), `<y>.mvt.br` and `<y>.mvt.zst` (written when first asked).
PNG is never coded (it is compressed already), nor a tile under MIN_CODED_BYTES (a coding
saves nothing there): those are sent as they are, as app/http.py does for any small body.

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
import sys
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import brotli

from geo import fsutil

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

STAMP = "kpmap-tiles.json"
CURRENT = "current"
# What a version folder is called: store_version's 16 hex digits (anything else, e.g. in tests,
# is made safe by _folder_name).
_VERSION_NAME = re.compile(r"^[0-9a-f]{16}$")

# Content codings a tile is kept in, and each one's file suffix on disk (nginx's gzip_static
# looks for `.gz`). Made once per tile, so at levels a per-request compressor could not afford:
# on this project's tiles gzip 9 is 4% smaller than gzip 6, brotli 6 and zstd 9 about 5%
# smaller than brotli 4 and zstd 3, each in 0.5-2 ms for a 12 KB tile.
CODINGS = {"gzip": ".gz", "br": ".br", "zstd": ".zst"}
# The tile formats that are coded: MVT (protobuf compresses to a third); PNG is compressed.
CODED_FORMATS = frozenset({"mvt"})
# Smaller tiles are sent as they are (app/http.py's MIN_COMPRESS_BYTES for any body).
MIN_CODED_BYTES = 500


def encode(data: bytes, coding: str) -> bytes:
    """`data` in a content coding of CODINGS (the whole body: gzip with its header)."""
    if coding == "gzip":
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip header and trailer
        return compressor.compress(data) + compressor.flush()
    if coding == "br":
        return brotli.compress(data, quality=6)
    if coding == "zstd":
        return zstd.compress(data, 9)
    raise ValueError(f"no content coding {coding!r}; the codings are: {', '.join(CODINGS)}")


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
    # Whether the tile is sent content-coded to clients that take a coding (CODED_FORMATS,
    # MIN_CODED_BYTES); its coded bodies, made once each (TileCache.coded).
    codable: bool = False
    codings: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def size(self) -> int:
        """Roughly the memory the tile takes: its bytes, its codings', the key and entry."""
        return len(self.data) + sum(len(body) for body in self.codings.values()) + 200


def codable(key: "TileKey", data: bytes) -> bool:
    """Whether a tile is kept and sent content-coded too."""
    return key.ext in CODED_FORMATS and len(data) >= MIN_CODED_BYTES


def cached_tile(key: "TileKey", data: bytes) -> CachedTile:
    """A tile as the caches keep it (not kept anywhere yet)."""
    return CachedTile(data, etag_of(data), codable(key, data))


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
        return self._remember(key, cached_tile(key, data))

    def put(self, key: TileKey, data: bytes, on_disk: bool = True) -> CachedTile:
        """Keep a tile in memory and, if `on_disk` and the key is unfiltered, on disk, with its
        gzip coding beside it (for nginx's gzip_static) when it is coded. OSError from the disk
        propagates once the tile is in memory."""
        tile = self._remember(key, cached_tile(key, data))
        path = self._disk_path(key) if on_disk else None
        if path is not None:
            if tile.codable:
                # The coding first: nginx may find the tile as soon as it is renamed in place.
                write_atomic(coded_path(path, "gzip"), self.coded(key, tile, "gzip", disk=False))
            write_atomic(path, data)
        return tile

    def coded(self, key: TileKey, tile: CachedTile, coding: str, disk: bool = True) -> bytes:
        """The tile's body in `coding` (CODINGS), made once: from memory, else from the disk
        cache, else encoded now (and written beside the tile, when the tile is on disk and
        `disk`). For a tile that is not `codable`, its bytes as they are."""
        if not tile.codable:
            return tile.data
        body = tile.codings.get(coding)
        if body is not None:
            return body
        path = self._disk_path(key) if disk else None
        body = _read(coded_path(path, coding)) if path is not None else None
        if body is None:
            body = encode(tile.data, coding)
            if path is not None and path.exists():
                try:
                    write_atomic(coded_path(path, coding), body)
                except OSError:
                    pass  # a full disk: the coding is kept in memory, made again elsewhere
        with self._lock:
            if coding not in tile.codings:
                tile.codings[coding] = body
                if self._memory.get(key) is tile:
                    self._bytes += len(body)
            body = tile.codings[coding]
        self._evict()
        return body

    def on_disk(self, key: TileKey) -> bool:
        path = self._disk_path(key)
        return path is not None and path.exists()

    def complete_on_disk(self, key: TileKey) -> bool:
        """Whether the tile is on disk with the coded file nginx serves (a `.gz` beside a
        vector tile); a tile there without it (a cache seeded before codings) gets it now."""
        path = self._disk_path(key)
        data = _read(path) if path is not None else None
        if path is None or data is None:
            return False
        tile = cached_tile(key, data)
        if tile.codable and not coded_path(path, "gzip").exists():
            write_atomic(coded_path(path, "gzip"), encode(data, "gzip"))
        return True

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._memory)

    def _remember(self, key: TileKey, tile: CachedTile) -> CachedTile:
        with self._lock:
            old = self._memory.pop(key, None)
            if old is not None:
                self._bytes -= old.size()
            self._memory[key] = tile
            self._bytes += tile.size()
        self._evict()
        return tile

    def _evict(self) -> None:
        with self._lock:
            while self._bytes > self.max_bytes and len(self._memory) > 1:
                _, evicted = self._memory.popitem(last=False)
                self._bytes -= evicted.size()

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


def coded_path(path: Path, coding: str) -> Path:
    """Where a tile's coded body is kept beside it: 12.mvt -> 12.mvt.gz (nginx's gzip_static)."""
    return path.with_name(path.name + CODINGS[coding])


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


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
