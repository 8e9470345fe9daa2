"""The sides of an event as a provider names them, and the canonical group each one is.

    party("Military Forces of Pakistan (2013-2018)", "a")
    # {"name": "Military Forces of Pakistan (2013-2018)", "group": "Pakistan (state)", "side": "a"}

Names go through data/actors.toml (geo.vocab.lookup_actor), then, when the name as written is
not there:
- ACLED's forces with their government's term, "Military Forces of Pakistan (2013-2018)", are
  looked up without the term;
- a faction written after its group, "TTP - <faction>" or "TTP (<faction>)", counts as the
  group (and an entry with `part_of` counts as the group it names); the party keeps the faction's
  name as written;
- civilians and other unarmed sides ("Civilians (Pakistan)", "Journalists") are no group: their
  party's group is None, and they are not "unmapped";
- any other name is unmapped: its party's group is None, a perpetrator's actor is OTHER_ACTOR
  ("a group the table does not list"), and the import report lists the name so that someone can
  add it to data/actors.toml. Nothing is folded into "unknown" silently: "unknown" is for a
  perpetrator the source itself does not know ("Unidentified Armed Group (Pakistan)").
"""

import re
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from geo.vocab import UNKNOWN_ACTOR, lookup_actor, read_actors

OTHER_ACTOR = "other"
# ACLED appends the government's term to state forces: "(2018-)", "(2013-2018)".
TERM = re.compile(r"\s*\(\d{4}-(\d{4})?\)")
# Sides that are not armed groups: ACLED's civilian actors and their associated groups, UCDP's
# one-sided "Civilians".
UNARMED = re.compile(
    r"^(civilians|protesters|rioters|journalists|health workers|teachers|students|"
    r"labou?r group|refugees?|prisoners|women|children|aid workers|lawyers)\b",
    re.IGNORECASE,
)
FACTION = re.compile(r"\s+-\s+|\s*\(")


@dataclass(frozen=True)
class Group:
    """What a provider's name is: its canonical key (None for civilians and unmapped names),
    the country whose state it is (None for a non-state group), and whether the name is one
    the actor table does not know."""

    key: str | None
    state: str | None = None
    unmapped: bool = False


@cache
def _actors() -> dict[str, dict[str, Any]]:
    return read_actors()


@lru_cache(maxsize=4096)
def group_of(name: str) -> Group:
    """The Group a provider's name denotes (see the module docstring).

    >>> group_of("TTP: Tehreek-i-Taliban Pakistan").key, group_of("Civilians (Pakistan)").key
    ('TTP', None)
    >>> group_of("Government of United States of America").state
    'United States'
    """
    name = name.strip()
    if not name or UNARMED.match(name):
        return Group(None)
    key = lookup_actor(name) or lookup_actor(TERM.sub("", name))
    if key is None:
        head = FACTION.split(name, maxsplit=1)[0]
        key = lookup_actor(head) if head != name else None
    if key is None:
        # a government the table does not list is still a state ("Government of India")
        country = re.match(r"^government of (?:the )?(.+)$", name, re.IGNORECASE)
        return Group(None, country.group(1) if country else None, unmapped=True)
    entry = _actors()[key]
    key = entry["part_of"] or key
    return Group(key, _actors()[key]["state"])


def party(name: str, side: str) -> dict[str, Any]:
    """One side of an event: the name as written, its canonical group (None for civilians and
    unmapped names) and the side ("a"/"b": UCDP's side_a/side_b, ACLED's actor1/actor2)."""
    return {"name": name.strip(), "group": group_of(name).key, "side": side}


def actor_of(name: str) -> str:
    """The canonical key of a perpetrator the source names: "unknown" when the source says it
    does not know ("Unidentified Armed Group (Pakistan)", GTD's "Unknown", a blank name), and
    OTHER_ACTOR for a name the actor table does not list."""
    group = group_of(name)
    if group.key is not None:
        return group.key
    return OTHER_ACTOR if group.unmapped else UNKNOWN_ACTOR


def unmapped_names(parties: list[dict[str, Any]]) -> list[str]:
    """The names among an event's parties that no entry of data/actors.toml matches."""
    return [p["name"] for p in parties if group_of(p["name"]).unmapped]


def is_state(name: str) -> bool:
    return group_of(name).state is not None


def is_foreign_state(name: str) -> bool:
    """A state other than Pakistan (the United States in the drone campaign)."""
    state = group_of(name).state
    return state is not None and state != "Pakistan"
