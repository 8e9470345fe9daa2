"""The Web Mercator XYZ tile grid (EPSG:3857, y counted from the north), from mercantile.

Internally every position is a "world" coordinate: Web Mercator scaled to 0..1 on both axes, y
down, so tile (z, x, y) covers [x, x + 1] / 2**z by [y, y + 1] / 2**z.
"""

import math
import re
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import mercantile
import numpy as np

from geo.crs import EARTH_RADIUS, web_mercator
from geo.errors import InvalidTile

MIN_ZOOM = 0
MAX_ZOOM = 14

ORDER = 24
WORLD_METRES = 2 * math.pi * EARTH_RADIUS  # Web Mercator's width

_INTEGER = re.compile(r"^[0-9]{1,10}$")


class Tile(NamedTuple):
    z: int
    x: int
    y: int


def shown(value: Any) -> str:
    """A short copy of a user's value, safe in any message (markup becomes "?")."""
    return "'" + re.sub(r"[^A-Za-z0-9_.,@ -]", "?", str(value)[:40]) + "'"


def parse_tile(z: Any, x: Any, y: Any) -> Tile:
    """A checked tile address from URL parts; InvalidTile (400) says what is allowed.

    >>> parse_tile("3", "4", "2")
    Tile(z=3, x=4, y=2)
    """
    values = []
    for name, value in (("z", z), ("x", x), ("y", y)):
        text = str(value)
        if not _INTEGER.match(text):
            raise InvalidTile(f"{name} must be a whole number >= 0, not {shown(text[:20])}")
        values.append(int(text))
    z, x, y = values
    if z > MAX_ZOOM:
        raise InvalidTile(f"zoom {z} is out of range: tiles go from zoom {MIN_ZOOM} to {MAX_ZOOM}")
    if x >= 2**z or y >= 2**z:
        raise InvalidTile(f"at zoom {z}, x and y must be between 0 and {2**z - 1}: got {x}/{y}")
    return Tile(z, x, y)


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a tile in longitude/latitude (WGS 84), from mercantile.

    >>> tile_bounds(0, 0, 0)
    (-180.0, -85.0511287798066, 180.0, 85.0511287798066)
    """
    return tuple(mercantile.bounds(x, y, z))


def world_xy(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates (0..1, y down) of longitudes/latitudes: Web Mercator (geo.crs) scaled.

    >>> [float(v) for v in world_xy(0.0, 0.0)]
    [0.5, 0.5]
    """
    x, y = web_mercator(lon, lat)
    return x / WORLD_METRES + 0.5, 0.5 - y / WORLD_METRES


def tiles_in_bounds(bounds: Sequence[float], z: int) -> Iterator[Tile]:
    """Every tile at zoom z whose area overlaps (west, south, east, north), from mercantile: a
    tile's own bounds give that tile alone (its edges touch, not overlap, its neighbours)."""
    west, south, east, north = bounds
    for tile in mercantile.tiles(west, south, east, north, [z]):
        yield Tile(tile.z, tile.x, tile.y)


def parse_zooms(text: str) -> range:
    """A zoom range from text: "0-10" is range(0, 11), "5" range(5, 6); InvalidTile outside
    MIN_ZOOM..MAX_ZOOM."""
    match = re.fullmatch(r"\s*(\d{1,2})\s*(?:-\s*(\d{1,2})\s*)?", text)
    if not match:
        raise InvalidTile(f"zoom range {text[:20]!r} must look like 0-10 or 7")
    first = int(match[1])
    last = int(match[2]) if match[2] else first
    if not MIN_ZOOM <= first <= last <= MAX_ZOOM:
        raise InvalidTile(f"zoom range {text!r} must lie within {MIN_ZOOM}-{MAX_ZOOM}, low to high")
    return range(first, last + 1)
