"""Attack records as a build holds them: each one the JSON line `imported.jsonl` keeps (or a dict,
for a record made in this build), beside the few columns the build decides by.

A million imported records take ~2.5 GB as a million dicts and a third of that as their lines.
The build reads each line once to take its columns (id, dataset, release, point, precision,
district and tehsil as stored, what linking compares), decides which records are kept, where
they lie and which are linked from those columns alone, and parses a record again only when its
feature is written, a chunk at a time (geo.build.attacks.AttackLayer). A line whose record the
build changes (an older store's record upgraded, a point placed anew) is encoded again, exactly
as `orjson.dumps` of the changed record would be; the others are kept byte for byte.
"""

import ctypes
import operator
from collections.abc import Iterable, Iterator
from functools import cache, reduce
from itertools import islice, repeat
from operator import attrgetter, itemgetter
from typing import Annotated, Any

import msgspec
import orjson

from geo.build.datasets import UNKNOWN_RELEASE, dataset_of, named_dataset, release_of
from geo.build.links import MAX_SPAN_DAYS, ORIGIN_RANK, Candidate, groups_of, span

# Lines parsed at once: enough to amortise the per-chunk work, few enough to stay small.
CHUNK = 50_000
# A key the record does not have (unlike None, a value the record holds).
ABSENT = object()
PLACE_KEYS = ("district", "tehsil", "border_sliver_km")
# What geo.build.attacks.attack_features adds to a record's properties (and drops: lon, lat).
DERIVED_KEYS = ("distance_to_border_km", "former_fata", "linked", "origins")
# The properties the attacks layer's index and manifest entry read, as the record holds them
# (the feature's own, for a record the build writes from its line: see AttackLayer): a record's
# values of HEAD_KEYS, few combinations among a million records, are one tuple shared by all
# the records that have them; FIGURE_KEYS' are the record's own.
HEAD_KEYS = (
    "actor",
    "category",
    "event_type",
    "target",
    "claimed",
    "origin",
    "date_precision",
    "geo_precision",
    "date_end",
)
FIGURE_KEYS = ("date", "killed_low", "killed_best", "killed_high", "injured_low", "injured_high")
VALUE_KEYS = (*HEAD_KEYS, *FIGURE_KEYS)
_heads = itemgetter(*HEAD_KEYS)
_figures = itemgetter(*FIGURE_KEYS)


