"""XYZ map tiles from the store: Mapbox Vector Tiles (MVT 2.1) and PNG, plus their TileJSON.

    tiler = Tiler(store)
    tile = parse_tile("7", "89", "50")                                 # Tile(z=7, x=89, y=50)
    tiler.tile("attacks", tile, "mvt", filters={"actor": ["ISKP"]})   # -> bytes
    tiler.tile("basemap", tile, "png")
    tile_bounds(*tile)                           # (west, south, east, north) in lon/lat

Tiles use the Web Mercator XYZ grid (EPSG:3857, y counted from the north), zoom 0 to MAX_ZOOM.
Internally every position is a "world" coordinate: Web Mercator scaled to 0..1 on both axes, y
down, so tile (z, x, y) covers [x, x + 1] / 2**z by [y, y + 1] / 2**z.

Tile layers (TILE_LAYERS) and the MVT layers each tile holds:
    attacks      attacks       grid clusters up to CLUSTER_MAXZOOM, then one point per attack
    districts    districts     polygons with their attack and casualty totals
    tehsils      tehsils       the same for KP's 153 tehsils
    durand_line  durand_line   the border, by province
    basemap      countries, tehsils (from zoom 9), districts, district_labels, places (towns,
                 from zoom 7: see geo.tiles.labels)   (the offline basemap)

An empty tile is still a tile: zero bytes of MVT (a valid tile with no layers) or a fully
transparent PNG, so a disk cache, a CDN or a PMTiles archive treat every tile alike.

Attacks are the only layer that takes the map's filters (see geo.query): the other layers
ignore them, and the districts' and tehsils' totals are over all attacks in the store.

This module picks what each tile shows; geo.tiles_mvt encodes it, geo.tiles_png draws it, and
geo.tiles.labels chooses the towns and where the basemap's labels fit.
"""

import hashlib
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import shapely

from geo.errors import InvalidTile
from geo.licences import RowPolicy
from geo.store import Store
from geo.tiles.canvas import (
    ATTACK,
    ATTACK_EDGE,
    BORDER,
    COUNTRY_EDGE,
    DISTRICT_EDGE,
    DISTRICT_OUTLINE,
    HALO,
    LAND,
    TEHSIL_EDGE,
    TEHSIL_FILL_ALPHA,
    TEHSIL_OUTLINE,
    TILE_SIZE,
    TOWN,
    TOWN_LABEL,
    Canvas,
    choropleth_colour,
    circle_radius,
    empty_png,
    text_box,
)
from geo.tiles.grid import MAX_ZOOM, MIN_ZOOM, Tile, world_xy
from geo.tiles.labels import Candidate, Label, Town, place_labels, read_towns
from geo.tiles.layers import (
    BASEMAP_TEHSIL_MINZOOM,
    EXPORT_LAYERS,
    FORMATS,
    HQ_DOT,
    LABEL_MIN_AREA_PX,
    LABEL_MINZOOM,
    MVT_BUFFER,
    TILES_VERSION,
    TOWN_DOT,
    layer_minzoom,
    mvt_layers,
)
from geo.tiles.mvt import encode_vector_tile
from geo.tiles.points import CLUSTER_MAXZOOM, MAX_POINTS, AttackIndex, Points, attack_deaths
from geo.tiles.shapes import FIELDS, POINT_FIELDS, Shapes, label_point, pick, to_world

# The store layers a tile draws as polygons or lines (Tiler._shape_layer).
SHAPE_LAYERS = ("countries", "districts", "tehsils", "durand_line")

AREA_STYLES = {
    "districts": (1.0, DISTRICT_OUTLINE, 1.0),
    "tehsils": (TEHSIL_FILL_ALPHA, TEHSIL_OUTLINE, 0.5),
}

# Morton (Z-order) codes of positions at 2**ORDER cells a side: every tile at every zoom, and
# every cluster cell, is one contiguous run of the codes, so a sorted array answers a tile with

# -- the tiler ----------------------------------------------------------------------------------


