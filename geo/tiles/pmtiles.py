"""A PMTiles v3 archive of the vector tiles, for static or CDN hosting (`kpmap tiles export`).

    export_pmtiles(store, "kpmap.pmtiles", zooms=range(0, 13))

Each tile is one gzip-compressed MVT holding every vector layer (geo.tiles.tiler.EXPORT_LAYERS:
countries, tehsils, districts, district_labels, places, durand_line, attacks), unfiltered; the
towns (places) start at zoom 7, as in the basemap, the tehsils at every zoom. Empty tiles are left
out, as PMTiles readers expect. The default stops at zoom 12, where every attack is already its
own point (except those whose dataset's terms allow only aggregates, geo.licences: they stay
clusters at every zoom, unless the tiler's policy names their dataset as licensed): map clients
overzoom vector tiles past an archive's maxzoom, so deeper levels would only repeat the same
points. The metadata holds the TileJSON-style description (name,
attribution, vector_layers with their fields) and the store build it came from.
"""

import gzip
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from geo import tiles
from geo.errors import InvalidQuery
from geo.fsutil import atomic_path
from geo.licences import RowPolicy
from geo.store import Store
from geo.tiles.layers import TILES_VERSION
from geo.tiles.shapes import FIELDS
from geo.tiles.tilejson import DESCRIPTIONS

DEFAULT_ZOOMS = range(0, 13)


def export_bounds(store: Store) -> tuple[float, float, float, float]:
    """(west, south, east, north) around every exported layer."""
    boxes = [tiles.layer_bounds(store, layer) for layer in ("basemap", "attacks", "durand_line")]
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def export_tiles(store: Store, zooms: Iterable[int]) -> list[tiles.Tile]:
    """The tiles an export visits, in PMTiles tile-id order (so the archive is clustered)."""
    bounds = export_bounds(store)
    found = [t for z in zooms for t in tiles.tiles_in_bounds(bounds, z)]
    return sorted(found, key=lambda t: zxy_to_tileid(*t))


def metadata(store: Store, zooms: range, policy: RowPolicy | None = None) -> dict[str, Any]:
    """The archive's JSON metadata: what a TileJSON says, plus where the data came from and
    whose attacks it holds only as clusters (`policy`, geo.licences; default: no licences)."""
    policy = policy if policy is not None else RowPolicy.from_setting("")
    withheld = policy.split(store.layer("attacks"), np.arange(len(store.layer("attacks"))))[1]
    vector_layers = [
        {
            "id": name,
            "description": DESCRIPTIONS[name],
            "minzoom": max(zooms.start, tiles.layer_minzoom(None, name)),
            "maxzoom": zooms.stop - 1,
            "fields": FIELDS[name],
        }
        for name in tiles.EXPORT_LAYERS
        if tiles.layer_minzoom(None, name) < zooms.stop  # a layer the archive's zooms hold
    ]
    return {
        "name": "kpmap",
        "description": "Khyber Pakhtunkhwa: districts, tehsils, the Durand Line, attacks, and a "
        "basemap with town names",
        "attribution": tiles.attribution(store, tiles.EXPORT_LAYERS),
        "version": f"{TILES_VERSION}.0.0",
        "type": "overlay",
        "format": "pbf",
        "minzoom": zooms.start,
        "maxzoom": zooms.stop - 1,
        "bounds": ",".join(f"{v:.6f}" for v in export_bounds(store)),
        "center": ",".join(str(v) for v in tiles.center(store)),
        "vector_layers": vector_layers,
        "generator": "kpmap tiles export",
        "kpmap": {
            "store_built_at": store.manifest.get("built_at"),
            # The archive leaves no one of these attacks as a point: they are only in clusters.
            "clustered_only": withheld.notice(policy.datasets),
            # each attack dataset's whole attribution: access date, release, kpmap's changes
            "datasets": [
                source
                for source in store.manifest["layers"]["attacks"].get("sources", [])
                if source.get("dataset")
            ],
            "layers": {
                name: {"count": entry.get("count"), "sha256": entry.get("sha256")}
                for name, entry in store.manifest["layers"].items()
            },
        },
    }


def export_pmtiles(
    store: Store,
    out: str | Path,
    zooms: range = DEFAULT_ZOOMS,
    tiler: tiles.Tiler | None = None,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, int]:
    """Write the archive to `out` (atomically: a temporary file, then a rename).

    Returns {"tiles": tiles written, "visited": tiles looked at, "bytes": archive size}.
    `progress(n)` is called as tiles are done (for a progress bar).
    """
    out = Path(out)
    tiler = tiler or tiles.Tiler(store)
    written = visited = 0
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            writer = Writer(f)
            for tile in export_tiles(store, zooms):
                data = tiler.export_tile(tile)
                visited += 1
                if data:
                    writer.write_tile(zxy_to_tileid(*tile), gzip.compress(data, mtime=0))
                    written += 1
                if progress:
                    progress(1)
            if not written:
                raise InvalidQuery(f"no tiles to export at zooms {zooms.start}-{zooms.stop - 1}")
            writer.finalize(_header(store, zooms), metadata(store, zooms, tiler.policy))
    return {"tiles": written, "visited": visited, "bytes": out.stat().st_size}


def _header(store: Store, zooms: range) -> dict[str, Any]:
    west, south, east, north = export_bounds(store)
    center = tiles.center(store)
    return {
        "tile_type": TileType.MVT,
        "tile_compression": Compression.GZIP,
        "min_lon_e7": int(west * 1e7),
        "min_lat_e7": int(south * 1e7),
        "max_lon_e7": int(east * 1e7),
        "max_lat_e7": int(north * 1e7),
        "center_zoom": min(max(center[2], zooms.start), zooms.stop - 1),
        "center_lon_e7": int(center[0] * 1e7),
        "center_lat_e7": int(center[1] * 1e7),
    }
