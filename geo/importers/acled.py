"""ACLED's events (acleddata.com), one row per event, as a user saves them: the export tool's CSV,
old or new (with or without iso, event_id_no_cnty, disorder_type, civilian_targeting, tags,
timestamp, population_best; event_date as "30 July 2023" or "2023-07-30"), or the API's JSON
saved to a file ({"status": 200, "success": true, "data": [...]} or the bare list).

Mapping to the canonical record:
- id "acled-<event_id_cnty>"; dataset "acled"; release the newest `timestamp` in the file (the
  day ACLED last changed any of its rows, ISO), else the newest event_date "(newest event)".
- date from event_date and time_precision: 1 -> day; 2 (the week is known) -> a range of the
  day ± 3 days; 3 (the month is known) -> month.
- location, lon/lat and geo_precision (ACLED's 1-3 mean what ours do) as given; district_reported
  = admin2 (ACLED's district), cross-checked against the point.
- category from event_type and sub_event_type, actor where ACLED names a perpetrator:
    Battles: "armed clash" between the state and a group, "violence between groups" between
      two groups, "security operation" for Government regains territory. ACLED's actor1 and
      actor2 do not say who attacked in a battle, so the actor is None.
    Explosions/Remote violence: "air/drone strike" for Air/drone strike; otherwise a group's
      bombing, IED or shelling is a "militant attack", Pakistan's forces' is a "security
      operation" and a foreign state's (cross-border shelling) an "armed clash". actor = actor1
      (ACLED codes the side that used the weapon as actor1).
    Violence against civilians: "violence against civilians", actor = actor1.
  Actors go through data/actors.toml (geo.importers.parties): an unidentified armed group is
  "unknown", state forces their state's key, a name the table lacks "other" (and is reported).
  Protests, Riots and Strategic developments (arrests, defused bombs, agreements, looting) are
  refused as "ACLED event type not imported": they are not the armed violence this map counts.
- parties: actor1 (side "a") and actor2 (side "b") as written with their groups.
- event_type from sub_event_type (EVENT_TYPES); target from the attacked side's actor and
  associated actor (TARGET_WORDS; Health Workers with "polio" in the notes are polio workers);
  in a battle the attacked side is the state's when one side is the state. ACLED reports neither
  claims nor injuries: claimed and injured_* are null.
- killed_best = fatalities (ACLED gives one figure, not by side: deaths is null).
  civilian_targeting "Civilian targeting" is kept as a flag.
- description = notes; sources = [{ACLED, <source column>, <date>, ""}].
"""

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from geo.importers.common import (
    RowError,
    RowRefused,
    code,
    count,
    date_of_text,
    identifier,
    parse_day,
    point,
    record,
)
from geo.importers.layouts import Layout
from geo.importers.parties import actor_of, is_foreign_state, is_state, party
from geo.importers.places import Names, Unplaced

NAME = "ACLED"
ORIGIN = "acled"
DATASET = "acled"
ID_COLUMN, ID_PREFIX = "event_id_cnty", "acled"
LON, LAT = "longitude", "latitude"
REQUIRED = (
    "event_id_cnty", "event_date", "time_precision", "event_type", "sub_event_type", "actor1",
    "actor2", "admin1", "location", "latitude", "longitude", "geo_precision", "source", "notes",
    "fatalities",
)  # fmt: skip
LAYOUTS = (
    Layout(
        "ACLED columns",
        REQUIRED,
        noted=(
            "iso",
            "event_id_no_cnty",
            "disorder_type",
            "civilian_targeting",
            "tags",
            "timestamp",
            "population_best",
        ),
    ),  # fmt: skip
)

IMPORTED_EVENT_TYPES = frozenset(
    {"battles", "explosions/remote violence", "violence against civilians"}
)
NOT_IMPORTED_EVENT_TYPES = frozenset({"protests", "riots", "strategic developments"})
EVENT_TYPES = {
    "suicide bomb": "suicide bombing",
    "remote explosive/landmine/ied": "bombing / IED",
    "grenade": "bombing / IED",
    "attack": "armed assault",
    "armed clash": "armed assault",
    "abduction/forced disappearance": "kidnapping",
    "shelling/artillery/missile attack": "other",
    "air/drone strike": "other",
    "sexual violence": "other",
    "government regains territory": "other",
    "non-state actor overtakes territory": "other",
}
# First match wins, searched in "actor2; assoc_actor_2": a party worker shot as a civilian is coded
# Civilians with the party as associated actor, so parties come before civilians.
TARGET_WORDS = (
    (r"\b(party|jamiat|jui|jamaat-e-islami|muslim league|pml|ppp|pti|tehree?k-[ie]-insaf|anp)\b",
     "political party"),
    (r"\bpolice\b|counter[- ]terrorism", "police / CTD"),
    (r"\b(military|army|frontier corps|levies|rangers|paramilitary)\b", "security forces"),
    (r"\b(religious|cleric|clerics|imam|ulema|scholar)", "religious leaders"),
    (r"\bgovernment\b", "government"),
    (r"\bcivilians?\b|\bhealth workers\b|\bjournalists\b|\bteachers\b", "civilians"),
)  # fmt: skip


