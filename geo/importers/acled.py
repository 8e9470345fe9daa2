"""ACLED's CSV export (acleddata.com, "Data Export Tool"), one row per event.

Mapping to the canonical record:
- id "acled-<event_id_cnty>"; date from event_date ("30 July 2023", or "2023-07-30" in newer
  exports) and time_precision: 1 -> day; 2 (the week is known) -> a range of the day ± 3 days;
  3 (the month is known) -> month.
- location, lon/lat and geo_precision (ACLED's 1-3 mean what ours do) as given.
- Only the three event types that are attacks are imported: Battles, Explosions/Remote violence and
  Violence against civilians. Protests, Riots and Strategic developments (arrests, defused bombs,
  looting) are rejected as "not an attack".
- event_type from sub_event_type (table EVENT_TYPES below); target from actor2 and assoc_actor_2
  (TARGET_WORDS; Health Workers with "polio" in the notes are polio workers). ACLED reports
  neither a claim nor injuries, so claimed and injured_* are null.
- actor: canonical_actor(actor1); when actor1 is Pakistan's own forces (an army raid on a TTP
  hideout is coded Military Forces vs TTP), the militant side, actor2, is the actor instead and
  the target comes from actor1.
- killed_best = fatalities (killed_low/high null: ACLED gives one figure).
- description = notes; sources = [{ACLED, <source column>, <date>, ""}].
"""

import re
from datetime import timedelta

from geo.importers.common import (
    RowError,
    actor_of,
    code,
    count,
    identifier,
    parse_day,
    point,
    record,
)

NAME = "ACLED"
ADMIN1 = "admin1"
LON, LAT = "longitude", "latitude"
REQUIRED = (
    "event_id_cnty", "event_date", "time_precision", "event_type", "sub_event_type", "actor1",
    "actor2", "admin1", "location", "latitude", "longitude", "geo_precision", "source", "notes",
    "fatalities",
)  # fmt: skip

ATTACK_EVENT_TYPES = frozenset(
    {"battles", "explosions/remote violence", "violence against civilians"}
)
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
STATE_FORCES = re.compile(r"^(military|police) forces of pakistan", re.IGNORECASE)


def convert(row: dict[str, str]) -> dict:
    """One ACLED row as a canonical record; RowError with the reason when it cannot be."""
    if row["event_type"].strip().lower() not in ATTACK_EVENT_TYPES:
        raise RowError(f"not an attack: event_type {row['event_type'].strip()!r}")
    lon, lat = point(row, LON, LAT)
    day = parse_day(row, "event_date")
    precision = code(row, "time_precision", (1, 2, 3))
    if precision == 1:
        date, date_precision, date_end = day.isoformat(), "day", None
    elif precision == 2:
        date, date_precision = (day - timedelta(days=3)).isoformat(), "range"
        date_end = (day + timedelta(days=3)).isoformat()
    else:
        date, date_precision, date_end = f"{day:%Y-%m}", "month", None
    actor, target = actor_of(row["actor1"]), _target(row, "actor2", "assoc_actor_2")
    if actor == "unknown" and STATE_FORCES.match(row["actor1"].strip()):
        actor, target = actor_of(row["actor2"]), _target(row, "actor1", "assoc_actor_1")
    return record(
        id=identifier(row, "event_id_cnty", "acled"),
        origin="acled",
        publication=NAME,
        source_title=row["source"],
        date=date,
        date_precision=date_precision,
        date_end=date_end,
        location=row["location"],
        geo_precision=code(row, "geo_precision", (1, 2, 3)),
        actor=actor,
        claimed=None,
        event_type=EVENT_TYPES.get(row["sub_event_type"].strip().lower(), "other"),
        target=target,
        killed=(None, count(row, "fatalities"), None),
        injured=(None, None),
        description=row["notes"],
        lon=lon,
        lat=lat,
    )


def _target(row: dict[str, str], actor: str, associates: str) -> str:
    """The target, from the attacked side's actor and associated actors."""
    victims = f"{row[actor]}; {row.get(associates, '')}".lower()
    if not victims.strip("; "):
        return "unknown"
    # ACLED has no polio-worker actor: vaccinators are coded Health Workers, the notes say polio
    if "health workers" in victims and re.search(r"\bpolio\b", row["notes"], re.IGNORECASE):
        return "polio workers"
    for pattern, target in TARGET_WORDS:
        if re.search(pattern, victims):
            return target
    return "other"