class Records:
    """Records (canonical property dicts with lon/lat, see geo.build.attacks) in a compact form.

    `items[i]` is record i: bytes (its JSON object, as imported.jsonl holds it) or a dict (None
    once let go). The lists beside it hold what the build decides by, for every record.
    """

    def __init__(self) -> None:
        self.items: list[bytes | dict[str, Any] | None] = []
        self.ids: list[str] = []
        self.origins: list[str] = []
        self.datasets: list[str] = []
        self.releases: list[str] = []
        self.lon: list[float] = []
        self.lat: list[float] = []
        self.precision: list[int] = []
        # district, tehsil and border_sliver_km as the record holds them (ABSENT if it lacks one)
        self.places: list[tuple[Any, Any, Any]] = []
        # (first day, last day, groups) of a record that may link (see geo.build.links), else
        # None; a span that cannot be read is None too and is read again (to raise) when needed
        self.links: list[tuple[int, int, frozenset[str]] | None] = []
        # Can the record's feature be written from its line (geo.build.attacks.AttackLayer)? Its
        # properties are then its own (but the place and the derived keys, which it lacks), and
        # their types pass the attacks schema, so the feature needs no parsing to be checked.
        self.plain: list[bool] = []
        # For a plain record: its values of HEAD_KEYS and of FIGURE_KEYS (else None), and the
        # (publication, date) of the sources it cites that are no dataset's (what the layer's
        # `publications` lists; usually none: None)
        self.heads: list[tuple[Any, ...] | None] = []
        self.figures: list[tuple[Any, ...] | None] = []
        self.cites: list[tuple[tuple[str, str], ...] | None] = []
        self._shared: dict[Any, Any] = {}
        self._judged: dict[tuple[type, ...], bool] = {}

    def __len__(self) -> int:
        return len(self.items)

    def columns(self) -> dict[str, list[Any]]:
        """Every record's item and columns (COLUMNS), as from_columns takes them."""
        return {name: getattr(self, name) for name in COLUMNS}

    @classmethod
    def from_columns(cls, columns: dict[str, list[Any]]) -> "Records":
        table = cls()
        for name in COLUMNS:
            setattr(table, name, columns[name])
        return table

    @classmethod
    def from_dicts(cls, records: Iterable[dict[str, Any]]) -> "Records":
        table = cls()
        for record in records:
            table._add(record, record)
        return table

    @classmethod
    def from_lines(cls, lines: Iterable[bytes], upgrade: Any = None) -> "Records":
        """Records from JSON lines (blank lines skipped). `upgrade(record)` gives the record of the
        current schema (see geo.build.attacks.upgrade); a record it changes is encoded again.

        A line is kept as it is when it is what orjson.dumps writes: asked of each chunk's first
        line, since one build writes every line of a store's file the same way (a file written
        otherwise, by an older kpmap, is encoded again, the way this one writes it).

        A chunk whose records are all plain and current (as a store's are, once built) is
        decoded by msgspec into structs whose types are checked as they are read, and taken a
        column at a time (_add_plain); any other chunk is parsed a record at a time (_add)."""
        table = cls()
        lines = iter(lines)
        while chunk := [line for line in islice(lines, CHUNK) if line.strip()]:
            if table._add_plain(chunk):
                continue
            canonical = None  # are the lines as orjson writes them? asked of each chunk's first
            for line in chunk:
                record = orjson.loads(line)
                current = upgrade(record) if upgrade is not None else record
                if current is not record:
                    table._add(current, orjson.dumps(current))
                    continue
                line = line.rstrip(b"\r\n")
                if canonical is None:
                    canonical = orjson.dumps(record) == line
                table._add(record, line if canonical else orjson.dumps(record))
        return table

    def _add_plain(self, lines: list[bytes]) -> bool:
        """_add for lines whose records are all plain and current, a column at a time, without
        making a dict of each record: the same columns. False (nothing added) if any is not."""
        records = _decoded_plain(lines)
        if records is None:
            return False
        share = self._shared.setdefault
        first = lines[0].rstrip(b"\r\n")
        if orjson.dumps(orjson.loads(first)) == first:  # see from_lines: kept as they are
            self.items.extend([line.rstrip(b"\r\n") for line in lines])
        else:
            self.items.extend([orjson.dumps(orjson.loads(line)) for line in lines])
        self.plain.extend(repeat(True, len(records)))
        self.heads.extend([share(head, head) for head in map(_struct_heads, records)])
        self.figures.extend([(share(f[0], f[0]), *f[1:]) for f in map(_struct_figures, records)])
        publications = _dataset_publications()
        for record in records:  # as _add takes them (inline: a call per record took ~15% longer)
            cites = None
            for source in record.sources:
                publication = source.publication
                if publication and publication not in publications:
                    cites = (*(cites or ()), (publication, source.date or ""))
            self.cites.append(share(cites, cites) if cites else None)
        self.ids.extend([record.id for record in records])
        origins = [share(record.origin, record.origin) for record in records]
        self.origins.extend(origins)
        datasets = [named_dataset(record.dataset, record.origin) for record in records]
        self.datasets.extend([share(d, d) for d in datasets])
        releases = [record.release or UNKNOWN_RELEASE for record in records]
        self.releases.extend([share(r, r) for r in releases])
        self.lon.extend([record.lon for record in records])
        self.lat.extend([record.lat for record in records])
        self.precision.extend([record.geo_precision for record in records])
        unset = msgspec.UNSET
        self.places.extend(
            [
                (
                    ABSENT if d is unset else share(d, d) if d is not None else None,
                    ABSENT if t is unset else share(t, t) if t is not None else None,
                    ABSENT if km is unset else km,
                )
                for d, t, km in map(_struct_place, records)
            ]
        )
        self.links.extend(
            [
                self._link(origin, _link_keys(record)) if origin in ORIGIN_RANK else None
                for record, origin in zip(records, origins, strict=True)
            ]
        )
        return True

    def _add(self, record: dict[str, Any], item: bytes | dict[str, Any]) -> None:
        share = self._shared.setdefault
        plain = type(item) is bytes and self._plain(record)
        self.plain.append(plain)
        if plain:  # its types are the schema's: every value is there, and hashable
            head = _heads(record)
            figures = _figures(record)
            self.heads.append(share(head, head))
            self.figures.append((share(figures[0], figures[0]), *figures[1:]))
        else:
            self.heads.append(None)
            self.figures.append(None)
        cites = None
        for source in record.get("sources") or ():
            if type(source) is not dict:
                continue
            publication = source.get("publication") or ""
            if publication and publication not in _dataset_publications():
                cites = (*(cites or ()), (publication, source.get("date") or ""))
        self.cites.append(share(cites, cites) if cites else None)
        self.items.append(item)
        self.ids.append(record["id"])
        origin = record["origin"]
        origin = share(origin, origin)
        self.origins.append(origin)
        dataset, release = dataset_of(record), release_of(record)
        self.datasets.append(share(dataset, dataset))
        self.releases.append(share(release, release))
        self.lon.append(record["lon"])
        self.lat.append(record["lat"])
        self.precision.append(record["geo_precision"])
        get = record.get
        district, tehsil = get("district", ABSENT), get("tehsil", ABSENT)
        if type(district) is str:
            district = share(district, district)
        if type(tehsil) is str:
            tehsil = share(tehsil, tehsil)
        self.places.append((district, tehsil, get("border_sliver_km", ABSENT)))
        self.links.append(self._link(origin, record))

    def _link(self, origin: str, record: dict[str, Any]) -> tuple[int, int, frozenset[str]] | None:
        """What `links` holds of a record from `origin` (date, date_end, actor and parties)."""
        if origin not in ORIGIN_RANK:
            return None
        try:
            start, end = span(record)
        except (ValueError, TypeError, KeyError):
            return None  # read again, to raise, if the record is ever a candidate
        groups = groups_of(record)
        return start, end, self._shared.setdefault(groups, groups)

    def _plain(self, record: dict[str, Any]) -> bool:
        """See `plain`: the record lacks the derived keys, and the types of its properties
        (those it keeps in the feature) are all the attacks schema allows."""
        if not record.keys().isdisjoint(DERIVED_KEYS) or type(record.get("id")) is not str:
            return False
        lon, lat = record.get("lon"), record.get("lat")
        if type(lon) not in (float, int) or type(lat) not in (float, int):
            return False
        schema = _kept_schema()
        try:  # every key there (as importers write records): one C call
            types = tuple(map(type, _kept_values()(record)))
        except KeyError:
            types = tuple(map(type, map(record.get, schema, repeat(ABSENT))))
        good = self._judged.get(types)
        if good is None:
            good = self._judged[types] = all(
                t in allowed for t, allowed in zip(types, schema.values(), strict=True)
            )
        return good

    def record(self, i: int) -> dict[str, Any]:
        """Record i as a dict (parsed anew from its line: the caller may change it)."""
        item = self._item(i)
        return orjson.loads(item) if isinstance(item, bytes) else item

    def line(self, i: int) -> bytes:
        """Record i's JSON line (without the newline)."""
        item = self._item(i)
        return item if isinstance(item, bytes) else orjson.dumps(item)

    def let_go(self, positions: Iterable[int]) -> None:
        """Free the records at `positions` (their features are written); reading one again
        raises. A million lines are a third of a build's memory."""
        for i in positions:
            self.items[i] = None
        give_back_freed_memory()

    def _item(self, i: int) -> bytes | dict[str, Any]:
        item = self.items[i]
        if item is None:
            raise AssertionError(f"record {i} was let go (Records.let_go) and read again")
        return item

    def lines(self) -> Iterator[bytes]:
        return (self.line(i) for i in range(len(self)))

    def take(self, positions: Iterable[int]) -> "Records":
        """The records at `positions`, in that order."""
        positions = list(positions)
        table = Records()
        table._shared = self._shared
        table._judged = self._judged
        for name in COLUMNS:
            column = getattr(self, name)
            setattr(table, name, [column[p] for p in positions])
        return table

    def extend(self, other: "Records") -> None:
        for name in COLUMNS:
            getattr(self, name).extend(getattr(other, name))

    def set_place(self, i: int, place: tuple[Any, Any, Any]) -> None:
        """Give record i its district, tehsil and border_sliver_km (in that order, as
        geo.build.attacks.place does). A line is encoded again only if that changes it."""
        item = self._item(i)
        if isinstance(item, dict):  # a dict is changed in place, as the caller's own record
            for key, value in zip(PLACE_KEYS, place, strict=True):
                item[key] = value
        elif not all(_same(a, b) for a, b in zip(self.places[i], place, strict=True)):
            # (a plain record stays plain: the place is not among the types it was judged by)
            record = orjson.loads(item)
            for key, value in zip(PLACE_KEYS, place, strict=True):
                record[key] = value
            self.items[i] = orjson.dumps(record)
        self.places[i] = place

    def set_places(self, positions: list[int], places: list[tuple[Any, Any, Any]]) -> None:
        """set_place for the records at `positions`, in bulk: a line whose place is already the
        one given (a store built before) is left as it is, without a call per record."""
        held, items = self.places, self.items
        for i, place in zip(positions, places, strict=True):
            old = held[i]
            # Equal tuples of a line's place are written alike but for the distance (0 == 0.0):
            # the names are str or None, the distance a float or None
            if old != place or type(items[i]) is not bytes or type(old[2]) is not type(place[2]):
                self.set_place(i, place)

    def candidate(self, i: int, position: int) -> Candidate | None:
        """Record i, at `position` among the records sorted by id, as geo.build.links compares
        it (None when it cannot link): geo.build.links.candidate without parsing the record."""
        if self.origins[i] not in ORIGIN_RANK:
            return None
        link = self.links[i]
        if link is None:
            start, end = span(self.record(i))  # raises what links.candidate would
            link = (start, end, groups_of(self.record(i)))
        start, end, groups = link
        if end - start >= MAX_SPAN_DAYS:
            return None
        return Candidate(position, self.origins[i], self.lon[i], self.lat[i], start, end, groups)