def dataset_of(path: Path) -> str:
    return DATASET


def release_key(row: dict[str, str]) -> str | None:
    """The row's timestamp as an ISO day (UTC), else its event_date "(newest event)"; None when
    neither reads. The newest over the file is its release."""
    stamp = row.get("timestamp", "").strip()
    if stamp.isdigit():
        return _epoch_day(int(stamp) // 86400)
    day = date_of_text(stamp) or date_of_text(row["event_date"].strip())
    return f"{day.isoformat()} (newest event)" if day else None


@lru_cache(maxsize=8192)  # a file's rows were changed on far fewer days than it has rows
def _epoch_day(days: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=days)).date().isoformat()


def release_of(path: Path, newest: str | None) -> str | None:
    """The newest timestamp's day, e.g. "2024-05-14" (see the module docstring)."""
    return newest


def convert(row: dict[str, str], dataset: str) -> Unplaced:
    """One ACLED row as a canonical record, to be placed in its district; RowError (or
    RowRefused) with the reason when it cannot be taken."""
    rec_id = identifier(row, "event_id_cnty", ID_PREFIX)
    event_type = row["event_type"].strip()
    kind = event_type.lower()
    if kind in NOT_IMPORTED_EVENT_TYPES:
        raise RowRefused("ACLED event type not imported", f"event_type {event_type!r}")
    if kind not in IMPORTED_EVENT_TYPES:
        raise RowError("event_type is not an ACLED event type", f"event_type {event_type!r}")
    lon, lat = point(row, LON, LAT)
    date, date_precision, date_end = _date(row)
    actor1, actor2 = row["actor1"].strip(), row["actor2"].strip()
    sub_event = row["sub_event_type"].strip().lower()
    category, actor = _category(kind, sub_event, actor1, actor2)
    flags = []
    if row.get("civilian_targeting", "").strip():
        flags.append(f"ACLED civilian_targeting: {row['civilian_targeting'].strip()}")
    battle_against_state = kind == "battles" and is_state(actor1) and not is_state(actor2)
    if battle_against_state:  # the group fought the state: the state's side was attacked
        target = _target(row, "actor1", "assoc_actor_1")
    else:
        target = _target(row, "actor2", "assoc_actor_2")
    rec = record(
        id=rec_id,
        origin=ORIGIN,
        dataset=dataset,
        publication=NAME,
        source_title=row["source"],
        date=date,
        date_precision=date_precision,
        date_end=date_end,
        location=row["location"],
        geo_precision=code(row, "geo_precision", (1, 2, 3)),
        actor=actor,
        claimed=None,
        event_type=EVENT_TYPES.get(sub_event, "other"),
        target=target,
        killed=(None, count(row, "fatalities"), None),
        injured=(None, None),
        description=row["notes"],
        lon=lon,
        lat=lat,
        category=category,
        parties=[party(name, side) for name, side in ((actor1, "a"), (actor2, "b")) if name],
        district_reported=row.get("admin2", "").strip(),
        flags=flags,
    )
    return Unplaced(rec, Names("admin1", row["admin1"], "admin2", row.get("admin2", "")))


def _category(kind: str, sub_event: str, actor1: str, actor2: str) -> tuple[str, str | None]:
    """(category, actor) from the event type, sub-event type and actors (module docstring)."""
    if kind == "battles":
        if sub_event == "government regains territory":
            return "security operation", None
        if not is_state(actor1) and not is_state(actor2):
            return "violence between groups", None
        return "armed clash", None
    if kind == "explosions/remote violence":
        if sub_event == "air/drone strike":
            category = "air/drone strike"
        elif not is_state(actor1):
            category = "militant attack"
        elif is_foreign_state(actor1):
            category = "armed clash"
        else:
            category = "security operation"
        return category, actor_of(actor1)
    return "violence against civilians", actor_of(actor1)


def _date(row: dict[str, str]) -> tuple[str, str, str | None]:
    day = parse_day(row, "event_date")
    precision = code(row, "time_precision", (1, 2, 3))
    if precision == 1:
        return day.isoformat(), "day", None
    if precision == 2:
        return (day - timedelta(days=3)).isoformat(), "range", (day + timedelta(days=3)).isoformat()
    return f"{day:%Y-%m}", "month", None


def _target(row: dict[str, str], actor: str, associates: str) -> str:
    """The target, from the attacked side's actor and associated actors."""
    victims = f"{row[actor]}; {row.get(associates, '')}".lower()
    # ACLED has no polio-worker actor: vaccinators are coded Health Workers, the notes say polio
    if "health workers" in victims and re.search(r"\bpolio\b", row["notes"], re.IGNORECASE):
        return "polio workers"
    return _target_of(victims)


@lru_cache(maxsize=4096)  # a file names far fewer sides than it has rows
def _target_of(victims: str) -> str:
    if not victims.strip("; "):
        return "unknown"
    for pattern, target in TARGET_WORDS:
        if re.search(pattern, victims):
            return target
    return "other"
