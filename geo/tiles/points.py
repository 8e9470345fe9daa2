"""The attack layer's tiles: a Morton-sorted point index of the attacks, grid-clustered per zoom."""

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geo.store import Store
from geo.tiles.grid import ORDER, world_xy

# Attacks are grid-clustered at zooms up to CLUSTER_MAXZOOM: 2**GRID_BITS cells a tile side, so
# a tile holds at most 1,024 clusters. Above it each attack is a point, unless a tile would hold
# more than MAX_POINTS of them, when that tile is clustered too (its features say cluster=true).
CLUSTER_MAXZOOM = 11
GRID_BITS = 5
MAX_POINTS = 4096


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Put a zero bit between each bit of v (up to 32 bits): the half of a Morton code."""
    v = v.astype(np.uint64) & np.uint64(0xFFFFFFFF)
    for shift, mask in (
        (16, 0x0000FFFF0000FFFF),
        (8, 0x00FF00FF00FF00FF),
        (4, 0x0F0F0F0F0F0F0F0F),
        (2, 0x3333333333333333),
        (1, 0x5555555555555555),
    ):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def _morton(ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    return _spread_bits(ix) | (_spread_bits(iy) << np.uint64(1))


@dataclass
class Points:
    """Points (or cluster centroids) sorted by Morton code, with what a tile shows of them."""

    codes: np.ndarray  # uint64 at ORDER bits a side
    u: np.ndarray
    v: np.ndarray
    count: np.ndarray  # attacks each stands for (1 for a point)
    killed: np.ndarray  # killed_best summed; an attack that reports none counts 0
    position: np.ndarray  # the attack's position in the store layer; -1 for a cluster
    # True for an attack whose dataset's terms allow it only in aggregates (geo.licences);
    # always False for a cluster, which is an aggregate.
    withheld: np.ndarray

    def __len__(self) -> int:
        return len(self.codes)

    def take(self, keep: np.ndarray) -> "Points":
        return Points(
            self.codes[keep],
            self.u[keep],
            self.v[keep],
            self.count[keep],
            self.killed[keep],
            self.position[keep],
            self.withheld[keep],
        )

    @staticmethod
    def join(parts: Sequence["Points"]) -> "Points":
        """The points of several parts, one after the other (not re-sorted)."""
        return Points(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in Points.__dataclass_fields__)
        )

    def in_tile(self, z: int, x: int, y: int, buffer: float) -> np.ndarray:
        """Indices of the points in tile z/x/y or within `buffer` (a fraction) of it."""
        n = 2**z
        shift = np.uint64(2 * (ORDER - z))
        steps = (-1, 0, 1) if buffer > 0 else (0,)
        runs = []
        for dy in steps:
            for dx in steps:
                tx, ty = x + dx, y + dy
                if 0 <= tx < n and 0 <= ty < n:
                    prefix = _morton(np.array([tx]), np.array([ty]))[0]
                    lo, hi = np.searchsorted(
                        self.codes, [prefix << shift, (prefix + np.uint64(1)) << shift]
                    )
                    if hi > lo:
                        runs.append(np.arange(lo, hi))
        if not runs:
            return np.empty(0, dtype=np.int64)
        idx = np.concatenate(runs) if len(runs) > 1 else runs[0]
        if buffer > 0:
            lu = self.u[idx] * n - x
            lv = self.v[idx] * n - y
            inside = (lu >= -buffer) & (lu <= 1 + buffer) & (lv >= -buffer) & (lv <= 1 + buffer)
            idx = idx[inside]
        return idx

    def clustered(self, z: int) -> "Points":
        """The points grouped into cells of 2**GRID_BITS a tile side at zoom z: each cell's
        count, summed deaths, and the centroid of its attacks."""
        shift = np.uint64(2 * (ORDER - z - GRID_BITS))
        keys = self.codes >> shift
        if not len(keys):
            return self
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        count = np.add.reduceat(self.count, starts)
        return Points(
            codes=keys[starts] << shift,
            u=np.add.reduceat(self.u * self.count, starts) / count,
            v=np.add.reduceat(self.v * self.count, starts) / count,
            count=count,
            killed=np.add.reduceat(self.killed, starts),
            position=np.full(len(starts), -1, dtype=np.int64),
            withheld=np.zeros(len(starts), dtype=bool),
        )


class Selection:
    """The attacks that one set of filters selects, and their clusters per zoom (made lazily)."""

    def __init__(self, points: Points):
        self.points = points
        self._clusters: dict[int, Points] = {}
        self._withheld: dict[int, Points] = {}
        self._lock = threading.Lock()

    def withheld_clusters(self, z: int) -> Points:
        """Clusters of only the withheld attacks at zoom z: what a point tile shows of them."""
        with self._lock:
            if z not in self._withheld:
                self._withheld[z] = self.points.take(self.points.withheld).clustered(z)
            return self._withheld[z]

    def clusters(self, z: int) -> Points:
        with self._lock:
            if z not in self._clusters:
                if z <= CLUSTER_MAXZOOM:
                    # Every clustered zoom at once, each from the next finer one: one pass over
                    # the points, then over ever fewer cells (~50 ms for a million attacks).
                    finer = self.points
                    for level in range(CLUSTER_MAXZOOM, -1, -1):
                        finer = self._clusters[level] = finer.clustered(level)
                else:  # a crowded tile above CLUSTER_MAXZOOM (see MAX_POINTS)
                    self._clusters[z] = self.points.clustered(z)
            return self._clusters[z]


def filter_key(filters: Mapping[str, Any] | None) -> str:
    """A canonical text of a filter dict (store.query kwargs), for cache keys.

    >>> filter_key({"actor": ["TTP", "ISKP"], "start": "2024"})
    'actor=ISKP,TTP&start=2024'
    """
    if not filters:
        return ""
    parts = []
    for key in sorted(filters):
        value = filters[key]
        if isinstance(value, list | tuple | set | frozenset):
            text = ",".join(sorted(str(v) for v in value))
        else:
            text = str(value)
        parts.append(f"{key}={text}")
    return "&".join(parts)


class AttackIndex:
    """Every attack in Morton order with its deaths; selections by filters are cached (LRU)."""

    SELECTIONS = 8

    def __init__(self, store: Store, killed: np.ndarray, withheld: np.ndarray | None = None):
        layer = store.layer("attacks")
        if withheld is None:
            withheld = np.zeros(len(layer), dtype=bool)
        xy = layer.points()
        u, v = world_xy(xy[:, 0], xy[:, 1])
        cells = 2**ORDER
        codes = _morton(
            np.clip((u * cells).astype(np.int64), 0, cells - 1),
            np.clip((v * cells).astype(np.int64), 0, cells - 1),
        )
        order = np.argsort(codes, kind="stable")
        self.store = store
        self.all = Selection(
            Points(
                codes=codes[order],
                u=u[order],
                v=v[order],
                count=np.ones(len(order), dtype=np.int64),
                killed=killed[order].astype(np.int64),
                position=order.astype(np.int64),
                withheld=withheld[order],
            )
        )
        self.all.clusters(0)  # pre-aggregate every zoom now rather than on a first tile
        self._selections: OrderedDict[str, Selection] = OrderedDict()
        self._lock = threading.Lock()

    def selection(self, filters: Mapping[str, Any] | None) -> Selection:
        key = filter_key(filters)
        if not key or not filters:
            return self.all
        with self._lock:
            if key in self._selections:
                self._selections.move_to_end(key)
                return self._selections[key]
        positions = self.store.select("attacks", **filters)
        wanted = np.zeros(len(self.all.points), dtype=bool)
        wanted[positions] = True
        selection = Selection(self.all.points.take(wanted[self.all.points.position]))
        with self._lock:
            self._selections[key] = selection
            while len(self._selections) > self.SELECTIONS:
                self._selections.popitem(last=False)
        return selection


def attack_deaths(store: Store) -> np.ndarray:
    """killed_best of every attack in the store's order (0 where not reported)."""
    killed = store.layer("attacks").number("killed_best")
    return np.nan_to_num(killed, nan=0.0).astype(np.int32)
