"""The vocabulary every record shares: event categories, event types, targets, precisions, the
attack record's derived fields (event_fields), and the canonical perpetrator groups
(data/actors.toml). geo.build.authored reads the authored records that use it.
"""

import functools
import tomllib
from pathlib import Path
from typing import Any

from geo import paths
from geo.districts import normalise_name
from geo.errors import SchemaError, problem_list

ACTORS_TOML = paths.DATA_DIR / "actors.toml"

EVENT_TYPES: tuple[str, ...] = (
    "suicide bombing",
    "bombing / IED",
    "targeted killing",
    "armed assault",
    "kidnapping",
    "other",
    "unknown",
)
TARGETS: tuple[str, ...] = (
    "political party",
    "police / CTD",
    "security forces",
    "polio workers",
    "religious leaders",
    "civilians",
    "government",
    "other",
    "unknown",
)
# What kind of event a record is, as its source says (see the attack schema in docs/store.md): only
# a "militant attack" has a perpetrator; the others name their parties, not an attacker.
#   militant attack           a non-state group attacks (ACLED's explosions and attacks by a group,
#                             GTD incidents, authored records)
#   armed clash               fighting between the state and a group where the source does not say
#                             who attacked (UCDP state-based events, ACLED battles)
#   security operation        the state's forces act against a group (ACLED's state-led raids,
#                             arrests and territory regained)
#   air/drone strike          an aerial or drone strike (ACLED's air/drone strikes; UCDP state-based
#                             events whose government side is a foreign state)
#   violence between groups   non-state groups fighting each other (UCDP non-state events)
#   violence against civilians  one-sided violence against civilians (UCDP one-sided events, ACLED's
#                             violence against civilians)
#   other                     anything else the source reports (protests and riots are not imported)
CATEGORIES: tuple[str, ...] = (
    "militant attack",
    "armed clash",
    "security operation",
    "air/drone strike",
    "violence between groups",
    "violence against civilians",
    "other",
)
MILITANT_ATTACK = "militant attack"
DATE_PRECISIONS: tuple[str, ...] = ("day", "month", "range")
GEO_PRECISIONS: tuple[int, ...] = (1, 2, 3)
UNKNOWN_ACTOR = "unknown"

COUNT_COLUMNS = ("killed_low", "killed_best", "killed_high", "injured_low", "injured_high")


# --- actors -----------------------------------------------------------------------------------


def read_actors(path: Path = ACTORS_TOML) -> dict[str, dict[str, Any]]:
    """Canonical group key -> {"name": str, "aliases": list[str], "state": str | None,
    "part_of": str | None} from data/actors.toml.

    `state` names the country whose government or forces the entry is (None for a non-state
    group); `part_of` the key of the group a faction counts as (None for a group of its own).
    Raises SchemaError listing every entry without a name, with aliases that are not a list of
    strings, with an alias another group also claims, with a `state` that is not text or a
    `part_of` that names no group, and when there is no "unknown" group.
    """
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SchemaError(f"{path}: cannot be read: {exc}") from exc
    problems: list[str] = []
    actors: dict[str, dict[str, Any]] = {}
    owner: dict[str, str] = {}
    for key, entry in raw.items():
        where = f"{path.name}: [{key}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: is not a table with name and aliases")
            continue
        name = entry.get("name")
        aliases = entry.get("aliases", [])
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{where}: has no name")
            name = key
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            problems.append(f"{where}: aliases must be a list of strings")
            aliases = []
        for alias in (key, name, *aliases):
            norm = normalise_name(alias)
            if owner.setdefault(norm, key) != key:
                problems.append(f"{where}: alias {alias!r} is also an alias of [{owner[norm]}]")
        state, part_of = entry.get("state"), entry.get("part_of")
        if state is not None and (not isinstance(state, str) or not state.strip()):
            problems.append(f"{where}: state must be the name of a country")
            state = None
        if part_of is not None and part_of not in raw:
            problems.append(f"{where}: part_of {part_of!r} is not a group of this table")
            part_of = None
        actors[key] = {"name": name, "aliases": list(aliases), "state": state, "part_of": part_of}
    if UNKNOWN_ACTOR not in actors:
        problems.append(f"{path.name}: has no [{UNKNOWN_ACTOR}] group (names that match none)")
    if problems:
        raise SchemaError(problem_list(f"{path.name} has {len(problems)} problem(s)", problems))
    return actors


def actor_index(actors: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Normalised key, name and alias -> canonical group key."""
    index: dict[str, str] = {}
    for key, entry in actors.items():
        for alias in (key, entry["name"], *entry["aliases"]):
            index[normalise_name(alias)] = key
    return index


@functools.cache
def _default_actor_index() -> dict[str, str]:
    return actor_index(read_actors())


def lookup_actor(name: str, index: dict[str, str] | None = None) -> str | None:
    """The canonical key for `name` if it is a known key or alias, else None.

    ACLED-style names ("ABBR: Full name (Country)") are also tried part by part.
    """
    index = _default_actor_index() if index is None else index
    candidates = [name, *name.split(":")] if ":" in name else [name]
    for candidate in candidates:
        key = index.get(normalise_name(candidate))
        if key is not None:
            return key
    return None


def canonical_actor(name: str | None, index: dict[str, str] | None = None) -> str:
    """The canonical group for any spelling (case, accents, punctuation ignored); else "unknown".

    >>> canonical_actor("Tehrik-i-Taliban Pakistan (TTP)")
    'TTP'
    """
    if not name or not name.strip():
        return UNKNOWN_ACTOR
    return lookup_actor(name, index) or UNKNOWN_ACTOR


def event_fields(
    category: str,
    parties: list[dict[str, Any]] | None = None,
    deaths: dict[str, int | None] | None = None,
    district_reported: str | None = None,
    flags: list[str] | None = None,
    dataset: str | None = None,
    release: str | None = None,
) -> dict[str, Any]:
    """The attack properties that say what an event is and how sure its source is:
    `category` (CATEGORIES), `parties` (both sides as the source names them: {"name", "group",
    "side"}), `deaths` by side where the source gives them ({"side_a", "side_b", "civilians",
    "unknown"}), `district_reported` (the district as the source wrote it), `flags` (what an
    importer noticed and kept: figures out of order, names disagreeing with the point, ...),
    and for an imported record the `dataset` it came from ("ucdp-ged", "ucdp-candidate",
    "acled", "gtd") and that dataset's `release` (text that sorts oldest to newest within the
    dataset, e.g. "2025 (GED 25.1)"); both None for authored and synthetic records."""
    return {
        "category": category,
        "parties": parties or [],
        "deaths": deaths,
        "district_reported": district_reported,
        "flags": flags or [],
        "dataset": dataset,
        "release": release,
    }