COLUMNS = (
    "items",
    "ids",
    "origins",
    "datasets",
    "releases",
    "lon",
    "lat",
    "precision",
    "places",
    "links",
    "plain",
    "heads",
    "figures",
    "cites",
)


@cache
def _kept_schema() -> dict[str, tuple[type, ...]]:
    """The attacks schema's properties a record's feature takes from the record as it is."""
    from geo.store.schemas import LAYERS

    skipped = {"id", *PLACE_KEYS, *DERIVED_KEYS}
    return {k: t for k, t in LAYERS["attacks"].properties.items() if k not in skipped}


@cache
def _kept_values() -> itemgetter:
    """The values of _kept_schema's keys of a record that has them all."""
    return itemgetter(*_kept_schema())


@cache
def _dataset_publications() -> frozenset[str]:
    """The datasets' publications (ACLED, ...): the layer's sources credit them, not its
    `publications` (see geo.build.pipeline._publications)."""
    from geo.licences import read_datasets

    return frozenset(d.publication for d in read_datasets().values() if d.publication)


class _Source(msgspec.Struct, frozen=True, gc=False):
    """What Records reads of a record's source (see _add: the publications it cites). Only
    text: a source with other values is left to _add."""

    publication: str | None = None
    date: str | None = None


# An integer orjson reads as an int and msgspec can bound (orjson reads past 64 bits as a float)
_INT = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
# The annotation that takes exactly the JSON values of these Python types, as orjson reads them
_TYPED = {str: str, int: _INT, bool: bool, list: list, dict: dict, type(None): type(None)}


