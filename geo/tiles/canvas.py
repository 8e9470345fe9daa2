"""PNG drawing for map tiles: a Canvas for geometries in tile units (Pillow), and the style.

geo.tiles.tiler picks what each tile layer shows and draws it on a Canvas in these colours; nothing
here reads the store or knows the tile grid.
"""

import io
import math
from collections.abc import Iterator
from functools import cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TILE_SIZE = 256  # pixels a tile side (twice that for @2x tiles)

RGBA = tuple[int, int, int, int]
# Colours: a plain, light basemap; the data layers in warm, readable colours over it.
LAND = (242, 239, 233, 255)
COUNTRY_EDGE = (140, 140, 140, 255)
DISTRICT_EDGE = (185, 165, 145, 255)
TEHSIL_EDGE = (215, 203, 190, 255)  # lighter than the district edges it lies within
LABEL = (70, 70, 70, 255)
TOWN_LABEL = (25, 25, 25, 255)  # darker than district names: a town is a place, not an area
TOWN = (40, 40, 40, 255)
HALO = (255, 255, 255, 230)
BORDER = (128, 0, 96, 255)
ATTACK = (200, 20, 30, 210)
ATTACK_EDGE = (255, 255, 255, 230)
# Districts are shaded by their attack count relative to the layer's largest (log scale).
CHOROPLETH = [
    (255, 255, 178, 150),
    (254, 204, 92, 160),
    (253, 141, 60, 170),
    (240, 59, 32, 180),
    (189, 0, 38, 190),
]
DISTRICT_OUTLINE = (110, 30, 30, 255)
# Tehsils are smaller, so the same ramp is paler and their outlines thinner and lighter: a tehsil
# map over a district map still reads as the finer of the two.
TEHSIL_OUTLINE = (150, 80, 70, 200)
TEHSIL_FILL_ALPHA = 0.7
LABEL_SIZE = 11  # font size of every label, in 256-px pixels
HALO_WIDTH = 2


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow ships a small FreeType font (load_default with a size), so no font file is needed.
    return ImageFont.load_default(size=size)


@cache
def empty_png(scale: int = 1) -> bytes:
    """A fully transparent PNG tile: what a PNG tile with nothing in it is."""
    return _png(Image.new("RGBA", (TILE_SIZE * scale,) * 2, (0, 0, 0, 0)))


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    # Level 6 is zlib's default: within a millisecond of level 1 on sparse tiles, and smaller.
    image.save(out, format="PNG", compress_level=6)
    return out.getvalue()


def _rings(geometry: Any) -> Iterator[tuple[Any, list[Any]]]:
    for polygon in getattr(geometry, "geoms", [geometry]):
        if polygon.geom_type == "Polygon":
            yield polygon.exterior, list(polygon.interiors)


def _pixels(ring: Any, size: int) -> list[tuple[float, float]]:
    return [(px, py) for px, py in np.asarray(ring.coords)[:, :2] * size]


class Canvas:
    """A tile image being drawn; geometries come in tile units (0..1), sizes in 256-px pixels."""

    def __init__(self, scale: int = 1):
        self.scale = scale
        self.size = TILE_SIZE * scale
        self.image = Image.new("RGBA", (self.size, self.size), (0, 0, 0, 0))
        self.drawn = False

    def polygons(
        self,
        features: list[tuple[Any, RGBA | None]],
        outline: RGBA | None = None,
        width: float = 1,
    ) -> None:
        """Fill each polygon with its colour (holes left open), then stroke the outlines."""
        if not features:
            return
        overlay = Image.new("RGBA", self.image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        # Larger first, so an enclave drawn later fills the hole its container leaves open.
        for geometry, fill in sorted(features, key=lambda f: -f[0].area):
            for exterior, holes in _rings(geometry):
                if fill is not None:
                    draw.polygon(_pixels(exterior, self.size), fill=fill)
                    for hole in holes:
                        draw.polygon(_pixels(hole, self.size), fill=(0, 0, 0, 0))
        if outline is not None:
            stroke = max(1, round(width * self.scale))
            for geometry, _ in features:
                for exterior, holes in _rings(geometry):
                    for ring in (exterior, *holes):
                        draw.line(_pixels(ring, self.size), fill=outline, width=stroke)
        self.image.alpha_composite(overlay)
        self.drawn = True

    def lines(self, geometries: list[Any], colour: RGBA, width: float) -> None:
        draw = ImageDraw.Draw(self.image)
        stroke = max(1, round(width * self.scale))
        for geometry in geometries:
            for line in getattr(geometry, "geoms", [geometry]):
                if line.geom_type == "LineString" and len(line.coords) > 1:
                    draw.line(_pixels(line, self.size), fill=colour, width=stroke, joint="curve")
                    self.drawn = True

    def circles(self, xy: np.ndarray, radii: np.ndarray, fill: RGBA, outline: RGBA) -> None:
        if not len(xy):
            return
        draw = ImageDraw.Draw(self.image)
        width = max(1, self.scale)
        for (cx, cy), r in zip(
            (xy * self.size).tolist(), (radii * self.scale).tolist(), strict=True
        ):
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=width)
        self.drawn = True

    def labels(self, labels: list[tuple[float, float, str, str]], fill: RGBA = LABEL) -> None:
        """Text with a white halo at (x, y, text, Pillow anchor), e.g. "mm" centred there."""
        if not labels:
            return
        draw = ImageDraw.Draw(self.image)
        font = _font(LABEL_SIZE * self.scale)
        for lx, ly, text, anchor in labels:
            draw.text(
                (lx * self.size, ly * self.size),
                text,
                font=font,
                fill=fill,
                anchor=anchor,
                stroke_width=HALO_WIDTH * self.scale,
                stroke_fill=HALO,
            )
        self.drawn = True

    def png(self) -> bytes:
        # Something in the buffer only may have drawn nothing inside the tile: still empty.
        if not self.drawn or self.image.getbbox() is None:
            return empty_png(self.scale)
        return _png(self.image)


def text_box(text: str, anchor: str) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) a label takes around its anchor point, halo included, in 256-px
    pixels: what label placement measures (a @2x tile draws everything twice the size)."""
    return _font(LABEL_SIZE).getbbox(text, anchor=anchor, stroke_width=HALO_WIDTH)


def circle_radius(count: np.ndarray) -> np.ndarray:
    """Circle radius in 256-px pixels: 3.5 for one attack, growing with log2 of the count up to
    9 (a cluster cell is 8 px wide, so dense areas read as dense without one blot)."""
    return np.minimum(3.5 + np.log2(np.maximum(count, 1)), 9)


def choropleth_colour(attacks: int, most: int, alpha: float = 1.0) -> RGBA:
    """An area's fill: its attacks against the most any area of its layer has, on a log scale;
    `alpha` scales the ramp's opacity (TEHSIL_FILL_ALPHA for tehsils)."""
    if attacks <= 0 or most <= 0:
        colour = CHOROPLETH[0][:3] + (60,)
    else:
        t = math.log1p(attacks) / math.log1p(most)
        colour = CHOROPLETH[min(len(CHOROPLETH) - 1, int(t * len(CHOROPLETH)))]
    return colour[:3] + (round(colour[3] * alpha),)
