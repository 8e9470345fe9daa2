"""The tile layers: which MVT layers each holds, from which zoom, in which formats."""

from geo.errors import LayerNotFound
from geo.tiles import labels
from geo.tiles.grid import MIN_ZOOM, shown
from geo.tiles.mvt import EXTENT

MVT_BUFFER = 64 / EXTENT  # features this far outside a tile (a fraction of it) are kept
# Bump when the tiles' content or style changes, so caches keyed on it start afresh.
TILES_VERSION = "2"

TILE_LAYERS: dict[str, tuple[str, ...]] = {
    "attacks": ("attacks",),
    "districts": ("districts",),
    "tehsils": ("tehsils",),
    "durand_line": ("durand_line",),
    "basemap": ("countries", "tehsils", "districts", "district_labels", "places"),
}
# The vector layers a PMTiles export holds: every MVT layer once, in drawing order.
EXPORT_LAYERS = (
    "countries",
    "tehsils",
    "districts",
    "district_labels",
    "places",
    "durand_line",
    "attacks",
)
# URL suffix -> (MIME type, PNG scale or None for MVT)
FORMATS: dict[str, tuple[str, int | None]] = {
    "mvt": ("application/vnd.mapbox-vector-tile", None),
    "png": ("image/png", 1),
    "@2x.png": ("image/png", 2),
}

# District names are drawn on PNG basemap tiles from this zoom, for districts big enough there.
LABEL_MINZOOM = 7
LABEL_MIN_AREA_PX = 1600
# The basemap outlines tehsils from this zoom: below it (a tehsil is then ~10 px across) they
# would be a tangle over the districts.
BASEMAP_TEHSIL_MINZOOM = 9
# Town dots, in 256-px pixels: a district headquarters a little larger than other towns.
HQ_DOT = 3.0
TOWN_DOT = 2.0
# PNG style of the choropleth layers: (fill opacity factor, outline colour, outline width).


def layer_minzoom(layer: str | None, name: str) -> int:
    """The zoom MVT layer `name` starts at in tile layer `layer` (None: the PMTiles export, which
    holds the tehsils at every zoom, as the tehsils tile layer does)."""
    if name == "places":
        return labels.FIRST_ZOOM
    if name == "tehsils" and layer == "basemap":
        return BASEMAP_TEHSIL_MINZOOM
    return MIN_ZOOM


def mvt_layers(layer: str) -> tuple[str, ...]:
    """The MVT layers a tile layer holds; LayerNotFound (404) names the tile layers."""
    try:
        return TILE_LAYERS[layer]
    except KeyError:
        raise LayerNotFound(
            f"no tile layer {shown(layer)}; the tile layers are: {', '.join(TILE_LAYERS)}"
        ) from None
