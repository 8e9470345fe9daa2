"""The resources every request shares, opened once per app (as flaskr's db.py owns its database).

`init_app(app)` (called by the factory) opens the store, reads the licence policy, and makes
the tiler and the tile cache; views reach them through `get_store()`, `get_policy()`,
`get_tiler()` and `get_tile_cache()`. Blueprints import from here, never from `app`, so the
package and its blueprints do not import each other.
"""

import logging
from dataclasses import dataclass

from flask import Flask, current_app

from geo import aggregate, tiles
from geo.licences import RowPolicy
from geo.store import Store, open_store
from geo.tiles.cache import TileCache, store_version

KEY = "kpmap"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    store: Store
    policy: RowPolicy
    tiler: tiles.Tiler
    tile_cache: TileCache


def init_app(app: Flask) -> Resources:
    """Open what the app serves from; a missing store or a bad setting stops the start here."""
    # A folder is the file store; a postgresql:// URL the version published there (geo.store).
    store = open_store(app.config["STORE"], app.config["STORE_POOL_SIZE"])
    # An unknown dataset name stops the start here, with the names there are, rather than
    # leaving the operator to believe rows are served that are not (or the reverse).
    policy = RowPolicy.from_setting(app.config["LICENSED_DATASETS"])
    tiler = tiles.Tiler(store, policy)
    resources = Resources(store, policy, tiler, _tile_cache(app, store, tiler))
    app.extensions[KEY] = resources
    # Read the attack columns now rather than on the first map request: about a second per
    # 100,000 attacks, once per process (gunicorn's master with --preload).
    aggregate.attack_table(store)
    return resources


def _tile_cache(app: Flask, store: Store, tiler: tiles.Tiler) -> TileCache:
    """The tile cache; memory only when TILE_CACHE_DIR cannot be written (a full or read-only
    disk must not stop the service: tiles are then rendered and kept in memory)."""
    version = store_version(store.manifest, tiler.cache_version())
    max_bytes = int(app.config["TILE_MEMORY_MB"]) * 2**20
    directory = app.config.get("TILE_CACHE_DIR") or None
    try:
        return TileCache(directory, version, tiles.TILE_LAYERS, max_bytes)
    except OSError as exc:
        log.warning(
            "TILE_CACHE_DIR %s cannot be used (%s): tiles are kept in memory only", directory, exc
        )
        return TileCache(None, version, tiles.TILE_LAYERS, max_bytes)


def resources() -> Resources:
    return current_app.extensions[KEY]


def get_store() -> Store:
    """The store the app opened at start-up (one per process, read-only)."""
    return resources().store


def get_policy() -> RowPolicy:
    """Which datasets' rows this app withholds (LICENSED_DATASETS, geo.licences)."""
    return resources().policy


def get_tiler() -> tiles.Tiler:
    return resources().tiler


def get_tile_cache() -> TileCache:
    return resources().tile_cache