class Tiler:
    """Makes the tiles of one store. Indexes are built on first use and kept (thread-safe)."""

    def __init__(self, store: Store, policy: RowPolicy | None = None):
        """`policy` says whose rows the tiles may show one by one (geo.licences); by default no
        dataset is licensed, so a caller that forgets it hands out nothing it may not."""
        self.store = store
        self.policy = policy if policy is not None else RowPolicy.from_setting("")
        self._attacks: AttackIndex | None = None
        self._shapes: dict[str, Shapes] = {}
        self._labels: tuple[np.ndarray, np.ndarray, list[dict[str, Any]], np.ndarray] | None = None
        self._towns: tuple[list[Town], np.ndarray, np.ndarray, np.ndarray] | None = None
        self._layouts: dict[int, list[Label]] = {}
        self._lock = threading.Lock()

    # indexes

    def attack_index(self) -> AttackIndex:
        with self._lock:
            if self._attacks is None:
                withheld = self.policy.withheld_mask(self.store.layer("attacks"))
                self._attacks = AttackIndex(self.store, attack_deaths(self.store), withheld)
            return self._attacks

    def _shape_layer(self, name: str) -> Shapes:
        with self._lock:
            if name not in self._shapes:
                layer = self.store.layer(name)
                features = self.store.query(name)
                keys = tuple(FIELDS[name])
                self._shapes[name] = Shapes(
                    geometries=to_world(layer.geometries()),
                    properties=[pick(f["properties"], keys) for f in features],
                )
            return self._shapes[name]

    def _district_labels(self) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]], np.ndarray]:
        """Label points (u, v), their properties, and each district's area in world units."""
        districts = self._shape_layer("districts")
        with self._lock:
            if self._labels is None:
                points = [label_point(g) for g in districts.geometries]
                self._labels = (
                    np.array([p.x for p in points]),
                    np.array([p.y for p in points]),
                    [{"id": p["id"], "name": p["name"]} for p in districts.properties],
                    shapely.area(districts.geometries),
                )
            return self._labels

    def towns(self) -> tuple[list[Town], np.ndarray, np.ndarray, np.ndarray]:
        """The basemap's towns (geo.tiles.labels) in label priority, their world coordinates
        (u, v) and min_zoom, read once per store."""
        districts = self.store.layer("districts").geometries()
        with self._lock:
            if self._towns is None:
                towns = read_towns(districts)
                u, v = world_xy([t.lon for t in towns], [t.lat for t in towns])
                self._towns = (towns, u, v, np.array([t.min_zoom for t in towns], dtype=int))
            return self._towns

    def warm(self) -> "Tiler":
        """Build now every index a tile reads, so that no request pays for one: the attack
        index with its clusters at every zoom (and the withheld attacks' clusters above
        CLUSTER_MAXZOOM), the polygon and line layers, the district labels, the towns and
        the basemap's label layout at every zoom. About a second per million attacks; a
        server runs it before it takes requests (app.extensions, LiveStore's warm hooks),
        in gunicorn's master under --preload, so that every worker forked shares the result.
        """
        index = self.attack_index()
        if index.all.points.withheld.any():
            for z in range(CLUSTER_MAXZOOM + 1, MAX_ZOOM + 1):
                index.all.withheld_clusters(z)
        for name in SHAPE_LAYERS:
            self._shape_layer(name)
        self._district_labels()
        self.towns()
        for z in range(MIN_ZOOM, MAX_ZOOM + 1):
            self.label_layout(z)
        return self

    def cache_version(self) -> str:
        """What this store's tiles depend on besides its layers (see geo.tilecache.store_version):
        the tile code, and the towns, which come from data/districts.toml and GeoNames."""
        # A disk cache of tiles made under other licences must not be served under these.
        digest = hashlib.sha256(repr((self.towns()[0], self.policy.key)).encode()).hexdigest()[:12]
        return f"{TILES_VERSION}-{digest}"

    def label_layout(self, z: int) -> list[Label]:
        """The basemap's PNG labels at zoom z, placed over the whole map once (see
        geo.tiles.labels): district headquarters first, then district names (largest district
        first), then the other towns by population."""
        with self._lock:
            if z in self._layouts:
                return self._layouts[z]
        towns, u, v, zooms = self.towns()
        lu, lv, props, areas = self._district_labels()

        def town(i: int) -> Candidate:
            radius = HQ_DOT if towns[i].district_headquarters else TOWN_DOT
            return Candidate(float(u[i]), float(v[i]), towns[i].name, radius)

        shown = np.flatnonzero(zooms <= z)
        seats = [town(i) for i in shown.tolist() if towns[i].district_headquarters]
        others = [town(i) for i in shown.tolist() if not towns[i].district_headquarters]
        names = []
        if z >= LABEL_MINZOOM:
            big = areas * (2**z * TILE_SIZE) ** 2 >= LABEL_MIN_AREA_PX
            names = [
                Candidate(float(lu[i]), float(lv[i]), props[i]["name"])
                for i in np.argsort(-areas, kind="stable")
                if big[i]
            ]
        layout = place_labels(seats + names + others, z, text_box)
        with self._lock:
            return self._layouts.setdefault(z, layout)

    # features per MVT layer, in tile units

    def features(
        self,
        name: str,
        tile: Tile,
        buffer: float = MVT_BUFFER,
        filters: Mapping[str, Any] | None = None,
    ) -> list[tuple[Any, dict[str, Any]]]:
        """(geometry in tile units 0..1, properties) of MVT layer `name` in a tile."""
        if name == "attacks":
            return self._attack_features(tile, buffer, filters)
        if name == "district_labels":
            return [
                (shapely.Point(lx, ly), props) for lx, ly, props, _ in self._labels_in(tile, buffer)
            ]
        if name == "places":
            return self._places_in(tile, buffer)
        return self._shape_layer(name).in_tile(*tile, buffer)

    def _places_in(self, tile: Tile, buffer: float) -> list[tuple[Any, dict[str, Any]]]:
        """The towns named at this zoom (their min_zoom reached) in the tile or its buffer."""
        towns, u, v, zooms = self.towns()
        z, x, y = tile
        n = 2**z
        px, py = u * n - x, v * n - y
        inside = (px >= -buffer) & (px <= 1 + buffer) & (py >= -buffer) & (py <= 1 + buffer)
        return [
            (shapely.Point(px[i], py[i]), towns[i].properties())
            for i in np.flatnonzero(inside & (zooms <= z))
        ]

    def _attack_points(
        self, tile: Tile, buffer: float, filters: Mapping[str, Any] | None
    ) -> tuple[Points, np.ndarray]:
        """The attack points or clusters a tile shows, and their indices in it.

        Above CLUSTER_MAXZOOM a tile shows each attack as a point with its attributes, except the
        attacks whose dataset's terms allow only aggregates (geo.licences): those stay clusters
        at every zoom, counted and summed with the others but never one attack's record.
        """
        selection = self.attack_index().selection(filters)
        z, x, y = tile
        if z > CLUSTER_MAXZOOM:
            points = selection.points
            idx = points.in_tile(z, x, y, buffer)
            hidden = points.withheld[idx]
            if hidden.any() and len(idx) - hidden.sum() <= MAX_POINTS:
                clusters = selection.withheld_clusters(z)
                shown = Points.join(
                    [points.take(idx[~hidden]), clusters.take(clusters.in_tile(z, x, y, buffer))]
                )
                return shown, np.arange(len(shown))
            if len(idx) <= MAX_POINTS:
                return points, idx
        clusters = selection.clusters(z)
        return clusters, clusters.in_tile(z, x, y, buffer)

    def _attack_features(
        self, tile: Tile, buffer: float, filters: Mapping[str, Any] | None
    ) -> list[tuple[Any, dict[str, Any]]]:
        points, idx = self._attack_points(tile, buffer, filters)
        z, x, y = tile
        n = 2**z
        local = np.column_stack([points.u[idx] * n - x, points.v[idx] * n - y])
        geometries = shapely.points(local) if len(idx) else []
        layer = self.store.layer("attacks")
        prefetch = getattr(layer, "prefetch", None)  # a database's: one query, not one a point
        if prefetch is not None:
            prefetch(points.position[idx])
        features = []
        for geometry, i in zip(geometries, idx.tolist(), strict=True):
            position = int(points.position[i])
            props: dict[str, Any]
            if position < 0:
                props = {"cluster": True}
            else:
                props = pick(layer.feature_at(position)["properties"], POINT_FIELDS)
                props["cluster"] = False
            props["count"] = int(points.count[i])
            props["killed"] = int(points.killed[i])
            features.append((geometry, props))
        return features

    def _labels_in(
        self, tile: Tile, buffer: float
    ) -> list[tuple[float, float, dict[str, Any], float]]:
        lu, lv, props, areas = self._district_labels()
        z, x, y = tile
        n = 2**z
        px, py = lu * n - x, lv * n - y
        inside = (px >= -buffer) & (px <= 1 + buffer) & (py >= -buffer) & (py <= 1 + buffer)
        # area in tile units squared (a whole tile is 1)
        return [
            (float(px[i]), float(py[i]), props[i], float(areas[i] * n * n))
            for i in np.flatnonzero(inside)
        ]

    # tiles

    def vector_tile(
        self, layer: str, tile: Tile, filters: Mapping[str, Any] | None = None
    ) -> bytes:
        """The MVT of a tile layer (TILE_LAYERS); b"" when the tile holds nothing."""
        names = [n for n in mvt_layers(layer) if tile.z >= layer_minzoom(layer, n)]
        return encode_vector_tile(
            [(name, self.features(name, tile, filters=filters)) for name in names]
        )

    def export_tile(self, tile: Tile) -> bytes:
        """One MVT holding every EXPORT_LAYERS layer (for a PMTiles archive)."""
        names = [n for n in EXPORT_LAYERS if tile.z >= layer_minzoom(None, n)]
        return encode_vector_tile([(name, self.features(name, tile)) for name in names])

    def raster_tile(
        self,
        layer: str,
        tile: Tile,
        scale: int = 1,
        filters: Mapping[str, Any] | None = None,
    ) -> bytes:
        """The PNG of a tile layer, 256 px (or 512 with scale=2); transparent where empty."""
        return render_png(self, layer, tile, scale, filters)

    def tile(
        self, layer: str, tile: Tile, fmt: str, filters: Mapping[str, Any] | None = None
    ) -> bytes:
        """A tile in one of FORMATS ("mvt", "png", "@2x.png")."""
        mvt_layers(layer)
        if fmt not in FORMATS:
            raise InvalidTile(f"tile format {fmt!r} is not one of: {', '.join(FORMATS)}")
        if layer != "attacks":
            filters = None  # only the attacks layer takes filters
        scale = FORMATS[fmt][1]
        if scale is None:
            return self.vector_tile(layer, tile, filters)
        return self.raster_tile(layer, tile, scale, filters)

    def is_empty(self, data: bytes, fmt: str) -> bool:
        scale = FORMATS[fmt][1]
        return data == (b"" if scale is None else empty_png(scale))


