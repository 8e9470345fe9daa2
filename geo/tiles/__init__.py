"""XYZ map tiles from the store: Mapbox Vector Tiles (MVT 2.1) and PNG, their TileJSON, a disk
cache and PMTiles archives.

    tiler = Tiler(store)
    tile = parse_tile("7", "89", "50")                                 # Tile(z=7, x=89, y=50)
    tiler.tile("attacks", tile, "mvt", filters={"actor": ["ISKP"]})   # -> bytes
    tile_bounds(*tile)                           # (west, south, east, north) in lon/lat

The package, by concern: grid (the Web Mercator XYZ grid, from mercantile), layers (what each
tile layer holds and from which zoom), points (the attack index and its clusters), shapes (the
polygon and line layers), tiler (what a tile shows, and PNG drawing), mvt (encoding), canvas
(drawing), labels (towns and where labels fit), tilejson, cache (memory and disk), pmtiles
(archives) and cli (`kpmap tiles`). This module re-exports what the web app and the command
line use.
"""

from geo.tiles.grid import (
    MAX_ZOOM,
    MIN_ZOOM,
    Tile,
    parse_tile,
    parse_zooms,
    tile_bounds,
    tiles_in_bounds,
)
from geo.tiles.layers import EXPORT_LAYERS, FORMATS, TILE_LAYERS, layer_minzoom, mvt_layers
from geo.tiles.points import filter_key
from geo.tiles.tilejson import attribution, center, layer_bounds, tilejson
from geo.tiles.tiler import Tiler

__all__ = [
    "EXPORT_LAYERS",
    "FORMATS",
    "MAX_ZOOM",
    "MIN_ZOOM",
    "TILE_LAYERS",
    "Tile",
    "Tiler",
    "attribution",
    "center",
    "filter_key",
    "layer_bounds",
    "layer_minzoom",
    "mvt_layers",
    "parse_tile",
    "parse_zooms",
    "tile_bounds",
    "tilejson",
    "tiles_in_bounds",
]
