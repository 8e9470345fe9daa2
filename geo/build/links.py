"""Linking records that report the same event in different datasets (an attack in ACLED, GTD,
UCDP and kpmap's authored records) into one attack that keeps every member.

The rule (link_records): two records are linked when
- they come from different origins, each one of authored, acled, gtd, ucdp (two records of one
  dataset are two events, whatever their likeness: the provider already told them apart;
  synthetic records never link);
- their dates overlap or are at most a day apart (a month-precision record covers every day of
  its month), and neither spans more than a month (a record known only to a quarter or a year
  cannot tell which of that period's events it is);
- their points are at most 2 km apart (geodesic): a record known only to its district links only
  with records at that same district point;
- their groups are compatible: each record's groups are its `actor` and its parties' `group`
  (canonical keys of data/actors.toml; "unknown" and empty are no group); two records that both
  name groups must share one, a record that names none is compatible with any (most of KP's
  attacks go unattributed in one source and attributed in another).

Groups are formed greedily from the closest candidate pairs (fewest days apart, then nearest,
then by id) and are complete: a record joins a group only if it matches every member and the
group holds no record of its origin, so groups never chain (A near B near C, A far from C) and
hold at most one record per origin. Records are sorted by id first, so the result does not depend
on the order they come in.

Each group becomes one attack (see combine): the map and the counts show it once, its `linked`
property lists every member with its own dates, figures and sources, and every member's id
answers for it (geo.store.files).
"""

import math
from collections import defaultdict
from collections.abc import Callable
from datetime import date
from operator import itemgetter
from typing import Any

import numpy as np

from geo.build.datasets import dataset_of, release_of
from geo.crs import GEOD
from geo.dates import period

LINK_KM = 2.0
LINK_DAYS = 1
# Longest date span a record may have and still be linked (a whole month, "2024-02", is 29 days).
MAX_SPAN_DAYS = 31
LINK_RULE = (
    f"records of different origins (authored, acled, gtd, ucdp) whose dates are at most "
    f"{LINK_DAYS} day apart (each spanning at most {MAX_SPAN_DAYS} days), whose points are at "
    f"most {LINK_KM:g} km apart and whose named groups are shared or absent on one side"
)
# Origins that link, in the order a group's own properties are taken from its members: authored
# records cite their articles; ACLED and GTD code the kind of attack and its perpetrator; UCDP
# codes the parties and deaths but not who attacked.
ORIGIN_RANK = {"authored": 0, "acled": 1, "gtd": 2, "ucdp": 3}
NO_GROUP = frozenset({"", "unknown"})
# Grid cell for the candidate search, in degrees (about 2 km). A record looks only in the cells
# that its 2 km neighbourhood's bounding box touches: at KP's latitudes four to nine of them,
# little more than the neighbourhood itself, so few records are compared in vain.
CELL_DEG = 0.02
# Degrees of latitude per km, rounded up (a degree of latitude is at least 110.57 km), and the
# same for longitude at the equator; longitude is divided by cos(latitude) on top.
DEG_PER_KM = 1 / 110.0
PLACE_KEYS = (
    "location",
    "district",
    "district_reported",
    "tehsil",
    "border_sliver_km",
    "geo_precision",
    "lon",
    "lat",
)
# Properties taken from the first member (in ORIGIN_RANK order) that states them, with the value
# that means "not stated".
STATED_KEYS: tuple[tuple[str, Any], ...] = (
    ("actor", None),
    ("claimed", None),
    ("event_type", "unknown"),
    ("target", "unknown"),
    ("description", ""),
    ("parties", []),
    ("deaths", None),
)
MEMBER_KEYS = (
    "id",
    "origin",
    "dataset",
    "release",
    "date",
    "date_precision",
    "date_end",
    "killed_low",
    "killed_best",
    "killed_high",
    "injured_low",
    "injured_high",
    "sources",
)


class Candidate:
    """What the rule compares of one linkable record, computed once (see candidate)."""

    __slots__ = ("position", "origin", "lon", "lat", "start", "end", "groups", "record")

    def __init__(
        self,
        position: int,
        origin: str,
        lon: float,
        lat: float,
        start: int,
        end: int,
        groups: frozenset[str],
        record: dict[str, Any] | None = None,
    ):
        self.position = position
        self.origin = origin
        self.lon = lon
        self.lat = lat
        self.start = start
        self.end = end
        self.groups = groups
        self.record = record  # the record itself, where the caller holds it as a dict