@cache
def _plain_decoder() -> msgspec.json.Decoder | None:
    """A decoder that reads a line into a struct only if its record is plain (see Records.plain)
    and current (attacks.upgrade leaves it as it is): the types of _kept_schema's properties
    checked by msgspec as it decodes, the derived keys absent. Any other line fails to decode.
    None if the schema has a type this cannot check exactly."""
    fields: list[Any] = [("id", str), ("lon", _INT | float), ("lat", _INT | float)]
    for key, allowed in _kept_schema().items():
        if not all(t in _TYPED for t in allowed):
            return None
        typed = reduce(operator.or_, (_TYPED[t] for t in allowed))
        fields.append((key, list[_Source] if key == "sources" else typed))
    fields += [
        ("district", str | None | msgspec.UnsetType, msgspec.UNSET),
        ("tehsil", str | None | msgspec.UnsetType, msgspec.UNSET),
        ("border_sliver_km", Any, msgspec.UNSET),
    ]
    fields += [(key, msgspec.UnsetType, msgspec.UNSET) for key in DERIVED_KEYS]
    return msgspec.json.Decoder(msgspec.defstruct("PlainRecord", fields, gc=False))


def _decoded_plain(lines: list[bytes]) -> list[Any] | None:
    """The lines' records decoded by _plain_decoder, or None if any one is not plain."""
    decoder = _plain_decoder()
    if decoder is None:
        return None
    decode = decoder.decode
    try:
        return [decode(line) for line in lines]
    except msgspec.DecodeError:
        return None


def _link_keys(record: Any) -> dict[str, Any]:
    """What Records._link reads of a decoded record (_plain_decoder's struct)."""
    return {
        "date": record.date,
        "date_end": record.date_end,
        "actor": record.actor,
        "parties": record.parties,
    }


_struct_heads = attrgetter(*HEAD_KEYS)
_struct_figures = attrgetter(*FIGURE_KEYS)
_struct_place = attrgetter(*PLACE_KEYS)


def give_back_freed_memory() -> None:
    """Give the freed heap back to the system. glibc keeps what freed records took for reuse
    (1.3 GB once a build's million are written), while the build goes on with other work and
    other processes: without this, it would hold it until it ends."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc's; other C libraries lack it
    if trim is not None:
        trim(0)


def _same(a: Any, b: Any) -> bool:
    """Would the two values be written alike? (0 == 0.0, but they are written differently.)"""
    return a is b or (type(a) is type(b) and a == b)
