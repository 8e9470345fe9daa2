"""Merging records that report the same attack (the same event in ACLED and GTD, or twice in one
file) into one record that keeps every source."""

import math
from collections import defaultdict
from datetime import date
from typing import Any

from pyproj import Geod

from geo.events import UNKNOWN_ACTOR

MERGE_KM = 2.0
MERGE_DAYS = 1
# Grid cell for the candidate search, in degrees. A record looks only in the cells that its
# 2 km neighbourhood's bounding box touches: at KP's latitudes one to four of them.
CELL_DEG = 0.05
# Degrees of latitude per km, rounded up (a degree of latitude is at least 110.57 km), and the
# same for longitude at the equator; longitude is divided by cos(latitude) on top.
DEG_PER_KM = 1 / 110.0
DATE_RANK = {"day": 0, "range": 1, "month": 2}
PLACE_KEYS = ("location", "district", "geo_precision", "lon", "lat")
DERIVED_PLACE_KEYS = ("distance_to_border_km", "former_fata")
_GEOD = Geod(ellps="WGS84")


def merge_duplicates(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records with the same actor, dates within a day and points within 2 km, merged into one.

    Records are canonical property dicts with "lon" and "lat" (as read_file returns them). Each
    record joins the first earlier group whose first record matches it (so groups do not chain);
    the merged record is that first record with:
    - location, district, geo_precision, lon, lat from the most precise member (lowest
      geo_precision; the earliest on a tie), date, date_precision, date_end from the one with the
      shortest date span (a day beats a range beats a month);
    - every member's sources, in order, without repeats;
    - killed_low = the lowest and killed_high = the highest figure any member gives (a lone
      killed_best counts as both), killed_best the first's; injured_low/high widened the same way;
    - claimed, event_type, target, description: the first's unless it is null, "unknown" or blank.
    Dates are compared as spans: a month-precision record is "within a day" of any day in its month.
    Records whose actor is "unknown" never merge: most attacks in KP go unattributed, and two
    of them a day and a kilometre apart are as likely two attacks as one. The result keeps the
    input order (of each group's first record); the input is unchanged.

    Each record is compared only with groups indexed under its actor, the days of its span ± 1 and
    the grid cells its 2 km neighbourhood touches, so 100,000 records take about a second.
    """
    groups: list[list[dict[str, Any]]] = []
    # (actor, day, cell x, cell y) -> the groups whose first record is there on that day
    index: dict[tuple[str, int, int, int], list[int]] = defaultdict(list)
    for rec in records:
        actor = rec["actor"]
        if actor == UNKNOWN_ACTOR:
            groups.append([rec])
            continue
        start, end = _span(rec)
        xs, ys = _cells_near(rec)
        candidates = {
            g
            for day in range(start - MERGE_DAYS, end + MERGE_DAYS + 1)
            for cx in xs
            for cy in ys
            for g in index.get((actor, day, cx, cy), ())
        }
        match = next((g for g in sorted(candidates) if _near(groups[g][0], rec)), None)
        if match is not None:
            groups[match].append(rec)
            continue
        groups.append([rec])
        cell = _cell(rec["lon"], rec["lat"])
        for day in range(start, end + 1):
            index[(actor, day, *cell)].append(len(groups) - 1)
    return [_combine(group) for group in groups]


def _near(a: dict[str, Any], b: dict[str, Any]) -> bool:
    _, _, metres = _GEOD.inv(a["lon"], a["lat"], b["lon"], b["lat"])
    return metres <= MERGE_KM * 1000


def _cell(lon: float, lat: float) -> tuple[int, int]:
    return math.floor(lon / CELL_DEG), math.floor(lat / CELL_DEG)


def _cells_near(rec: dict[str, Any]) -> tuple[range, range]:
    """The cell columns and rows that every point within MERGE_KM of the record lies in."""
    lon, lat = rec["lon"], rec["lat"]
    dlat = MERGE_KM * DEG_PER_KM
    # Longitude degrees shrink towards the poles: use the cosine at the neighbourhood's far edge.
    far = min(abs(lat) + dlat, 89.0)
    dlon = min(dlat / math.cos(math.radians(far)), 180.0)
    (x0, y0), (x1, y1) = _cell(lon - dlon, lat - dlat), _cell(lon + dlon, lat + dlat)
    return range(x0, x1 + 1), range(y0, y1 + 1)


def _span(rec: dict[str, Any]) -> tuple[int, int]:
    """First and last day (ordinals) a record's date covers: "2024-02" covers all of February."""
    text = rec["date"]
    if len(text) == 7:  # YYYY-MM
        first = date.fromisoformat(f"{text}-01")
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        return first.toordinal(), following.toordinal() - 1
    start = date.fromisoformat(text).toordinal()
    end = date.fromisoformat(rec["date_end"]).toordinal() if rec.get("date_end") else start
    return start, end


def _combine(group: list[dict[str, Any]]) -> dict[str, Any]:
    first = group[0]
    if len(group) == 1:
        return first
    merged = dict(first)
    place = min(group, key=lambda r: r["geo_precision"])  # min keeps the earliest of equals
    for key in PLACE_KEYS + DERIVED_PLACE_KEYS:
        if key in place:
            merged[key] = place[key]
    when = min(group, key=lambda r: (_span(r)[1] - _span(r)[0], DATE_RANK[r["date_precision"]]))
    for key in ("date", "date_precision", "date_end"):
        merged[key] = when[key]
    merged["sources"] = []
    seen = set()
    for rec in group:
        for source in rec["sources"]:
            key = tuple(sorted(source.items()))
            if key not in seen:
                seen.add(key)
                merged["sources"].append(source)
    merged.update(_widen(group, "killed_low", "killed_best", "killed_high"))
    merged.update(_widen(group, "injured_low", None, "injured_high"))
    for key, empty in (("claimed", None), ("event_type", "unknown"), ("target", "unknown")):
        merged[key] = next((r[key] for r in group if r[key] != empty), empty)
    merged["description"] = next((r["description"] for r in group if r["description"]), "")
    return merged


def _widen(group: list[dict[str, Any]], low: str, best: str | None, high: str) -> dict[str, Any]:
    """The low and high figures widened to cover every member's (a lone best counts as both).

    A range no member stated (two records each with only killed_best 5) stays null.
    """
    bests = [r[best] for r in group if best and r[best] is not None]
    lows = [v for r in group if (v := _either(r[low], r.get(best))) is not None]
    highs = [v for r in group if (v := _either(r[high], r.get(best))) is not None]
    widened = {low: min(lows) if lows else None, high: max(highs) if highs else None}
    stated = any(r[low] is not None or r[high] is not None for r in group)
    if best:
        widened[best] = group[0][best] if group[0][best] is not None else next(iter(bests), None)
        if not stated and widened[low] == widened[high]:
            widened[low] = widened[high] = None
    return widened


def _either(value: int | None, fallback: int | None) -> int | None:
    return value if value is not None else fallback
