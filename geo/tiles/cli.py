"""`kpmap tiles seed` and `kpmap tiles export`: pre-render tiles into the disk cache, or write a
PMTiles archive. geo/cli.py adds them with `tiles_cli.add_parser(sub)`.

    kpmap tiles seed attacks --zoom 0-10 --cache-dir /var/cache/kpmap-tiles
    kpmap tiles export kpmap.pmtiles --zoom 0-12
"""

import argparse
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from geo import paths
from geo.errors import InvalidQuery

# geo.tiles.tiler (numpy, shapely, Pillow, protobuf) is imported only when a tiles command runs, so
# that adding these subcommands costs every other kpmap command nothing.
LAYERS = "attacks, districts, tehsils, durand_line or basemap"  # geo.tiles.TILE_LAYERS (tested)
FORMATS = "mvt, png, @2x.png"


def add_parser(subparsers: Any) -> None:
    """Add `tiles seed` and `tiles export` to the kpmap command's subparsers."""
    top = subparsers.add_parser(
        "tiles",
        help="pre-render map tiles into the disk cache, or export a PMTiles archive",
        description="Map tiles for embedding (the web app serves them under /tiles/).",
    )
    sub = top.add_subparsers(dest="tiles_command", required=True, metavar="ACTION")

    p = sub.add_parser(
        "seed",
        help="render a layer's tiles into the disk cache (<layer>/<z>/<x>/<y>.<ext>, and "
        "<y>.mvt.gz)",
        description="Renders every tile that touches the layer's bounds at the given zooms, "
        "unfiltered, into the cache folder the web app reads (KPMAP_TILE_CACHE_DIR), where nginx "
        "or a CDN can serve them; each vector tile with its gzip coding beside it "
        "(<y>.mvt.gz, for nginx's gzip_static). Empty tiles are not written. Tiles already "
        "there are kept (given a .gz if they lack one) unless --force. Attacks from datasets "
        "whose terms allow only aggregates stay clusters unless KPMAP_LICENSED_DATASETS names "
        "them, as in the web app.",
    )
    p.add_argument("layer", help=LAYERS)
    p.add_argument("--zoom", default="0-10", help="zoom or range of zooms (default 0-10)")
    p.add_argument(
        "--format",
        default="mvt,png",
        help=f"comma-separated formats of {FORMATS} (default mvt,png)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=os.environ.get("KPMAP_TILE_CACHE_DIR") or None,
        help="the disk cache (default: $KPMAP_TILE_CACHE_DIR)",
    )
    p.add_argument("--store", type=Path, default=paths.store_dir(), help="store folder")
    p.add_argument("--force", action="store_true", help="render tiles already in the cache too")
    p.set_defaults(run=cmd_seed)

    p = sub.add_parser(
        "export",
        help="write a PMTiles v3 archive of the vector tiles (every layer, with metadata)",
        description="Each tile holds the layers countries, districts, district_labels, "
        "durand_line and attacks (unfiltered). Clients overzoom past the archive's maxzoom. "
        "Attacks from datasets whose terms allow only aggregates stay clusters unless "
        "KPMAP_LICENSED_DATASETS names them.",
    )
    p.add_argument("out", type=Path, metavar="OUT.pmtiles")
    p.add_argument("--zoom", default="0-12", help="zoom or range of zooms (default 0-12)")
    p.add_argument("--store", type=Path, default=paths.store_dir(), help="store folder")
    p.set_defaults(run=cmd_export)


def cmd_seed(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from geo import tiles
    from geo.store import Store

    if args.cache_dir is None:
        raise InvalidQuery("no cache folder: pass --cache-dir DIR or set KPMAP_TILE_CACHE_DIR")
    tiles.mvt_layers(args.layer)
    zooms = tiles.parse_zooms(args.zoom)
    formats = parse_formats(args.format)
    store = Store.open(args.store)
    bounds = tiles.layer_bounds(store, args.layer)
    total = sum(1 for z in zooms for _ in tiles.tiles_in_bounds(bounds, z))
    started = time.perf_counter()
    with tqdm(total=total, desc=f"seed {args.layer}", unit="tile", disable=None) as bar:
        counts = seed(
            store, args.layer, zooms, formats, args.cache_dir, args.force, progress=bar.update
        )
    elapsed = time.perf_counter() - started
    print(
        f"{args.layer} z{zooms.start}-{zooms.stop - 1} ({', '.join(formats)}): "
        f"{counts['written']} written, {counts['kept']} already there, {counts['empty']} empty, "
        f"in {elapsed:.1f} s -> {args.cache_dir}"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from geo import tiles
    from geo.store import Store
    from geo.tiles.pmtiles import export_pmtiles, export_tiles

    zooms = tiles.parse_zooms(args.zoom)
    store = Store.open(args.store)
    started = time.perf_counter()
    with tqdm(
        total=len(export_tiles(store, zooms)), desc="export", unit="tile", disable=None
    ) as bar:
        tiler = tiles.Tiler(store, licence_policy())
        result = export_pmtiles(store, args.out, zooms, tiler=tiler, progress=bar.update)
    elapsed = time.perf_counter() - started
    print(
        f"{args.out}: {result['tiles']} tiles (of {result['visited']} visited), "
        f"z{zooms.start}-{zooms.stop - 1}, {result['bytes'] / 2**20:.1f} MiB in {elapsed:.1f} s"
    )
    return 0


def licence_policy() -> Any:
    """Whose rows the tiles may show one by one: as in the web app, KPMAP_LICENSED_DATASETS
    names the restricted datasets the operator may redistribute (geo.licences)."""
    from geo.licences import RowPolicy, setting_from_env

    return RowPolicy.from_setting(setting_from_env())


def parse_formats(text: str) -> list[str]:
    """A list of tile formats from "mvt,png"; InvalidQuery for one that is not a format."""
    from geo import tiles

    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in tiles.FORMATS]
    if unknown or not formats:
        raise InvalidQuery(f"--format takes a comma-separated list of: {', '.join(tiles.FORMATS)}")
    return formats


def seed(
    store: Any,
    layer: str,
    zooms: Iterable[int],
    formats: list[str],
    cache_dir: Path,
    force: bool = False,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, int]:
    """Render a layer's tiles into the disk cache; {"written", "kept", "empty"} counts."""
    from geo import tiles
    from geo.tiles.cache import TileCache, TileKey, store_version

    tiles.mvt_layers(layer)
    tiler = tiles.Tiler(store, licence_policy())
    # A small memory cache: seeding is a stream of tiles, each wanted once.
    cache = TileCache(
        cache_dir,
        version=store_version(store.manifest, tiler.cache_version()),
        layers=tiles.TILE_LAYERS,
        max_bytes=2**20,
    )
    counts = {"written": 0, "kept": 0, "empty": 0}
    bounds = tiles.layer_bounds(store, layer)
    for z in zooms:
        for tile in tiles.tiles_in_bounds(bounds, z):
            for fmt in formats:
                key = TileKey(layer, *tile, fmt)
                if not force and cache.complete_on_disk(key):
                    counts["kept"] += 1
                else:
                    data = tiler.tile(layer, tile, fmt)
                    empty = tiler.is_empty(data, fmt)
                    cache.put(key, data, on_disk=not empty)
                    counts["empty" if empty else "written"] += 1
            if progress:
                progress(1)
    return counts
