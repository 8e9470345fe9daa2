"""Mapbox Vector Tile (MVT 2.1) encoding of features already cut to a tile (in tile units 0..1)."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
from mapbox_vector_tile.encoder import VectorTile, on_invalid_geometry_make_valid
from mapbox_vector_tile.Mapbox.vector_tile_pb2 import tile as mvt_pb

EXTENT = 4096  # MVT units per tile side
POINT = mvt_pb.Point
MOVE_TO_ONE = 9  # command integer: MoveTo (1) with a count of 1


def encode_vector_tile(layers: Sequence[tuple[str, list[tuple[Any, dict[str, Any]]]]]) -> bytes:
    """An MVT 2.1 tile from (layer name, [(geometry in tile units 0..1, properties)]).

    Geometries are scaled to EXTENT with y down; layers without features are left out, so a
    tile with nothing in it is b"" (a valid, empty tile). Polygons and lines go through
    mapbox_vector_tile's encoder (winding order, validity); point layers, which can hold
    thousands of features, are written straight into its protobuf tile, several times faster.
    """
    tile = VectorTile(
        {
            "extents": EXTENT,
            "y_coord_down": True,
            "on_invalid_geometry": on_invalid_geometry_make_valid,
        }
    )
    for name, features in layers:
        if not features:
            continue
        geometries = np.array([g for g, _ in features], dtype=object)
        if (shapely.get_type_id(geometries) == 0).all():
            _add_points(tile.tile, name, shapely.get_coordinates(geometries), features)
            continue
        scaled = shapely.transform(geometries, lambda c: np.rint(c * EXTENT))
        tile.add_layer(
            name,
            [{"geometry": g, "properties": p} for g, (_, p) in zip(scaled, features, strict=True)],
        )
    if not tile.tile.layers:
        return b""
    return tile.tile.SerializeToString()


def _add_points(
    tile: Any, name: str, xy: np.ndarray, features: list[tuple[Any, dict[str, Any]]]
) -> None:
    """One MVT layer of Point features (spec 4.3: MoveTo(1) then zigzag x, y; shared keys and
    values tables)."""
    layer = tile.layers.add()
    layer.name, layer.version, layer.extent = name, 2, EXTENT
    keys: dict[str, int] = {}
    values: dict[tuple[type, Any], int] = {}
    for (x, y), (_, props) in zip(np.rint(xy * EXTENT).astype(int).tolist(), features, strict=True):
        feature = layer.features.add()
        feature.type = POINT
        feature.geometry.extend((MOVE_TO_ONE, (x << 1) ^ (x >> 31), (y << 1) ^ (y >> 31)))
        tags: list[int] = []
        for key, value in props.items():
            k = keys.get(key)
            if k is None:
                k = keys[key] = len(keys)
                layer.keys.append(key)
            kind = type(value)
            v = values.get((kind, value))
            if v is None:
                v = values[(kind, value)] = len(values)
                slot = layer.values.add()
                if kind is bool:
                    slot.bool_value = value
                elif kind is int:
                    slot.int_value = value
                elif kind is float:
                    slot.double_value = value
                else:
                    slot.string_value = value
            tags += (k, v)
        feature.tags.extend(tags)