def _Candidate(position: int, record: dict[str, Any], start: int, end: int) -> Candidate:  # noqa: N802
    """A Candidate of `record` with its span given (what the tests compare the index with)."""
    return Candidate(
        position,
        record["origin"],
        record["lon"],
        record["lat"],
        start,
        end,
        groups_of(record),
        record,
    )


def candidate(position: int, record: dict[str, Any]) -> Candidate | None:
    """The record at `position` (of the records sorted by id) as the rule compares it, or None
    when it cannot link: its origin never links, or its date spans more than MAX_SPAN_DAYS."""
    if record["origin"] not in ORIGIN_RANK:
        return None
    start, end = span(record)
    if end - start >= MAX_SPAN_DAYS:
        return None
    return _Candidate(position, record, start, end)


def link_records(
    records: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Records with each linked group combined into one, sorted by id, and the links made.

    Records are canonical property dicts with "lon" and "lat". A record in no group comes back as
    it is (the same dict); a group comes back as a new dict (see combine) whose id is its first
    member's. Each link made is {"id", "members", "reasons"}: the attack's id, its members' ids
    and, for each member after the first, why it was linked. The input is unchanged.

    Candidates are found through an index of (day, grid cell), so a record is compared only with
    the few records near it in time and space: the pass stays near-linear in the number of
    records (and costs nothing when only one origin can link, as in a store of synthetic records).
    """
    records = sorted(records, key=itemgetter("id"))
    candidates = [c for p, r in enumerate(records) if (c := candidate(p, r)) is not None]
    entries, links = assemble(len(records), link_groups(candidates), lambda p: records[p])
    linked = [records[e] if isinstance(e, int) else e for e in entries]
    return sorted(linked, key=itemgetter("id")), links


def link_groups(candidates: list[Candidate]) -> list[list[int]]:
    """The groups the rule links (each its members' positions, sorted) among `candidates`, which
    are in the order of their records' ids (see candidate)."""
    if len({c.origin for c in candidates}) < 2:
        return []
    return _group(candidates, _pairs(candidates))


def assemble(
    count: int, groups: list[list[int]], record_at: Callable[[int], dict[str, Any]]
) -> tuple[list[int | dict[str, Any]], list[dict[str, Any]]]:
    """The attacks `count` records (sorted by id) make once `groups` are combined, in record
    order (not yet sorted by id again): a record in no group as its position, a group as its
    combined record (see combine) at its first member's place; and the links made.
    `record_at(position)` gives a member's record."""
    first_of = {min(g): g for g in groups}
    in_group = {position for g in groups for position in g}
    entries: list[int | dict[str, Any]] = []
    links = []
    for position in range(count):
        if position in first_of:
            combined = combine([record_at(p) for p in first_of[position]])
            entries.append(combined)
            links.append(
                {
                    "id": combined["id"],
                    "members": [m["id"] for m in combined["linked"]],
                    "reasons": [m["reason"] for m in combined["linked"][1:]],
                }
            )
        elif position not in in_group:
            entries.append(position)
    return entries, links


def _pairs(candidates: list[Candidate]) -> list[tuple[int, float, int, int]]:
    """Every pair of candidates the rule links, as (days apart, metres, i, j) with i < j
    positions into `candidates`, closest first.

    Dates, origins and groups are compared pair by pair; the distances of the pairs that pass
    are measured in one call (pyproj takes arrays), a tenth of the time of one call per pair.
    """
    index: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    for i, c in enumerate(candidates):
        cell = _cell(c.lon, c.lat)
        for day in range(c.start, c.end + 1):
            index[(day, *cell)].append(i)
    first, second, days = [], [], []
    for i, a in enumerate(candidates):
        xs, ys = _cells_near(a.lon, a.lat)
        near = {
            j
            for day in range(a.start - LINK_DAYS, a.end + LINK_DAYS + 1)
            for cx in xs
            for cy in ys
            for j in index.get((day, cx, cy), ())
            if j > i
        }
        for j in near:
            b = candidates[j]
            if a.origin == b.origin:
                continue
            apart = max(0, max(a.start, b.start) - min(a.end, b.end))
            if apart > LINK_DAYS or (a.groups and b.groups and not a.groups & b.groups):
                continue
            first.append(i)
            second.append(j)
            days.append(apart)
    if not first:
        return []
    lon = np.array([c.lon for c in candidates], dtype=float)
    lat = np.array([c.lat for c in candidates], dtype=float)
    left, right = np.array(first), np.array(second)
    _, _, metres = GEOD.inv(lon[left], lat[left], lon[right], lat[right])
    near = metres <= LINK_KM * 1000
    return sorted(
        zip(
            np.array(days)[near].tolist(),
            metres[near].tolist(),
            left[near].tolist(),
            right[near].tolist(),
            strict=True,
        )
    )


def _group(
    candidates: list[Candidate], pairs: list[tuple[int, float, int, int]]
) -> list[list[int]]:
    """Groups of two or more (as sorted record positions), joined pair by pair, closest first.

    Two groups join only when they share no origin and every member of one is linked by the
    rule (is among `pairs`) to every member of the other.
    """
    linked = {(i, j) for *_, i, j in pairs}
    owner: dict[int, int] = {}  # candidate -> its group's key (the group's first candidate)
    members: dict[int, list[int]] = {}
    for *_, i, j in pairs:
        gi, gj = owner.get(i, i), owner.get(j, j)
        if gi == gj:
            continue
        a, b = members.get(gi, [i]), members.get(gj, [j])
        origins = {candidates[x].origin for x in a}
        if any(candidates[y].origin in origins for y in b):
            continue
        if any((min(x, y), max(x, y)) not in linked for x in a for y in b):
            continue
        key, other = min(gi, gj), max(gi, gj)
        members[key] = a + b
        members.pop(other, None)
        for x in members[key]:
            owner[x] = key
    return [sorted(candidates[x].position for x in group) for group in members.values()]


def groups_of(record: dict[str, Any]) -> frozenset[str]:
    """The groups a record names: its actor and its parties' canonical groups, without
    "unknown" (a state's forces and civilians are no group of data/actors.toml)."""
    named = {record.get("actor")}
    named.update(party.get("group") for party in record.get("parties") or ())
    return frozenset(g for g in named if g and g not in NO_GROUP)


def _cell(lon: float, lat: float) -> tuple[int, int]:
    return math.floor(lon / CELL_DEG), math.floor(lat / CELL_DEG)


def _cells_near(lon: float, lat: float) -> tuple[range, range]:
    """The cell columns and rows that every point within LINK_KM of (lon, lat) lies in."""
    dlat = LINK_KM * DEG_PER_KM
    # Longitude degrees shrink towards the poles: use the cosine at the neighbourhood's far edge.
    far = min(abs(lat) + dlat, 89.0)
    dlon = min(dlat / math.cos(math.radians(far)), 180.0)
    (x0, y0), (x1, y1) = _cell(lon - dlon, lat - dlat), _cell(lon + dlon, lat + dlat)
    return range(x0, x1 + 1), range(y0, y1 + 1)


def span(rec: dict[str, Any]) -> tuple[int, int]:
    """First and last day (ordinals) a record's date covers: "2024-02" covers all of February."""
    first, last = period(rec["date"])
    if rec.get("date_end"):
        last = period(rec["date_end"]).last
    return first.toordinal(), last.toordinal()


def combine(group: list[dict[str, Any]]) -> dict[str, Any]:
    """One attack for a group of linked records (which are left unchanged).

    Members are ordered by ORIGIN_RANK (authored, acled, gtd, ucdp); the attack is the first
    member's record with:
    - location, district, point and geo_precision from the most precise member (lowest
      geo_precision; the first in order on a tie);
    - dates covering every member's span (never narrowed): the members' common date, else a day,
      a month or a range from the earliest start to the latest end, so that a time filter finds
      the attack by any member's dates;
    - killed_low = the lowest and killed_high = the highest figure any member gives (a lone
      killed_best counts as both; a range no member stated stays null), killed_best the first
      member's that gives one; injured_low/high widened the same way;
    - actor, claimed, event_type, target, description, parties and deaths from the first member
      that states them; every member's sources and flags, in order, without repeats;
    - `linked`: every member ({id, origin, dataset, release, date, date_precision, date_end, its
      own killed and injured figures, sources, reason}), the first with reason null.
    """
    members = sorted(group, key=lambda r: (ORIGIN_RANK.get(r["origin"], 99), r["id"]))
    first = members[0]
    combined = dict(first)
    place = min(members, key=lambda r: r["geo_precision"])  # min keeps the first of equals
    for key in PLACE_KEYS:
        if key in place:
            combined[key] = place[key]
    combined.update(_cover_dates(members))
    combined.update(widen(members, "killed_low", "killed_best", "killed_high"))
    combined.update(widen(members, "injured_low", None, "injured_high"))
    for key, empty in STATED_KEYS:
        combined[key] = next(
            (r[key] for r in members if _stated(key, r.get(key), empty)), first.get(key)
        )
    combined["sources"] = _unique(s for r in members for s in r["sources"])
    combined["flags"] = _unique(f for r in members for f in r.get("flags") or ())
    combined["linked"] = [
        {
            **{key: m.get(key) for key in MEMBER_KEYS},
            "dataset": dataset_of(m),
            "release": release_of(m) or None,  # null: the record does not say
            "reason": None if m is first else link_reason(first, m),
        }
        for m in members
    ]
    return combined


def link_reason(first: dict[str, Any], member: dict[str, Any]) -> str:
    """Why `member` is linked to `first`, e.g. "0.4 km from ucdp-1, dates overlap, both name
    TTP"."""
    (a_start, a_end), (b_start, b_end) = span(first), span(member)
    apart = max(0, max(a_start, b_start) - min(a_end, b_end))
    _, _, metres = GEOD.inv(first["lon"], first["lat"], member["lon"], member["lat"])
    shared = groups_of(first) & groups_of(member)
    if shared:
        groups = "both name " + ", ".join(sorted(shared))
    else:
        silent = [r["id"] for r in (first, member) if not groups_of(r)]
        groups = " and ".join(silent) + (" name" if len(silent) > 1 else " names") + " no group"
    dates = "dates overlap" if apart == 0 else f"dates {apart} day apart"
    return f"{metres / 1000:.1f} km from {first['id']}, {dates}, {groups}"


def _cover_dates(members: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("date", "date_precision", "date_end")
    if len({tuple(r.get(k) for k in keys) for r in members}) == 1:
        return {k: members[0].get(k) for k in keys}
    spans = [span(r) for r in members]
    start = date.fromordinal(min(s for s, _ in spans))
    end = date.fromordinal(max(e for _, e in spans))
    if start == end:
        return {"date": start.isoformat(), "date_precision": "day", "date_end": None}
    following = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    if start.day == 1 and end.toordinal() == following.toordinal() - 1:
        return {"date": f"{start:%Y-%m}", "date_precision": "month", "date_end": None}
    return {"date": start.isoformat(), "date_precision": "range", "date_end": end.isoformat()}


def widen(group: list[dict[str, Any]], low: str, best: str | None, high: str) -> dict[str, Any]:
    """The low and high figures widened to cover every member's (a lone best counts as both),
    and the first best given.

    A range no member stated (two records each with only killed_best 5) stays null.
    """
    lows = [v for r in group if (v := _either(r[low], r.get(best or ""))) is not None]
    highs = [v for r in group if (v := _either(r[high], r.get(best or ""))) is not None]
    widened = {low: min(lows) if lows else None, high: max(highs) if highs else None}
    stated = any(r[low] is not None or r[high] is not None for r in group)
    if best:
        widened[best] = next((r[best] for r in group if r[best] is not None), None)
        if not stated and widened[low] == widened[high]:
            widened[low] = widened[high] = None
    return widened


def _either(value: int | None, fallback: int | None) -> int | None:
    return value if value is not None else fallback


def _stated(key: str, value: Any, empty: Any) -> bool:
    if value is None or value == empty:
        return False
    return key != "actor" or value not in NO_GROUP


def _unique(items: Any) -> list[Any]:
    """Items in order without repeats (dicts compared by content)."""
    seen, kept = set(), []
    for item in items:
        key = tuple(sorted(item.items())) if isinstance(item, dict) else item
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept
