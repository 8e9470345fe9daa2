"""The attacks layer: authored events geocoded, imported records placed and measured (records of
different datasets reporting one event are linked by geo.build.links).

Every attack record (authored, imported or synthetic) is a canonical property dict with "lon" and
"lat" (see the attack schema in docs/store.md); this module turns records into GeoJSON features
and sums them per district.
"""

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from geo.border import BorderIndex
from geo.build.gazetteer import PRECISION_DISTRICT, Gazetteer, GeocodeError
from geo.build.links import assemble, link_groups
from geo.build.locate import Locator
from geo.build.records import VALUE_KEYS, Records
from geo.geojson import FeatureCollectionWriter
from geo.licences import read_datasets
from geo.store.files import IndexBuilder, index_file
from geo.store.schemas import LAYERS, validate_features
from geo.vocab import MILITANT_ATTACK, event_fields

COUNTS = ("killed_low", "killed_best", "killed_high", "injured_low", "injured_high")
# Record keys that are inputs to the build, not properties of the published feature.
NOT_PROPERTIES = ("lon", "lat")


def geocode_events(
    events: Iterable[dict[str, Any]], gazetteer: Gazetteer
) -> tuple[list[dict[str, Any]], list[str]]:
    """Authored events -> records with lon/lat, plus every problem found (never the first only).

    A record is never more precise than its source or its geocode: geo_precision is the larger
    of the CSV's and the gazetteer's. An event known only to its district (precision 3) goes to
    the district's representative point whatever its location says ("Lakki Marwat" is also a
    town). An event whose place lies in another district than the one it states is an error
    naming both districts.
    """
    records, problems = [], []
    for event in events:
        stated = event.get("district")
        try:
            if event["geo_precision"] == 3:
                if not stated:
                    raise GeocodeError("geo_precision 3 needs a district")
                place = gazetteer.district_point(stated)
            else:
                place = gazetteer.geocode(event["location"], district=stated)
        except GeocodeError as exc:
            problems.append(f"event {event['id']} ({event['location']!r}): {exc}")
            continue
        district = place.district
        if stated and district != stated:
            problems.append(
                f"event {event['id']}: states district {stated} but {event['location']!r} "
                f"({place.lon:.4f}, {place.lat:.4f}, {place.source}) lies in "
                f"{district or 'no KP district'}"
            )
            continue
        if district is None:
            problems.append(f"event {event['id']}: {event['location']!r} lies outside KP")
            continue
        records.append(
            {
                **event,
                "district": district,
                "geo_precision": max(event["geo_precision"], place.precision),
                "lon": place.lon,
                "lat": place.lat,
            }
        )
    return records, problems


# Said of a record kept from an older store, which had no categories: what it is was never read
# from its source, so the record says so rather than pass for classified.
UNCLASSIFIED_FLAG = (
    "imported by an older kpmap without categories: re-import its file to classify it"
)


def upgrade(record: dict[str, Any]) -> dict[str, Any]:
    """A kept record with every property the current schema has (an older store's records lack
    the event fields; they get the category they were drawn as, and a flag saying so; those
    kept before datasets and releases were recorded get None for both)."""
    if "category" not in record:
        return {**event_fields(MILITANT_ATTACK, flags=[UNCLASSIFIED_FLAG]), **record}
    if "release" not in record:
        # kept from a store that classified events but did not yet record the dataset's release
        return {"dataset": None, "release": None, **record}
    return record


def place(
    records: list[dict[str, Any]], locator: Locator
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Records with their district and tehsil decided by their point (geo.build.locate), and the
    ids of those whose point lies in no KP district, each with its reason.

    Sets `district`, `tehsil` (None for a record known only to its district: its point is the
    district's representative point, not a place in a tehsil) and `border_sliver_km` (None unless
    the point was given to the nearest district by the border sliver rule).
    """
    lon = [r["lon"] for r in records]
    lat = [r["lat"] for r in records]
    districts, tehsils, sliver_km = locator.locate_many(lon, lat)
    placed, not_placed = [], []
    for record, district, tehsil, km in zip(records, districts, tehsils, sliver_km, strict=True):
        if district is None:
            not_placed.append(
                {
                    "id": record["id"],
                    "reason": f"its point ({record['lon']:g}, {record['lat']:g}) lies in no KP "
                    "district of the current boundaries (a point is taken inside a district, or "
                    "on the Pakistani side of the Durand Line within 5 km of one)",
                }
            )
            continue
        record["district"] = district
        record["tehsil"] = tehsil if record["geo_precision"] < PRECISION_DISTRICT else None
        record["border_sliver_km"] = km
        placed.append(record)
    return placed, not_placed


def attack_features(
    records: list[dict[str, Any]],
    border: BorderIndex,
    former_fata: Mapping[str, bool],
) -> list[dict[str, Any]]:
    """GeoJSON Point features for the records, with distance_to_border_km and former_fata.

    Written directly rather than through shapely: a point needs no orientation, and this runs
    for every attack of a million-record store.
    """
    lon = np.fromiter((r["lon"] for r in records), dtype=float, count=len(records))
    lat = np.fromiter((r["lat"] for r in records), dtype=float, count=len(records))
    distances = np.round(border.distance_km(lon, lat), 1).tolist()
    return [
        _feature(record, x, y, km, former_fata)
        for record, x, y, km in zip(records, lon.tolist(), lat.tolist(), distances, strict=True)
    ]


def _feature(
    record: dict[str, Any], x: float, y: float, km: float, former_fata: Mapping[str, bool]
) -> dict[str, Any]:
    """One record's feature (see attack_features); `km` its distance to the border."""
    properties = record.copy()  # then drop the few keys that are not properties
    for key in NOT_PROPERTIES:
        del properties[key]
    properties["distance_to_border_km"] = km
    properties["former_fata"] = former_fata[record["district"]]
    linked = properties.setdefault("linked", [])  # a record linked to none (geo.build.links)
    # every dataset the feature holds rows of: what the licences are decided by
    properties["origins"] = (
        ",".join(dict.fromkeys(m["origin"] for m in linked)) if linked else record["origin"]
    )
    return {
        "type": "Feature",
        "id": record["id"],
        "geometry": {"type": "Point", "coordinates": [round(x, 6), round(y, 6)]},
        "properties": properties,
    }


def feature_record(feature: Mapping[str, Any]) -> dict[str, Any]:
    """A stored attack feature back as a record (properties + lon/lat), to rebuild from."""
    lon, lat = feature["geometry"]["coordinates"][:2]
    properties = dict(feature["properties"])
    derived_keys = (
        "distance_to_border_km",
        "former_fata",
        "tehsil",
        "border_sliver_km",
        "linked",
        "origins",
    )
    for derived in derived_keys:
        properties.pop(derived, None)
    return {**properties, "lon": lon, "lat": lat}


def area_totals(
    features: Iterable[Mapping[str, Any]], key: str = "district"
) -> dict[str, dict[str, int]]:
    """Per district (or tehsil, key="tehsil") id: the number of attacks and the sums of killed
    and injured figures. Attacks without a value for `key` are not counted.

    A sum counts only the attacks that report that figure (a missing figure adds nothing).
    """
    totals: dict[str, dict[str, int]] = {}
    for feat in features:
        props = feat["properties"]
        area = props.get(key)
        if area is None:
            continue
        row = totals.setdefault(area, {"attacks": 0, **{c: 0 for c in COUNTS}})
        row["attacks"] += 1
        for column in COUNTS:
            row[column] += props.get(column) or 0
    return totals


def place_records(records: Records, locator: Locator) -> tuple[list[int], list[dict[str, str]]]:
    """place() for records held as lines (geo.build.records): the positions of the records
    placed, and the ids of those whose point lies in no KP district, each with its reason.
    A record keeps its line unless its district, tehsil or border_sliver_km changes."""
    districts, tehsils, sliver_km = locator.locate_many(records.lon, records.lat)
    placed = [i for i, district in enumerate(districts) if district is not None]
    precision = records.precision
    records.set_places(
        placed,
        [
            (districts[i], tehsils[i] if precision[i] < PRECISION_DISTRICT else None, sliver_km[i])
            for i in placed
        ],
    )
    not_placed = [
        {
            "id": records.ids[i],
            "reason": f"its point ({records.lon[i]:g}, {records.lat[i]:g}) lies in no KP "
            "district of the current boundaries (a point is taken inside a district, or "
            "on the Pakistani side of the Durand Line within 5 km of one)",
        }
        for i, district in enumerate(districts)
        if district is None
    ]
    return placed, not_placed


def link_placed(
    records: Records, placed: list[int]
) -> tuple[list[int | dict[str, Any]], list[dict[str, Any]]]:
    """geo.build.links.link_records for records held as lines: the attacks, sorted by id, each
    a record's position in `records` or (a linked group) its combined record; and the links
    made. Only the members of a group are parsed."""
    ids = records.ids
    order = sorted(placed, key=ids.__getitem__)
    candidates = [
        c for position, i in enumerate(order) if (c := records.candidate(i, position)) is not None
    ]
    groups = link_groups(candidates)
    entries, links = assemble(len(order), groups, lambda p: records.record(order[p]))
    attacks = [order[e] if isinstance(e, int) else e for e in entries]
    keys = [ids[e] if isinstance(e, int) else e["id"] for e in attacks]
    return [attacks[k] for k in sorted(range(len(attacks)), key=keys.__getitem__)], links


# The attacks a build writes at once (parsed, for the few that need it, and encoded).
CHUNK = 50_000
# What the index (geo.store.files.IndexBuilder) and the manifest read of each attack: VALUE_KEYS
# as the record holds them, then its place, origins, distance to the border and links.
ROW_KEYS = (*VALUE_KEYS, "district", "tehsil", "origins", "distance_to_border_km", "linked")
_NUMBER = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
# lon then lat, side by side, as every importer writes a record: found by one search
_POINT = re.compile(rb',"lon":' + _NUMBER.pattern + rb',"lat":' + _NUMBER.pattern + rb"(?=[,}])")
_POINT_KEYS = re.compile(rb'"l(?:on|at)":')


class AttackLayer:
    """The attacks layer of a build, made a chunk at a time as it is written (see write): a
    million features are never in memory at once.

    `attacks` are the layer's records in order (sorted by id): positions in `records`, or the
    combined records of linked groups. A plain record (geo.build.records: its properties are its
    own and of the schema's types) is written from its line: the feature is the line without
    lon and lat, with the derived properties appended, exactly as orjson writes the feature
    attack_features makes, and checked without being parsed. Any other is parsed, made by
    attack_features and checked by geo.store.schemas.validate_features, as before.
    """

    def __init__(
        self,
        records: Records,
        attacks: list[int | dict[str, Any]],
        border: BorderIndex,
        former_fata: Mapping[str, bool],
    ):
        self.records = records
        self.attacks = attacks
        self.border = border
        self.former_fata = former_fata
        self._tails: dict[tuple[bytes, str], bytes] = {}
        self._fata = {
            k: b"true" if v else b"false" for k, v in former_fata.items() if type(v) is bool
        }

    def __len__(self) -> int:
        return len(self.attacks)

    def write(
        self,
        path: Path,
        on_chunk: Callable[[np.ndarray], None] | None = None,
        let_go: Callable[[], bool] | None = None,
    ) -> "WrittenAttacks":
        """Write the layer's GeoJSON file and its index (geo.store.files.index_file) beside it,
        checking every feature; what was gathered (problems, totals, manifest figures).
        `on_chunk` is given each chunk's byte ranges in the file once they can be read there.
        With `let_go`, the records of the features written are let go (Records.let_go) once it
        says nothing else reads them (asked after each chunk)."""
        schema = LAYERS["attacks"]
        written = WrittenAttacks(path)
        index = IndexBuilder(schema)
        missing = set(index.keys) - set(ROW_KEYS)
        if missing:
            raise AssertionError(f"ROW_KEYS lacks {missing}")
        starts = range(0, len(self.attacks), CHUNK)
        done: list[int] = []  # records written, not let go yet
        with FeatureCollectionWriter(path) as writer, ThreadPoolExecutor(1) as ahead:
            # Each chunk's distances to the border are measured while the one before is written
            # (GEOS and PROJ let go of the GIL).
            measured = {start: ahead.submit(self._measure, start) for start in starts[:1]}
            for k, start in enumerate(starts):
                if k + 1 < len(starts):
                    measured[starts[k + 1]] = ahead.submit(self._measure, starts[k + 1])
                self._write_chunk(start, measured.pop(start).result(), writer, index, written)
                if on_chunk is not None:
                    on_chunk(writer.flushed())
                if let_go is not None:
                    done.extend(a for a in self.attacks[start : start + CHUNK] if type(a) is int)
                    if let_go():
                        self.records.let_go(done)
                        done.clear()
        written.finish(writer, index)
        return written

    def releases(self) -> dict[str, set[str]]:
        """The releases of the records the attacks hold, by origin, from the records' columns:
        what writing the layer gathers (WrittenAttacks.releases), known before."""
        records = self.records
        found: dict[str, set[str]] = {}
        for attack in self.attacks:
            if isinstance(attack, int):
                found.setdefault(records.origins[attack], set()).add(records.releases[attack])
            else:
                _add_releases([{"properties": attack}], found)
        return found

    def _measure(self, start: int) -> tuple[list[float], list[float], list[float]]:
        """The longitudes, latitudes and distances to the border (km, to 0.1) of the chunk of
        attacks from `start`."""
        records = self.records
        attacks = self.attacks[start : start + CHUNK]
        lon = np.fromiter(
            (records.lon[a] if isinstance(a, int) else a["lon"] for a in attacks),
            dtype=float,
            count=len(attacks),
        )
        lat = np.fromiter(
            (records.lat[a] if isinstance(a, int) else a["lat"] for a in attacks),
            dtype=float,
            count=len(attacks),
        )
        distances = np.round(self.border.distance_km(lon, lat), 1).tolist()
        return lon.tolist(), lat.tolist(), distances

    def _write_chunk(
        self,
        start: int,
        measured: tuple[list[float], list[float], list[float]],
        writer: FeatureCollectionWriter,
        index: IndexBuilder,
        written: "WrittenAttacks",
    ) -> None:
        records = self.records
        attacks = self.attacks[start : start + CHUNK]
        lon, lat, distances = measured
        xs = [round(x, 6) for x in lon]
        ys = [round(y, 6) for y in lat]
        encoded, rows, ids = [], [], []
        schema = LAYERS["attacks"]
        previous = None  # the id before: they are sorted, so a repeated id follows its first
        if start:
            before = self.attacks[start - 1]
            previous = records.ids[before] if isinstance(before, int) else before["id"]
        plain, all_ids, places, origins = (
            records.plain,
            records.ids,
            records.places,
            records.origins,
        )
        heads, figures, cites, releases = (
            records.heads,
            records.figures,
            records.cites,
            records.releases,
        )
        line_of = self._line
        for k, attack in enumerate(attacks):
            line = None
            if isinstance(attack, int) and plain[attack]:
                line = line_of(attack, xs[k], ys[k], distances[k])
            if line is not None and isinstance(attack, int):
                fid = all_ids[attack]
                if fid == previous:
                    written.problems.append(f"feature #{start + k} ({fid!r}): duplicate id")
                district, tehsil, _ = places[attack]
                origin = origins[attack]
                head, figure, cited = heads[attack], figures[attack], cites[attack]
                assert head is not None and figure is not None  # a plain record's
                rows.append((*head, *figure, district, tehsil, origin, distances[k], ()))
                written.releases.setdefault(origin, set()).add(releases[attack])
                if cited:
                    written.cited.update(cited)
            else:
                record = records.record(attack) if isinstance(attack, int) else attack
                feature = _feature(record, lon[k], lat[k], distances[k], self.former_fata)
                seen = {previous} if previous is not None else set()
                written.problems += validate_features([feature], schema, start + k, seen)
                line = orjson.dumps(feature, option=orjson.OPT_SERIALIZE_NUMPY)
                fid = feature["id"]
                props = feature["properties"]
                rows.append(tuple(props.get(key) for key in ROW_KEYS))
                _add_releases([feature], written.releases)
                written.cited |= _cited([feature])
            encoded.append(line)
            ids.append(fid)
            previous = fid
        writer.write_encoded(encoded)
        del encoded
        columns = dict(zip(ROW_KEYS, zip(*rows, strict=True), strict=True))
        index.add_columns([str(i) for i in ids], np.column_stack([xs, ys]), columns)
        written.add_span(columns["date"], columns["date_end"])
        written.count += len(attacks)

    def _line(self, attack: int, x: float, y: float, km: float) -> bytes | None:
        """The feature of a plain record, from its line; None when it must be made by
        attack_features (a point out of range, a line whose lon or lat is not found once)."""
        if not (-180 <= x <= 180 and -90 <= y <= 90):
            return None
        records = self.records
        fata = self._fata.get(records.places[attack][0])
        if fata is None:
            return None
        line = records.line(attack)
        body = _members_without_point(line)
        if body is None:
            stripped = _without(_without(line, b'"lon":'), b'"lat":')
            if stripped is None:
                return None
            body = (stripped[:-1],)
        origin = records.origins[attack]
        tail = self._tails.get((fata, origin))
        if tail is None:
            tail = self._tails[fata, origin] = (
                b',"former_fata":'
                + fata
                + b',"linked":[],"origins":'
                + orjson.dumps(origin)
                + b"}}"
            )
        return b"".join(
            (
                b'{"type":"Feature","id":',
                orjson.dumps(records.ids[attack]),
                b',"geometry":{"type":"Point","coordinates":',
                orjson.dumps([x, y]),
                b'},"properties":',
                *body,
                b',"distance_to_border_km":',
                orjson.dumps(km),
                tail,
            )
        )


def _members_without_point(line: bytes) -> tuple[bytes, ...] | None:
    """A JSON object's line without its closing brace and its lon and lat members, as slices, in
    the common case: each key occurs once and follows a comma (see _without); else None."""
    # each key once, lon first (one scan of the line), then the pair matched where it is
    if _POINT_KEYS.findall(line) == [b'"lon":', b'"lat":']:
        point = _POINT.match(line, line.rfind(b',"lon":'))
        if point is not None:
            return line[: point.start()], line[point.end() : -1]
    lon = line.find(b'"lon":')
    lat = line.find(b'"lat":')
    if (
        lon < 1
        or lat < 1
        or line.find(b'"lon":', lon + 1) != -1
        or line.find(b'"lat":', lat + 1) != -1
        or line[lon - 1] != 44  # ","
        or line[lat - 1] != 44
    ):
        return None
    lon_number = _NUMBER.match(line, lon + 6)
    lat_number = _NUMBER.match(line, lat + 6)
    if lon_number is None or lat_number is None:
        return None
    lon_end, lat_end = lon_number.end(), lat_number.end()
    if line[lon_end : lon_end + 1] not in (b",", b"}") or line[lat_end : lat_end + 1] not in (
        b",",
        b"}",
    ):
        return None
    (a, a_end), (b, b_end) = sorted(((lon - 1, lon_end), (lat - 1, lat_end)))
    return line[:a], line[a_end:b], line[b_end:-1]


def _without(line: bytes | None, key: bytes) -> bytes | None:
    """A JSON object's line without the member `key` (b'"lon":'), whose value is a number; None
    unless the key occurs exactly once (then it is the object's own: a quote inside a string is
    escaped, and a key inside a nested object would be a second occurrence)."""
    if line is None:
        return None
    at = line.find(key)
    if at < 1 or line.find(key, at + 1) != -1:
        return None
    number = _NUMBER.match(line, at + len(key))
    if number is None:
        return None
    stop = number.end()
    before, after = line[at - 1 : at], line[stop : stop + 1]
    if after not in (b",", b"}"):
        return None
    if before == b",":
        return line[: at - 1] + line[stop:]
    if before == b"{":
        return line[:at] + (line[stop + 1 :] if after == b"," else line[stop:])
    return None


class WrittenAttacks:
    """What writing the attacks layer gathered: its problems, the index arrays, the district and
    tehsil totals, and the figures of its manifest entry."""

    def __init__(self, path: Path):
        self.path = path
        self.problems: list[str] = []
        self.count = 0
        self.sha256 = ""
        self.arrays: dict[str, np.ndarray] = {}
        self.totals: dict[str, dict[str, dict[str, int]]] = {"district": {}, "tehsil": {}}
        # the releases of the records, by origin, and the publications they cite
        self.releases: dict[str, set[str]] = {}
        self.cited: set[tuple[str, str]] = set()
        self.first: str | None = None
        self.last: str | None = None

    def add(self, features: list[dict[str, Any]]) -> None:
        """Gather the manifest figures of features written."""
        if not features:
            return
        props = [f["properties"] for f in features]
        self.add_span([p["date"] for p in props], [p["date_end"] for p in props])
        _add_releases(features, self.releases)
        self.cited |= _cited(features)

    def add_span(self, dates: Sequence[str], ends: Sequence[str | None]) -> None:
        if not dates:
            return
        first = min(dates)
        last = max(e or s for s, e in zip(dates, ends, strict=True))
        self.first = first if self.first is None else min(self.first, first)
        self.last = last if self.last is None else max(self.last, last)

    def finish(self, writer: FeatureCollectionWriter, index: IndexBuilder) -> None:
        """Save the index beside the layer file, and total the attacks by district and tehsil."""
        self.sha256 = writer.sha256
        self.arrays = index.arrays()
        for key in self.totals:
            self.totals[key] = _area_totals(self.arrays, index.distinct_values[key], key)
        saved: dict[str, Any] = {
            "offsets": writer.offsets(),
            "sha256": np.array(writer.sha256),
            **self.arrays,
        }
        np.savez(self.path.parent / index_file(self.path.name), **saved)

    def entry(self, title: str, sources: list[dict[str, Any]]) -> dict[str, Any]:
        """The layer's manifest entry (as geo.build.pipeline._layer_entry makes one)."""
        return {
            "file": self.path.name,
            "title": title,
            "count": self.count,
            "bounds": xy_bounds(self.arrays["xy"]) if self.count else None,
            "geometry_types": ["Point"] if self.count else [],
            "time_range": [self.first, self.last] if self.count else None,
            "sha256": self.sha256,
            "sources": sources,
            "publications": publications(self.cited),
        }


def write_features(path: Path, features: list[dict[str, Any]]) -> WrittenAttacks:
    """WrittenAttacks for attack features given as a list (the plain way, all checked)."""
    schema = LAYERS["attacks"]
    written = WrittenAttacks(path)
    index = IndexBuilder(schema)
    with FeatureCollectionWriter(path) as writer:
        written.problems += validate_features(features, schema)
        writer.write(features)
        index.add(features)
        written.add(features)
        written.count += len(features)
    written.finish(writer, index)
    return written


def _add_releases(features: Iterable[dict[str, Any]], releases: dict[str, set[str]]) -> None:
    """Add the releases of every record the attack features hold, by origin."""
    for f in features:
        props = f["properties"]
        members = props.get("linked") or [props]
        for member in members:
            releases.setdefault(member["origin"], set()).add(member.get("release") or "")


def _cited(features: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (source.get("publication") or "", source.get("date") or "")
        for f in features
        for source in f["properties"]["sources"]
    }


def publications(cited: set[tuple[str, str]]) -> list[list[str]]:
    """[publication, date] of the `cited` that are articles, not datasets (see
    geo.build.pipeline._cited_publications)."""
    datasets = {d.publication for d in read_datasets().values() if d.publication}
    return [list(p) for p in sorted(cited) if p[0] and p[0] not in datasets]


def xy_bounds(xy: np.ndarray) -> list[float]:
    minx, miny = xy.min(axis=0)
    maxx, maxy = xy.max(axis=0)
    return [float(minx), float(miny), float(maxx), float(maxy)]


def _area_totals(
    arrays: dict[str, np.ndarray], distinct: list[Any], key: str
) -> dict[str, dict[str, int]]:
    """area_totals from the index's columns: per value of `key` (a district or tehsil id; null
    is no area), the number of attacks and the sums of the figures they report."""
    codes = arrays[f"codes:{key}"]
    size = len(distinct)
    counts = np.bincount(codes, minlength=size)
    sums = {
        c: np.bincount(codes, weights=np.nan_to_num(arrays[f"number:{c}"]), minlength=size)
        for c in COUNTS
    }
    return {
        area: {"attacks": int(counts[code]), **{c: int(sums[c][code]) for c in COUNTS}}
        for code, area in enumerate(distinct)
        if area is not None and counts[code]
    }