def render_png(
    tiler: Tiler,
    layer: str,
    tile: Tile,
    scale: int = 1,
    filters: Mapping[str, Any] | None = None,
) -> bytes:
    """Draw a tile layer as a PNG of 256 * scale pixels (transparent where there is nothing)."""
    canvas = Canvas(scale)
    # Clip a few pixels outside the tile so that clip edges and line caps stay out of view.
    edge = 4 / TILE_SIZE
    if layer == "attacks":
        # Enough buffer for the largest circle whose centre lies in a neighbouring tile.
        points, idx = tiler._attack_points(tile, 11 / TILE_SIZE, filters)
        z, x, y = tile
        n = 2**z
        xy = np.column_stack([points.u[idx] * n - x, points.v[idx] * n - y])
        canvas.circles(xy, circle_radius(points.count[idx]), ATTACK, ATTACK_EDGE)
    elif layer in ("districts", "tehsils"):
        # Each layer's ramp runs to its own busiest area: tehsils count fewer attacks (only
        # those placed to the tehsil), so a shared scale would leave them all pale.
        features = tiler.features(layer, tile, edge)
        most = max((p.get("attacks", 0) for p in tiler._shape_layer(layer).properties), default=0)
        alpha, outline, width = AREA_STYLES[layer]
        canvas.polygons(
            [(g, choropleth_colour(p.get("attacks", 0), most, alpha)) for g, p in features],
            outline=outline,
            width=width,
        )
    elif layer == "durand_line":
        canvas.lines([g for g, _ in tiler.features("durand_line", tile, edge)], BORDER, 2.5)
    elif layer == "basemap":
        canvas.polygons([(g, LAND) for g, _ in tiler.features("countries", tile, edge)])
        if tile.z >= BASEMAP_TEHSIL_MINZOOM:
            canvas.polygons(
                [(g, None) for g, _ in tiler.features("tehsils", tile, edge)],
                outline=TEHSIL_EDGE,
                width=0.5,
            )
        canvas.polygons(
            [(g, None) for g, _ in tiler.features("districts", tile, edge)],
            outline=DISTRICT_EDGE,
        )
        canvas.polygons(
            [(g, None) for g, _ in tiler.features("countries", tile, edge)],
            outline=COUNTRY_EDGE,
            width=1.5,
        )
        _draw_labels(canvas, tiler.label_layout(tile.z), tile)
    else:
        mvt_layers(layer)
    return canvas.png()


def _draw_labels(canvas: Canvas, labels: list[Label], tile: Tile) -> None:
    """The placed labels whose box touches the tile: a label whose point lies in a neighbour
    tile is drawn too, so none is cut in half."""
    z, x, y = tile
    n = 2**z
    x0, y0 = x * TILE_SIZE, y * TILE_SIZE
    here = [
        label
        for label in labels
        if label.box[0] < x0 + TILE_SIZE
        and label.box[2] > x0
        and label.box[1] < y0 + TILE_SIZE
        and label.box[3] > y0
    ]

    def text(label: Label) -> tuple[float, float, str, str]:
        u, v = label.u * n - x + label.dx / TILE_SIZE, label.v * n - y + label.dy / TILE_SIZE
        return u, v, label.text, label.anchor

    towns = [label for label in here if label.radius]
    canvas.labels([text(label) for label in here if not label.radius])  # district names
    canvas.circles(
        np.array([(t.u * n - x, t.v * n - y) for t in towns]).reshape(-1, 2),
        np.array([t.radius for t in towns]),
        TOWN,
        HALO,
    )
    canvas.labels([text(label) for label in towns], TOWN_LABEL)
