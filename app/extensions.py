"""The resources every request shares, opened once per app (as flaskr's db.py owns its database).

`init_app(app)` (called by the factory) opens the live store (geo.store.live: the store at STORE,
switched to a new build or import between requests), reads the licence policy, and keeps one
tiler, tile cache and download render cache; views reach them through `get_store()`,
`get_policy()`, `get_tiler()`, `get_tile_cache()` and `get_renders()`. Blueprints import from
here, never from `app`, so the package and its blueprints do not import each other.

Everything made from a store (the tiler and its indexes, the tile caches, the map's attack table)
is made per store version: a request takes one version from `get_store()` and every answer it
gives comes from that version.
"""

import atexit
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, current_app, g

from geo import aggregate, tiles
from geo.licences import RowPolicy
from geo.renders import RenderCache
from geo.store import Store, open_store
from geo.store.live import LiveStore
from geo.tiles.cache import TileCache, store_version

KEY = "kpmap"
log = logging.getLogger(__name__)
# Where downloads are kept when DOWNLOAD_CACHE_DIR is unset: in the shared temp folder, one
# folder per user, private, so that no other local user can plant a file there.
DEFAULT_DOWNLOAD_CACHE = Path(tempfile.gettempdir()) / (
    f"kpmap-downloads-{os.getuid()}" if hasattr(os, "getuid") else "kpmap-downloads"
)


@dataclass(frozen=True)
class Resources:
    live: LiveStore
    policy: RowPolicy
    renders: RenderCache
    tile_directory: str | None
    tile_memory: int


def init_app(app: Flask) -> Resources:
    """Open what the app serves from; a missing store or a bad setting stops the start here."""
    # An unknown dataset name stops the start here, with the names there are, rather than
    # leaving the operator to believe rows are served that are not (or the reverse).
    policy = RowPolicy.from_setting(app.config["LICENSED_DATASETS"])
    pool_size = int(app.config["STORE_POOL_SIZE"])
    live = LiveStore(
        # A folder is the file store; a postgresql:// URL the version published there.
        app.config["STORE"],
        opener=lambda location: open_store(location, pool_size),
        check_every=float(app.config["STORE_CHECK_INTERVAL"]),
        # A new store, too, leaves the cyclic collector's sight, as wsgi.py freezes the first.
        freeze=True,
    )
    resources = Resources(
        live=live,
        policy=policy,
        renders=_render_cache(app),
        tile_directory=app.config.get("TILE_CACHE_DIR") or None,
        tile_memory=int(app.config["TILE_MEMORY_MB"]) * 2**20,
    )
    app.extensions[KEY] = resources
    # Read the attack columns, make the tiler with every index it reads (geo.tiles.Tiler.warm)
    # and the tile cache now, and for each new store before it is served, rather than on a
    # first request: about a second per 100,000 attacks. Under gunicorn's --preload this runs
    # in the master, so every worker is forked ready and shares the indexes' memory.
    for warm in (
        aggregate.attack_table,
        lambda s: _tiler(resources, s).warm(),
        lambda s: _tile_cache(resources, s),
    ):
        warm(live.current())
        live.warm.append(warm)
    return resources


def _tiler(resources: Resources, store: Store) -> tiles.Tiler:
    return resources.live.derived("tiler", store, lambda s: tiles.Tiler(s, resources.policy))


def _tile_cache(resources: Resources, store: Store) -> TileCache:
    """The store version's tile cache; memory only when TILE_CACHE_DIR cannot be written (a full
    or read-only disk must not stop the service: tiles are then rendered and kept in memory)."""

    def make(s: Store) -> TileCache:
        version = store_version(s.manifest, _tiler(resources, s).cache_version())
        layers, memory, directory = (
            tiles.TILE_LAYERS,
            resources.tile_memory,
            resources.tile_directory,
        )
        # Only the version served (or about to be) may point nginx's `current` at itself.
        publish = resources.live.serves(s)
        try:
            return TileCache(directory, version, layers, memory, publish=publish)
        except OSError as exc:
            log.warning(
                "TILE_CACHE_DIR %s cannot be used (%s): tiles are kept in memory only",
                directory,
                exc,
            )
            return TileCache(None, version, layers, memory)

    return resources.live.derived("tile_cache", store, make)


def download_folder(app: Flask) -> Path | None:
    """The folder downloads are kept in, made if need be; None if it cannot be used."""
    configured = app.config.get("DOWNLOAD_CACHE_DIR")
    folder = Path(configured or DEFAULT_DOWNLOAD_CACHE)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not configured and hasattr(os, "getuid") and folder.stat().st_uid != os.getuid():
            return None  # someone else's folder under our name in the shared temp folder
    except OSError:
        return None
    return folder


def _render_cache(app: Flask) -> RenderCache:
    """Rendered downloads in the download folder, or (when it cannot be used) in a private
    temporary folder of this process's, removed when it exits."""
    folder = download_folder(app)
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="kpmap-downloads-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return RenderCache(
        folder,
        max_bytes=int(app.config["DOWNLOAD_CACHE_MB"]) * 2**20,
        max_renders=int(app.config["MAX_RENDERS"]),
    )


def resources() -> Resources:
    return current_app.extensions[KEY]


def get_store() -> Store:
    """The store this request answers from (read-only): taken from the live store once per
    request and kept in `g`, so one answer never mixes two versions and a switch happens only
    between requests."""
    if "kpmap_store" not in g:
        g.kpmap_store = resources().live.current()
    return g.kpmap_store


def get_policy() -> RowPolicy:
    """Which datasets' rows this app withholds (LICENSED_DATASETS, geo.licences)."""
    return resources().policy


def get_tiler() -> tiles.Tiler:
    """The tiler of this request's store version."""
    return _tiler(resources(), get_store())


def get_tile_cache() -> TileCache:
    """The tile cache of this request's store version."""
    return _tile_cache(resources(), get_store())


def live_store(app: Flask) -> LiveStore:
    """The app's live store, outside a request (app/tiles.py's fast path, which answers a cached
    tile without a request context, takes the store with `current()` as get_store does)."""
    return app.extensions[KEY].live


def tile_cache_of(app: Flask, store: Store) -> TileCache:
    """The tile cache of a store version taken from live_store(app), outside a request."""
    return _tile_cache(app.extensions[KEY], store)


def get_renders() -> RenderCache:
    """The cache of rendered downloads (geo.renders), shared by every worker using its folder."""
    return resources().renders
