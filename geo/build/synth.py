"""Synthetic attacks for benchmarks (`kpmap synth N --store DIR`).

Every record says it is synthetic (origin "synthetic", its id, description and source), so it can
never pass for a real event; the CLI refuses to write them into the default store.
"""

from datetime import date, timedelta
from typing import Any

import numpy as np
import shapely

from geo.vocab import EVENT_TYPES, MILITANT_ATTACK, TARGETS, event_fields

SYNTHETIC_SOURCE = {
    "publication": "kpmap synth",
    "title": "Synthetic record generated for benchmarks; not a real event",
    "date": "",
    "url": "",
}
ACTORS = ("ISKP", "TTP", "BLA", "unknown")
FIRST_DAY = date(2015, 1, 1)
DAYS = (date(2025, 12, 31) - FIRST_DAY).days


def synthetic_attacks(
    n: int, districts: list[dict[str, Any]], seed: int = 0
) -> list[dict[str, Any]]:
    """`n` canonical attack records (with lon/lat) at random points inside the given districts.

    Deterministic for a given seed. Points are drawn uniformly over KP by rejection sampling in
    the districts' bounding box; each gets the district it falls in.
    """
    rng = np.random.default_rng(seed)
    geoms = [shapely.geometry.shape(f["geometry"]) for f in districts]
    ids = [f["id"] for f in districts]
    kp = shapely.union_all(geoms)
    shapely.prepare(kp)
    minx, miny, maxx, maxy = kp.bounds
    lon = np.empty(0)
    lat = np.empty(0)
    while len(lon) < n:
        x = rng.uniform(minx, maxx, 2 * n)
        y = rng.uniform(miny, maxy, 2 * n)
        inside = shapely.contains_xy(kp, x, y)
        lon, lat = np.concatenate([lon, x[inside]])[:n], np.concatenate([lat, y[inside]])[:n]
    tree = shapely.STRtree(geoms)
    point_index, district_index = tree.query(shapely.points(lon, lat), predicate="within")
    district_of = np.full(n, -1)
    district_of[point_index] = district_index
    days = rng.integers(0, DAYS, n)
    actors = rng.integers(0, len(ACTORS), n)
    types = rng.integers(0, len(EVENT_TYPES), n)
    targets = rng.integers(0, len(TARGETS), n)
    killed = rng.poisson(1.5, n)
    injured = rng.poisson(3.0, n)
    records = []
    for i in range(n):
        if district_of[i] < 0:
            continue  # exactly on a shared edge: drop rather than guess
        records.append(
            {
                "id": f"synthetic-{i:07d}",
                "date": (FIRST_DAY + timedelta(days=int(days[i]))).isoformat(),
                "date_precision": "day",
                "date_end": None,
                "location": "synthetic point",
                "district": ids[district_of[i]],
                "geo_precision": 1,
                "actor": ACTORS[actors[i]],
                "claimed": None,
                "event_type": EVENT_TYPES[types[i]],
                "target": TARGETS[targets[i]],
                "killed_low": None,
                "killed_best": int(killed[i]),
                "killed_high": None,
                "injured_low": int(injured[i]),
                "injured_high": int(injured[i]),
                "description": "Synthetic record for benchmarks; not a real event.",
                "sources": [SYNTHETIC_SOURCE],
                "origin": "synthetic",
                **event_fields(MILITANT_ATTACK),
                "lon": float(lon[i]),
                "lat": float(lat[i]),
            }
        )
    return records
