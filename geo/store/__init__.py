"""The store: the built layers, opened once and queried.

    from geo.store import open_store
    store = open_store("data/store")                      # the GeoJSON store on disk
    store = open_store("postgresql://kpmap@db/kpmap")     # a store published to PostGIS
    store.query("districts", bbox=(70.0, 33.0, 71.0, 34.0), former_fata=True)

The package: files (the GeoJSON store on disk, queried from memory), postgis (the store
published to a PostgreSQL/PostGIS database, queried in SQL), layer (the protocol both
backends' layers implement), schemas (what each layer holds, and validation).
"""

from pathlib import Path

from geo.store import files
from geo.store.files import FeatureNotFound, FileLayer, Store
from geo.store.layer import Layer
from geo.store.postgis import is_database_url  # psycopg itself is imported only when used


def open_store(location: str | Path, pool_size: int | None = None) -> Store:
    """The store at `location`: a folder (the file store) or a postgresql:// URL (the version
    published there now; `pool_size` caps its connections per process)."""
    if is_database_url(location):
        from geo.store.postgis import DEFAULT_POOL_SIZE, PostGISStore

        return PostGISStore.open(str(location), pool_size or DEFAULT_POOL_SIZE)
    return Store.open(Path(location))


def current_version(location: str | Path) -> str | None:
    """The version of the store now at `location` (a folder or a postgresql:// URL), None if
    there is none: cheap enough to ask between requests, so a server notices a new build,
    import or publish and opens it (compare with `store.version`)."""
    if is_database_url(location):
        from geo.store import postgis

        return postgis.current_version(str(location))
    return files.current_version(location)


__all__ = [
    "FeatureNotFound",
    "FileLayer",
    "Layer",
    "Store",
    "current_version",
    "is_database_url",
    "open_store",
]
