"""TileJSON 3.0.0 documents for the tile layers, and their bounds, centre and attribution."""

from collections.abc import Sequence
from typing import Any

from geo.crs import MAX_LAT
from geo.store import Store
from geo.tiles import labels
from geo.tiles.grid import MAX_ZOOM, MIN_ZOOM
from geo.tiles.layers import FORMATS, TILES_VERSION, layer_minzoom, mvt_layers
from geo.tiles.points import CLUSTER_MAXZOOM
from geo.tiles.shapes import FIELDS


def layer_bounds(store: Store, layer: str) -> tuple[float, float, float, float]:
    """(west, south, east, north) of what a tile layer draws, from the store's manifest."""
    names = [n for n in mvt_layers(layer) if n not in ("district_labels", "places")]
    entries = [
        store.manifest["layers"][n]["bounds"] for n in names if n in store.manifest["layers"]
    ]
    entries = [b for b in entries if b]
    if not entries:
        return (-180.0, -MAX_LAT, 180.0, MAX_LAT)
    return (
        min(b[0] for b in entries),
        min(b[1] for b in entries),
        max(b[2] for b in entries),
        max(b[3] for b in entries),
    )


def attribution(store: Store, layers: Sequence[str]) -> str:
    """The sources' attributions of the data behind some MVT layers, each once: the store
    layers' (from its manifest; an attack dataset's short `credit`), and GeoNames for the
    towns, which are not a store layer."""
    seen: dict[str, None] = {}
    for name in layers:
        if name == "places":
            sources = [labels.SOURCE]
        else:
            entry = store.manifest["layers"].get("districts" if name == "district_labels" else name)
            sources = (entry or {}).get("sources", [])
        for source in sources:
            # an attack dataset's short credit: its whole attribution (with kpmap's changes) is
            # in the store's manifest, the downloads and the pages
            seen.setdefault(source.get("credit") or source["attribution"], None)
    return "; ".join(seen)


def center(store: Store) -> list[float]:
    """[longitude, latitude, zoom] a map of KP opens at: the middle of the districts, zoom 7."""
    bounds = store.manifest["layers"].get("districts", {}).get("bounds") or (69, 31, 74.2, 36.9)
    return [round((bounds[0] + bounds[2]) / 2, 4), round((bounds[1] + bounds[3]) / 2, 4), 7]


def tilejson(store: Store, layer: str, tiles_url: str, fmt: str = "mvt") -> dict[str, Any]:
    """A TileJSON 3.0.0 document for a tile layer whose tiles are at `tiles_url` (a template
    with {z}/{x}/{y}); vector_layers (with their fields) for MVT."""
    names = mvt_layers(layer)
    document: dict[str, Any] = {
        "tilejson": "3.0.0",
        "name": f"kpmap {layer}",
        "description": DESCRIPTIONS[layer],
        "version": f"{TILES_VERSION}.0.0",
        "attribution": attribution(store, names),
        "scheme": "xyz",
        "tiles": [tiles_url],
        "minzoom": MIN_ZOOM,
        "maxzoom": MAX_ZOOM,
        "bounds": list(layer_bounds(store, layer)),
        "center": center(store),
    }
    if FORMATS[fmt][1] is None:
        document["vector_layers"] = [
            {
                "id": name,
                "description": DESCRIPTIONS.get(name, DESCRIPTIONS[layer]),
                "minzoom": layer_minzoom(layer, name),
                "maxzoom": MAX_ZOOM,
                "fields": FIELDS[name],
            }
            for name in names
        ]
    return document


DESCRIPTIONS = {
    "attacks": f"Attacks in Khyber Pakhtunkhwa: grid clusters (count, killed) up to zoom "
    f"{CLUSTER_MAXZOOM}, then one point per attack with its attributes, except attacks from "
    "datasets whose terms allow only aggregates (data/datasets.toml), which stay clusters",
    "districts": "Districts of Khyber Pakhtunkhwa with their attack and casualty totals",
    "tehsils": "Tehsils of Khyber Pakhtunkhwa with their attack and casualty totals",
    "durand_line": "The Durand Line (Afghanistan-Pakistan border), by province",
    "basemap": "A plain basemap: Afghanistan and Pakistan, KP's districts and tehsils, and the "
    "names of the districts and towns",
    "countries": "Afghanistan and Pakistan outlines",
    "district_labels": "Where each district's name goes",
    "places": f"Towns (GeoNames): district headquarters from zoom {labels.HQ_MINZOOM}, "
    "other towns from a zoom that falls with their population (min_zoom)",
}
