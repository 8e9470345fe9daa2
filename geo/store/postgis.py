"""The store in PostgreSQL/PostGIS: `publish` loads a built store folder into a database, and
`PostGISStore` serves it through the same Layer protocol as the file store.

    publish("data/store", "postgresql://kpmap@db/kpmap")      # kpmap publish
    store = PostGISStore.open("postgresql://kpmap@db/kpmap")   # KPMAP_STORE=postgresql://...
    store.query("attacks", bbox=(70, 33, 72, 35), start="2024", actor="ISKP")

In the database, schema `kpmap` holds the control tables: `kpmap.versions` (one row per
published version: its manifest, facts and layer facts, and the schema that holds its tables)
and `kpmap.current` (one row: the version served). Each version lives in a schema of its own,
`kpmap_<version>`, with one table per layer: `pos` (the feature's position, as the file store
numbers it), `id`, `geom` (SRID 4326, GiST), `x`/`y` for points, each filterable property as its
text and its canonical form `<name>__key` (B-tree), the numeric properties, and `first_day`/
`last_day` for layers with time (B-tree; for points, `by_year` instead: see ByYear). The table
stays narrow: `<layer>_features` holds each feature's GeoJSON exactly as the file store holds
it, by position, and `<layer>_ids` maps every id and linked record's id to its position.

A publish is one transaction: the new schema is loaded and `kpmap.current` switched before it
commits, so a reader sees the old version or the new one, never a mix, and a publish that fails
leaves the database as it was. A store object is pinned to the version it opened (its queries
name that version's schema); `current_version(url)` tells a server when to open the new one.
"""

import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import shapely

from geo.errors import InvalidQuery, KpmapError, StoreNotFound
from geo.store.files import (
    Store,
    _canonical,
    _date_range,
    parse_bbox,
    parse_filter,
)
from geo.store.layer import Bounds, Layer
from geo.store.schemas import LAYERS, STORE_FORMAT, LayerSchema, validate_store

log = logging.getLogger(__name__)

CONTROL = "kpmap"  # the schema of the control tables
URL_SCHEMES = ("postgresql://", "postgres://")
# Features fetched in one round trip when callers walk a selection one position at a time
# (downloads): FIRST_READ, then three times as many each time the walk goes on, up to
# READ_AHEAD, ~2,000 features a round trip. (An OGC page, whose positions are known, is read
# in one query by `prefetch`, whatever its size.)
FIRST_READ = 100
READ_AHEAD = 2000
# Past FIRST_READ + 3 FIRST_READ + ... + 2 READ_AHEAD positions, a walk (a download) reads the
# rest of its selection from one streamed query, STREAM_ROWS rows a chunk.
STREAM_ROWS = 1000
# Layers this small keep their parsed features once read (districts, tehsils, the border).
SMALL_LAYER = 20_000
DEFAULT_POOL_SIZE = 10
# A position and the ctid of its feature's row (tidsend: block, offset), packed.
TID_ROW = np.dtype([("pos", ">i4"), ("block", ">u4"), ("offset", ">u2")])
# How a version's tables are laid out (2: `<layer>_features` apart, `by_year`, rows in
# place-and-time order). A reader opens only its own layout; `publish` loads a version an
# older kpmap loaded again.
LAYOUT = 2


class PublishError(KpmapError):
    """A store that cannot be published, or a database that refused it; nothing was changed."""

    status = 500
    code = "publish-failed"


def is_database_url(location: Any) -> bool:
    """True for a postgresql:// (or postgres://) URL, which names a database, not a folder."""
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs.

    >>> redact("postgresql://kpmap:secret@db:5432/kpmap")
    'postgresql://kpmap:***@db:5432/kpmap'
    """
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


# --- connections ---------------------------------------------------------------------------

_pools: dict[tuple[str, int], Any] = {}
_pools_lock = threading.Lock()


def pool(url: str, size: int = DEFAULT_POOL_SIZE):
    """This process's connection pool for `url` (psycopg_pool), made on first use.

    Keyed by process id too: gunicorn forks workers after the app opened the store, and a
    connection (or the pool's threads) must never be shared across a fork.
    """
    from psycopg_pool import ConnectionPool, PoolTimeout

    key = (url, os.getpid())
    with _pools_lock:
        found = _pools.get(key)
        if found is None:
            found = ConnectionPool(
                url,
                min_size=1,
                max_size=max(1, int(size)),
                kwargs={"autocommit": True},
                open=True,
                name=f"kpmap-{len(_pools)}",
            )
            try:
                found.wait(timeout=15)
            except PoolTimeout:
                found.close()
                raise StoreNotFound(
                    f"cannot connect to the database {redact(url)} (is the server running and "
                    "the URL right? postgresql://user:password@host:port/dbname)"
                ) from None
            _pools[key] = found
    return found


def close_pools(url: str | None = None) -> None:
    """Close this process's pools and stop its listeners, or only those of `url` (tests, and
    a clean shutdown)."""
    with _pools_lock:
        for key in [k for k in _listeners if k[1] == os.getpid() and url in (None, k[0])]:
            _listeners.pop(key).stop()
        for key in [k for k in _pools if k[1] == os.getpid() and url in (None, k[0])]:
            _pools.pop(key).close()


def current_version(url: str) -> str | None:
    """The version `kpmap.current` names, None when nothing is published (see
    geo.store.current_version): what this process's listener last heard (no query at all),
    or, while it is not listening (starting, reconnecting, on a standby), one indexed row."""
    listener = _listener(url)
    if listener.listening.is_set():
        return listener.version
    with pool(url).connection() as conn:
        return _read_current(conn)


def _read_current(conn: Any) -> str | None:
    import psycopg

    try:
        row = conn.execute(f"SELECT version FROM {CONTROL}.current").fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return row[0] if row else None


# --- noticing a new version ------------------------------------------------------------------

CHANNEL = "kpmap_version"  # publish NOTIFYs it when (and only if) its transaction commits
LISTENER_NAME = "kpmap-listener"  # its connections' application_name (pg_stat_activity)
# Seconds between a listener's looks at the version row itself, as well as listening: a
# connection that died without a word (a network cut) is found out, and what it missed read.
LISTEN_CHECK = 30.0

_listeners: dict[tuple[str, int], "_Listener"] = {}


def _listener(url: str) -> "_Listener":
    """This process's listener for `url`, started on first use (per process id, as pools)."""
    key = (url, os.getpid())
    with _pools_lock:
        found = _listeners.get(key)
        if found is None:
            found = _listeners[key] = _Listener(url)
    return found


class _Listener:
    """`LISTEN kpmap_version` on a connection of its own, in a daemon thread (a greenlet
    under gevent): the database's current version, known without asking for it.

    `listening` is set while its `version` can be trusted: after LISTEN and a first read of
    the row; cleared while the connection is lost (it reconnects, waiting 1 s, then longer,
    up to 30 s). A standby (a read replica) never hears a NOTIFY, which is not replicated:
    there the listener stops at once, and callers read the row (one indexed row a check).
    """

    def __init__(self, url: str):
        self.url = url
        self.version: str | None = None
        self.listening = threading.Event()
        self.standby = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kpmap-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.listening.clear()

    def _run(self) -> None:
        import psycopg

        delay = 1.0
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self.url, autocommit=True, application_name=LISTENER_NAME
                ) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    if row and row[0]:
                        self.standby = True
                        return
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.version = _read_current(conn)  # after LISTEN: nothing falls between
                    self.listening.set()
                    delay = 1.0
                    while not self._stop.is_set():
                        # Whatever woke it (a NOTIFY, or LISTEN_CHECK seconds), read the row:
                        # the truth, committed before the notice was sent.
                        for _ in conn.notifies(timeout=LISTEN_CHECK, stop_after=1):
                            pass
                        self.version = _read_current(conn)
            except Exception as error:  # noqa: BLE001 - a lost connection, a restart: retry
                if not self._stop.is_set():
                    log.warning(
                        "kpmap: not listening to %s for new versions (%s); asking each time "
                        "until it reconnects",
                        redact(self.url),
                        f"{type(error).__name__}: {error}".splitlines()[0],
                    )
            finally:
                self.listening.clear()
            self._stop.wait(delay)
            delay = min(delay * 2, 30.0)


# --- publish -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    version: str
    schema: str
    counts: dict[str, int]
    seconds: float
    loaded: bool  # False when the version was in the database already and only made current
    dropped: tuple[str, ...] = ()  # versions removed (see `keep`)


def version_schema(version: str) -> str:
    """The schema that holds a version's tables."""
    if not re.fullmatch(r"[0-9a-f]{16}", version):
        raise StoreNotFound(f"{version!r} is not a store version (16 hex digits)")
    return f"kpmap_{version}"


def publish(store_dir: str | Path, url: str, keep: int = 2, validate: bool = False) -> Published:
    """Load the built store at `store_dir` into the database at `url` and make it current.

    The store is checked first (geo.store.schemas.validate_store; every problem is listed):
    its manifest and every file against the hash its build recorded (the build validated the
    features it wrote), or, with `validate`, every feature too (a minute for a million).
    A version already in the database is only made current again (a roll-back is a publish of
    the older folder). Of the versions that were current, the `keep` latest are kept (the
    current one included; at least 2, so that servers still reading the one before finish
    their requests); the others are dropped.
    Raises PublishError; on any error the database is left as it was.
    """
    import psycopg
    from psycopg import sql

    started = time.perf_counter()
    store_dir = Path(store_dir)
    if keep < 2:
        raise PublishError(f"keep={keep}: at least 2 versions are kept (the current and the last)")
    problems = validate_store(store_dir, features=validate)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise PublishError(
            f"the store at {store_dir} has {len(problems)} problem(s); fix or rebuild it "
            f"(`kpmap build`) before publishing:\n  {shown}{more}"
        )
    store = Store.open(store_dir)
    version, schema = store.version, version_schema(store.version)
    try:
        with psycopg.connect(url) as conn:  # one transaction: committed at the end, or nothing
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('kpmap.publish'))")
            _ensure_control(conn)
            found = conn.execute(
                f"SELECT layout FROM {CONTROL}.versions WHERE version = %s", (version,)
            ).fetchone()
            # A version an older kpmap loaded (another layout) is loaded again, in place.
            known = found is not None and found[0] == LAYOUT
            counts = {name: len(store.layer(name)) for name in store.layer_names}
            if not known:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
                _load_version(conn, store, schema)
            conn.execute(
                f"INSERT INTO {CONTROL}.current (version) VALUES (%s) ON CONFLICT (singleton) "
                "DO UPDATE SET version = excluded.version, switched_at = now()",
                (version,),
            )
            conn.execute(
                f"UPDATE {CONTROL}.versions SET current_at = clock_timestamp() WHERE version = %s",
                (version,),
            )
            dropped = _prune(conn, keep)
            # LISTENing servers hear of it when (and only if) this transaction commits.
            conn.execute("SELECT pg_notify('kpmap_version', %s)", (version,))
    except psycopg.Error as exc:
        raise PublishError(
            f"publishing {store_dir} to {redact(url)} failed, and nothing was changed: {exc}"
        ) from None
    # This process knows at once (its listener hears the NOTIFY a moment later).
    listener = _listeners.get((url, os.getpid()))
    if listener is not None and listener.listening.is_set():
        listener.version = version
    return Published(
        version, schema, counts, time.perf_counter() - started, not known, tuple(dropped)
    )


def _ensure_control(conn) -> None:
    conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {CONTROL}")
    # json, not jsonb: jsonb reorders keys, and the manifest's order is the layers' order.
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {CONTROL}.versions (
            version text PRIMARY KEY,
            schema_name text NOT NULL UNIQUE,
            format text NOT NULL,
            manifest json NOT NULL,
            facts json NOT NULL,
            layers json NOT NULL,
            published_at timestamptz NOT NULL DEFAULT now(),
            -- when it was last made current: the versions kept are the latest current ones
            current_at timestamptz NOT NULL DEFAULT clock_timestamp())"""
    )
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {CONTROL}.current (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            version text NOT NULL REFERENCES {CONTROL}.versions,
            switched_at timestamptz NOT NULL DEFAULT now())"""
    )
    # Versions loaded before `layout` existed have the first layout.
    conn.execute(
        f"ALTER TABLE {CONTROL}.versions ADD COLUMN IF NOT EXISTS layout integer NOT NULL DEFAULT 1"
    )


def _prune(conn, keep: int) -> list[str]:
    rows = conn.execute(
        f"""SELECT v.version, v.schema_name FROM {CONTROL}.versions v
            WHERE v.version <> (SELECT version FROM {CONTROL}.current)
            ORDER BY v.current_at DESC, v.version OFFSET %s""",
        (keep - 1,),
    ).fetchall()
    for version, schema in rows:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f"DELETE FROM {CONTROL}.versions WHERE version = %s", (version,))
    return [v for v, _ in rows]


@dataclass(frozen=True)
class _Columns:
    """A layer table's columns, from its schema."""

    point: bool
    texts: tuple[str, ...]  # filterable properties but "id": `<name>` and `<name>__key`
    numbers: tuple[str, ...]
    time: bool

    @classmethod
    def of(cls, schema: LayerSchema) -> "_Columns":
        texts = tuple(k for k in schema.filterable if k != "id")
        clash = set(texts) & set(schema.numbers)
        if clash:  # one column each: a property cannot be both
            raise PublishError(f"{schema.name}: {sorted(clash)} are both filterable and numeric")
        return cls(schema.geometry_types == ("Point",), texts, schema.numbers, bool(schema.time))

    def names(self) -> list[str]:
        """The columns COPY fills (`by_year` is generated from them)."""
        names = ["pos", "id", "geom", *(["x", "y"] if self.point else [])]
        names += [n for k in self.texts for n in (k, f"{k}__key")]
        names += list(self.numbers)
        names += ["first_day", "last_day"] if self.time else []
        return [*names, "feature_tid"]


def _load_version(conn, store: Store, schema: str) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    layers: dict[str, dict[str, Any]] = {}
    for name in store.layer_names:
        layer = store.layer(name)
        by_year = _load_layer(conn, schema, name, layer)
        layers[name] = {"count": len(layer), "bounds": layer.bounds}
        if by_year is not None:
            layers[name]["by_year"] = by_year.__dict__
    conn.execute(
        f"""INSERT INTO {CONTROL}.versions
              (version, schema_name, format, manifest, facts, layers, layout)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (version) DO UPDATE SET
              schema_name = excluded.schema_name, format = excluded.format,
              manifest = excluded.manifest, facts = excluded.facts, layers = excluded.layers,
              layout = excluded.layout, published_at = now()""",
        (
            store.version,
            schema,
            store.manifest.get("format", STORE_FORMAT),
            orjson.dumps(store.manifest).decode(),
            orjson.dumps(store.facts).decode(),
            orjson.dumps(layers).decode(),
            LAYOUT,
        ),
    )


def _load_layer(conn, schema: str, name: str, layer: Layer) -> "ByYear | None":
    from psycopg import sql

    cols = _Columns.of(layer.schema)
    table = sql.Identifier(schema, name)
    types = {"pos": "integer NOT NULL", "id": "text NOT NULL", "geom": "geometry(Geometry, 4326)"}
    types |= {"x": "float8", "y": "float8", "first_day": "date", "last_day": "date"}
    types |= {k: "float8" for k in cols.numbers} | {"feature_tid": "tid NOT NULL"}
    columns: list[Any] = [
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(types.get(c, "text")))
        for c in cols.names()
    ]
    by_year = ByYear.of(layer) if cols.point and cols.time else None
    if by_year is not None:
        columns.append(sql.SQL(f"by_year point GENERATED ALWAYS AS ({by_year.sql()}) STORED"))
    tids = _load_features(conn, schema, name, layer)
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(columns)))
    # FREEZE: the rows are written frozen and all-visible (the table is new in this
    # transaction), so the first readers neither dirty every page setting hint bits nor wait
    # for a VACUUM, which a transaction cannot run.
    copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FREEZE)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, cols.names()))
    )
    with conn.cursor().copy(copy) as out:
        for row in _rows(layer, cols, tids, by_year):
            out.write_row(row)
    # Indexes after the rows: one sort each instead of a million insertions (GiST indexes of
    # points are built sorted, packed full).
    indexes = [("pos", "btree", True), ("geom", "gist", False)]
    indexes += [(f"{k}__key", "btree", False) for k in cols.texts]
    if by_year is not None:  # time goes through by_year, whose index finds a year at once
        indexes.append(("by_year", "gist", False))
    elif cols.time:
        indexes += [("first_day", "btree", False), ("last_day", "btree", False)]
    for column, method, unique in indexes:
        conn.execute(
            sql.SQL("CREATE {} INDEX ON {} USING {} ({})").format(
                sql.SQL("UNIQUE" if unique else ""),
                table,
                sql.SQL(method),
                sql.Identifier(column),
            )
        )
    _load_ids(conn, schema, name, layer)
    conn.execute(sql.SQL("ANALYZE {}").format(table))
    return by_year


@dataclass(frozen=True)
class ByYear:
    """Place and time in one plane, so that one 2-D index finds a bbox in a time window.

    `by_year` (a PostgreSQL point, GiST-indexed) is each point moved `width` degrees east for
    every year after `first_year` in which its time lies: the years lie side by side, `width`
    apart (wider than the layer, so they never overlap), and a bbox in one year is one box of
    that plane. A point whose time runs from one year into another (a range of days around a
    new year) lies in a strip of its own after the last year, which every query looks at too.
    A 1-degree box holds a tenth of a million attacks, a year half of them, both together a
    hundredth: a 2-D index, or a day index, finds far more rows than the query wants; this
    one finds those it wants, on a few pages (rows are written strip by strip, each along a
    Z-order curve: see _physical_order). The days and the bbox themselves are then checked on
    the rows (x, y, first_day, last_day).
    """

    x0: float
    width: float
    first_year: int
    last_year: int
    spanning: bool  # whether any point's time runs across a new year

    @classmethod
    def of(cls, layer: Layer) -> "ByYear | None":
        spans = layer.time_spans()
        if not len(layer) or spans is None:
            return None
        xy = layer.points()
        x0 = float(np.floor(xy[:, 0].min()))
        width = float(np.floor(xy[:, 0].max()) - x0 + 2)  # >= 1 degree between two years
        first, last = (_years(days) for days in spans)
        spanning = bool((first != last).any())
        return cls(x0, width, int(first.min()), int(first.max()), spanning)

    def strips(self, spans: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Each point's strip: its year's (0 for first_year), or the strip after the last
        year's for a time across a new year (as `sql` computes it)."""
        first, last = (_years(days) for days in spans)
        return np.where(first == last, first - self.first_year, self._across)

    @property
    def _across(self) -> int:
        return self.last_year - self.first_year + 1

    def sql(self) -> str:
        """The generated column's expression (numbers only: nothing to quote)."""
        year, last = "extract(year FROM first_day)", "extract(year FROM last_day)"
        strip = f"CASE WHEN {year} = {last} THEN {year} - {self.first_year} ELSE {self._across} END"
        return f"point(x - {self.x0!r} + {self.width!r} * ({strip})::float8, y)"

    def boxes(self, bbox: Bounds | None, lo: int | None, hi: int | None) -> str:
        """The boxes of `by_year` (a box[] literal) that hold the points in bbox (None: all)
        whose time may overlap days lo..hi (ordinals; None for no limit): one per year, and
        one in the strip of times across a new year."""
        first = self.first_year if lo is None else date.fromordinal(lo).year
        last = self.last_year if hi is None else date.fromordinal(hi).year
        strips = list(
            range(
                max(first, self.first_year) - self.first_year,
                min(last, self.last_year) - self.first_year + 1,
            )
        )
        if self.spanning:
            strips.append(self._across)
        # Within the layer's strip of a year; a hair wider than bbox, which the rows' own x
        # and y then decide exactly (the shift's rounding must not lose a point on an edge).
        left, bottom, right, top = -0.5, -90.0, self.width - 0.5, 90.0
        if bbox is not None:
            left = max(bbox[0] - self.x0, left) - 1e-9
            right = min(bbox[2] - self.x0, right) + 1e-9
            bottom, top = bbox[1] - 1e-9, bbox[3] + 1e-9
        if left > right:
            return "{}"
        shifts = [self.width * k for k in strips]
        return (
            "{"
            + ";".join(f"({left + s!r},{bottom!r}),({right + s!r},{top!r})" for s in shifts)
            + "}"
        )


def _years(days: np.ndarray) -> np.ndarray:
    """The years of day ordinals (Python's: 1970-01-01 is 719163, numpy's day 0)."""
    return (days - 719163).astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def _rows(
    layer: Layer, cols: _Columns, tids: np.ndarray, by_year: "ByYear | None"
) -> Iterator[tuple]:
    """The layer's rows for COPY, in the order of `_physical_order`: built column by column as
    arrays (reordered, then zipped), so a million features are walked once per column in C
    rather than once per value in Python."""
    n = len(layer)
    geometries = shapely.set_srid(layer.geometries(), 4326)
    columns: list[np.ndarray] = [
        np.arange(n),
        np.asarray(layer.ids, dtype=object),
        shapely.to_wkb(geometries, hex=True, include_srid=True),
    ]
    if cols.point:
        xy = layer.points()
        columns += [xy[:, 0], xy[:, 1]]
    for key in cols.texts:
        codes, values = layer.column(key)
        keys = np.array([_canonical(v) for v in values.tolist()], dtype=object)
        columns += [values.astype(object)[codes], keys[codes]]
    for key in cols.numbers:
        number = layer.number(key).astype(object)
        number[np.isnan(layer.number(key))] = None
        columns.append(number)
    spans = layer.time_spans() if cols.time else None
    if spans is not None:
        for days in spans:
            distinct, codes = np.unique(days, return_inverse=True)
            columns.append(np.array([date.fromordinal(d) for d in distinct.tolist()])[codes])
    columns.append(tids)
    order = _physical_order(layer, cols, by_year)
    return zip(*(c[order].tolist() for c in columns), strict=True)


def _physical_order(layer: Layer, cols: _Columns, by_year: ByYear | None) -> np.ndarray:
    """The order rows are written in, so that what a query asks for together lies together:
    a point layer along a Z-order curve (Morton code) of x, y, with time by its strip of
    by_year first, so a 1-degree box in one year is a few runs of pages, not a row on every
    page; other layers (a few hundred features) in position order."""
    n = len(layer)
    if not cols.point or n == 0:
        return np.arange(n)
    xy = layer.points()
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    cells = (1 << 16) - 1
    ix, iy = (np.rint((xy - lo) / np.maximum(hi - lo, 1e-12) * cells).astype(np.uint64)).T
    keys = [_spread_bits(ix) | (_spread_bits(iy) << np.uint64(1))]
    spans = layer.time_spans()
    if by_year is not None and spans is not None:
        keys.append(by_year.strips(spans))
    return np.lexsort(keys)  # the last key is the first sorted on


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """v's 16 low bits, a zero bit put between each (half of a Morton code)."""
    v = v & np.uint64(0xFFFF)
    for shift, mask in ((8, 0x00FF00FF), (4, 0x0F0F0F0F), (2, 0x33333333), (1, 0x55555555)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def _load_features(conn, schema: str, name: str, layer: Layer) -> np.ndarray:
    """`<layer>_features`: each feature's GeoJSON, exactly as the file store holds it, in
    position order (as a download reads them), apart from the layer's table, which stays
    narrow (a few hundred bytes a row) so that a query's rows lie on few pages. Returns where
    each feature's row is (its ctid, as text), for the layer's table to point at it."""
    from psycopg import sql

    table = sql.Identifier(schema, f"{name}_features")
    conn.execute(
        sql.SQL("CREATE TABLE {} (pos integer NOT NULL, feature text NOT NULL)").format(table)
    )
    copy = sql.SQL("COPY {} (pos, feature) FROM STDIN WITH (FREEZE)").format(table)
    with conn.cursor().copy(copy) as out:
        # COPY's text format written directly (a row a line, tab between the columns), ~5,000
        # rows a write: the GeoJSON only has its backslashes doubled (its strings hold no raw
        # tab or line break, but a hand-made store might: those are escaped too).
        lines: list[bytes] = []
        for i in range(len(layer)):
            feature = layer.feature_bytes(i)
            if b"\\" in feature:
                feature = feature.replace(b"\\", b"\\\\")
            if b"\n" in feature or b"\r" in feature or b"\t" in feature:
                feature = feature.replace(b"\n", b"\\n").replace(b"\r", b"\\r")
                feature = feature.replace(b"\t", b"\\t")
            lines.append(b"%d\t%s\n" % (i, feature))
            if len(lines) == 5000:
                out.write(b"".join(lines))
                lines.clear()
        out.write(b"".join(lines))
    conn.execute(sql.SQL("CREATE UNIQUE INDEX ON {} (pos)").format(table))
    (data,) = conn.execute(
        sql.SQL("SELECT string_agg(int4send(pos) || tidsend(ctid), ''::bytea) FROM {}").format(
            table
        ),
        binary=True,
    ).fetchone()
    rows = np.frombuffer(data or b"", dtype=TID_ROW)
    tids = np.empty(len(layer), dtype=object)
    tids[rows["pos"]] = [
        f"({b},{o})" for b, o in zip(rows["block"].tolist(), rows["offset"].tolist(), strict=True)
    ]
    return tids


def _load_ids(conn, schema: str, name: str, layer: Layer) -> None:
    """`<layer>_ids`: every id a feature answers to (its own, and each linked record's) with its
    position, exactly as the file store's lookup holds them (a feature's own id wins)."""
    from psycopg import sql

    table = sql.Identifier(schema, f"{name}_ids")
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (id text NOT NULL, key text NOT NULL, pos integer NOT NULL)"
        ).format(table)
    )
    by_id = getattr(layer, "by_id", None)
    if by_id is None:  # a layer that keeps no aliases answers to its own ids only
        by_id = dict(zip(layer.ids.tolist(), range(len(layer)), strict=True))
    copy = sql.SQL("COPY {} (id, key, pos) FROM STDIN WITH (FREEZE)").format(table)
    with conn.cursor().copy(copy) as out:
        for fid, pos in by_id.items():
            out.write_row((fid, fid.strip().casefold(), pos))
    conn.execute(sql.SQL("CREATE UNIQUE INDEX ON {} (id)").format(table))
    conn.execute(sql.SQL("CREATE INDEX ON {} (key)").format(table))


# --- reading -------------------------------------------------------------------------------


class PostGISStore(Store):
    """A published store, pinned to the version that was current when it was opened.

    Store's query, select and feature work unchanged: they go through the layers.
    """

    def __init__(self, url: str, row: tuple, pool_size: int):
        version, schema, manifest, facts, layer_facts = row
        layers: dict[str, Layer] = {
            name: PostGISLayer(url, schema, LAYERS[name], **layer_facts[name])
            for name in manifest["layers"]
            if name in LAYERS and name in layer_facts
        }
        super().__init__(redact(url), manifest, layers, facts)
        if self.version != version:
            raise StoreNotFound(f"version {version} in {redact(url)} does not match its manifest")
        self.url = url
        self.schema = schema
        self.pool_size = pool_size

    @classmethod
    def open(cls, url: str, pool_size: int = DEFAULT_POOL_SIZE) -> "PostGISStore":  # type: ignore[override]
        """The version `kpmap.current` names; StoreNotFound when nothing is published."""
        import psycopg

        with pool(url, pool_size).connection() as conn:
            try:
                row = conn.execute(
                    f"""SELECT v.version, v.schema_name, v.manifest, v.facts, v.layers, v.format,
                          v.layout
                        FROM {CONTROL}.current c JOIN {CONTROL}.versions v USING (version)"""
                ).fetchone()
            except psycopg.errors.UndefinedTable:
                row = None
            except psycopg.errors.UndefinedColumn:  # no `layout`: published before it existed
                row = conn.execute(
                    f"""SELECT v.version, v.schema_name, v.manifest, v.facts, v.layers, v.format,
                          1 FROM {CONTROL}.current c JOIN {CONTROL}.versions v USING (version)"""
                ).fetchone()
        if row is None:
            raise StoreNotFound(
                f"nothing is published in {redact(url)} (run `kpmap publish --store DIR URL`)"
            )
        if row[5] != STORE_FORMAT:
            raise StoreNotFound(
                f"the store in {redact(url)} has format {row[5]!r}, and this kpmap reads "
                f"{STORE_FORMAT!r}: rebuild it with `kpmap build` and publish it again"
            )
        if row[6] != LAYOUT:
            raise StoreNotFound(
                f"version {row[0]} in {redact(url)} was published by another kpmap (table "
                f"layout {row[6]}, this one reads {LAYOUT}): publish it again with this one "
                "(`kpmap publish`)"
            )
        return cls(url, row[:5], pool_size)

    def current_version(self) -> str | None:
        """The version now current in the database (this store may be an older one)."""
        return current_version(self.url)


class _Stream:
    """The rest of a selection's features from `at` on, streamed by one query in position
    order (see PostGISLayer._stream_rows), taken a block at a time."""

    def __init__(self, layer: "PostGISLayer", selection: np.ndarray, at: int):
        self.selection, self.at = selection, at
        self.rows, self.exact = layer._stream_rows(selection[at:])

    def take(self, wanted: list[int]) -> dict[int, bytes]:
        """The features at `wanted`, the next positions of the selection."""
        if self.exact:  # the stream holds the selection's positions and no others
            block = dict(itertools.islice(self.rows, len(wanted)))
            if len(block) == len(wanted) and wanted[-1] in block:
                self.at += len(wanted)
                return block
            raise RuntimeError(f"positions {wanted[0]}-{wanted[-1]} were not streamed")
        block = {}
        for pos, data in self.rows:
            if pos == wanted[len(block)]:
                block[pos] = data
                if len(block) == len(wanted):
                    self.at += len(wanted)
                    return block
            elif pos > wanted[len(block)]:
                raise RuntimeError(f"position {wanted[len(block)]} was not streamed")
        raise RuntimeError("the stream ended early")

    def close(self) -> None:
        """Give the connection back: at once when every row was taken (the query ends as
        usual), else after psycopg cancels the query."""
        if self.at >= len(self.selection):
            for _ in self.rows:  # nothing is left but the query's end
                pass
        self.rows.close()


class PostGISLayer:
    """One layer's table (geo.store.layer.Layer): filters run as SQL on its indexes; the whole
    columns that the map's aggregates and tiles read are fetched once, on first use."""

    def __init__(
        self,
        url: str,
        schema: str,
        layer_schema: LayerSchema,
        count: int,
        bounds: Any,
        by_year: dict[str, Any] | None = None,
    ):
        from psycopg import sql

        self.schema = layer_schema
        self._url = url
        self._count = count
        self._bounds = tuple(bounds) if bounds else None
        self._cols = _Columns.of(layer_schema)
        self._by_year = ByYear(**by_year) if by_year else None
        self._table = sql.Identifier(schema, layer_schema.name)
        self._ids_table = sql.Identifier(schema, f"{layer_schema.name}_ids")
        self._features_table = sql.Identifier(schema, f"{layer_schema.name}_features")
        self._loaded: dict[str, Any] = {}
        self._lock = threading.RLock()  # a load may read another column
        self._ahead = threading.local()
        self._moved = False  # the features' rows are not where publish left them

    def __len__(self) -> int:
        return self._count

    @property
    def bounds(self) -> Bounds | None:
        return self._bounds

    def _query(self, query: Any, params: Sequence[Any] = ()) -> list[tuple]:
        import psycopg

        try:
            with pool(self._url).connection() as conn:
                return conn.execute(query, params, binary=True).fetchall()
        except psycopg.errors.UndefinedTable:
            raise StoreNotFound(
                f"this store's version ({self._table.as_string()}) is no longer in the "
                "database (a newer one was published since): open the store again"
            ) from None

    # -- select -------------------------------------------------------------------------

    def select(
        self,
        bbox: Sequence[float] | str | None = None,
        start: date | str | None = None,
        end: date | str | None = None,
        **filters: Any,
    ) -> np.ndarray:
        from psycopg import sql

        where, params = self._where(bbox, start, end, filters)
        tids = None
        if not where:
            positions = np.arange(self._count)
        else:
            # Each position with where its feature is (feature_tid), so that the features of
            # a page are read straight from their rows, without a lookup in an index each.
            query = sql.SQL(
                "SELECT string_agg(int4send(pos) || tidsend(feature_tid), ''::bytea) "
                "FROM {} WHERE {}"
            ).format(self._table, sql.SQL(" AND ").join(where))
            (data,) = self._query(query, params)[0]
            # Sorted here rather than in SQL: numpy sorts a million rows in a few ms.
            rows = np.frombuffer(data or b"", dtype=TID_ROW)
            unsorted = rows["pos"].astype(np.int64)
            order = np.argsort(unsorted)
            positions, tids = unsorted[order], rows[order]
        self._close_stream()
        self._ahead.selection, self._ahead.tids, self._ahead.end = positions, tids, None
        return positions

    def _where(
        self, bbox: Any, start: Any, end: Any, filters: dict[str, Any]
    ) -> tuple[list[Any], list[Any]]:
        """SQL conditions for a selection, checked in the file store's order with its errors."""
        from psycopg import sql

        where: list[Any] = []
        params: list[Any] = []
        box = parse_bbox(bbox) if bbox is not None else None
        lo = hi = None
        if start is not None or end is not None:
            if not self._cols.time:
                raise InvalidQuery(
                    f"layer {self.schema.name!r} has no time; a date filter is allowed only on: "
                    + ", ".join(n for n, s in LAYERS.items() if s.time)
                )
            lo = _date_range(start)[0] if start is not None else None
            hi = _date_range(end)[1] if end is not None else None
            if lo is not None and hi is not None and lo > hi:
                raise InvalidQuery(f"start {start} is after end {end}")
        if self._by_year is not None and (lo is not None or hi is not None):
            # Place and time in one index (see ByYear); the rows' days (below), x and y
            # decide exactly.
            where.append(sql.SQL("by_year <@ ANY(%s::box[])"))
            params.append(self._by_year.boxes(box, lo, hi))
        if box is not None:
            minx, miny, maxx, maxy = box
            # The GiST index compares float4 boxes (rounded outwards); x and y make it exact.
            exact = "x BETWEEN %s AND %s AND y BETWEEN %s AND %s"
            if self._by_year is not None and (lo is not None or hi is not None):
                where.append(sql.SQL(exact))
                params += [minx, maxx, miny, maxy]
            elif self._cols.point:
                where.append(sql.SQL(f"geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326) AND {exact}"))
                params += [minx, miny, maxx, maxy, minx, maxx, miny, maxy]
            else:
                where.append(sql.SQL("ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4326))"))
                params += [minx, miny, maxx, maxy]
        if hi is not None:
            where.append(sql.SQL("first_day <= %s"))
            params.append(date.fromordinal(hi))
        if lo is not None:
            where.append(sql.SQL("last_day >= %s"))
            params.append(date.fromordinal(lo))
        schema = self.schema
        for key, value in filters.items():
            kind, prop, wanted = parse_filter(schema, key, value)
            if kind == "range":
                where.append(sql.SQL("{} <= %s").format(sql.Identifier(prop)))
                params.append(wanted)
                continue
            wanted = sorted(wanted)
            if key == "id":
                where.append(
                    sql.SQL("pos IN (SELECT pos FROM {} WHERE key = ANY(%s))").format(
                        self._ids_table
                    )
                )
            else:
                where.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(f"{key}__key")))
            params.append(wanted)
        return where, params

    def position(self, feature_id: str) -> int | None:
        from psycopg import sql

        rows = self._query(
            sql.SQL("SELECT pos FROM {} WHERE id = %s").format(self._ids_table), (str(feature_id),)
        )
        return int(rows[0][0]) if rows else None

    # -- features -----------------------------------------------------------------------

    def feature_at(self, position: int) -> dict[str, Any]:
        if self._count <= SMALL_LAYER:
            return self._small_features()[position]
        return orjson.loads(self.feature_bytes(position))

    def _small_features(self) -> list[dict[str, Any]]:
        return self._once(
            "features",
            lambda: [orjson.loads(b) for b in self._fetch_features(range(self._count))],
        )

    def feature_bytes(self, position: int) -> bytes:
        ahead = self._ahead
        try:  # the common case, a million times a download: read ahead already
            return ahead.block[position]
        except (AttributeError, KeyError):
            pass
        position = int(position)
        wanted, tids = [position], None
        # Callers walk a selection a position at a time (downloads, OGC pages): fetch the
        # next positions of the last selection in the same round trip, more as the walk goes on.
        selection = getattr(ahead, "selection", None)
        if selection is not None and len(selection):
            at = int(np.searchsorted(selection, position))
            if at < len(selection) and selection[at] == position:
                walking = getattr(ahead, "end", None) == at
                size = min(ahead.size * 3, READ_AHEAD) if walking else FIRST_READ
                wanted = selection[at : at + size].tolist()
                streaming = walking and ahead.size == READ_AHEAD
                ahead.size, ahead.end = size, at + len(wanted)
                if streaming:  # a download: the rest of the selection in one query
                    block = self._streamed(selection, at, wanted)
                    if block is not None:
                        ahead.block = block
                        return block[position]
                if ahead.tids is not None:
                    tids = ahead.tids[at : at + size]
        block = dict(zip(wanted, self._fetch_features(wanted, tids), strict=True))
        ahead.block = block
        return block[position]

    def _streamed(self, selection: np.ndarray, at: int, wanted: list[int]) -> dict | None:
        """The features at `wanted` (selection[at:], the next of a walk) from this thread's
        stream of the selection's features, started if need be; None if it failed (the
        caller reads them the usual way)."""
        stream = getattr(self._ahead, "stream", None)
        if stream is None or stream.selection is not selection or stream.at != at:
            self._close_stream()
            stream = self._ahead.stream = _Stream(self, selection, at)
        try:
            block = stream.take(wanted)
        except Exception as error:  # noqa: BLE001 - a replica's conflict, a lost connection
            log.warning("streaming %s stopped (%s): read by blocks", self.schema.name, error)
            self._close_stream()
            return None
        if stream.at >= len(selection):  # read to the end: the connection goes back now
            self._close_stream()
        return block

    def _close_stream(self) -> None:
        stream = getattr(self._ahead, "stream", None)
        if stream is not None:
            self._ahead.stream = None
            stream.close()

    def _stream_rows(self, rest: np.ndarray) -> tuple[Generator[tuple[int, bytes]], bool]:
        """(position, feature) of each position of `rest` (ascending), from one query whose
        rows the server sends as fast as the connection takes them (the client library
        keeps a chunk at a time): memory stays flat, and the database reads the next rows
        while the caller sends the last ones on. Holds a connection of the pool until it is
        read to the end or closed. Also says whether the rows are exactly `rest`'s (else they
        are the range from its first to its last position, gaps and all)."""
        first, last = int(rest[0]), int(rest[-1])
        params: list[Any]
        if last - first < 2 * len(rest):
            where, params = "pos BETWEEN %s AND %s", [first, last]
        else:
            where = "pos = ANY(%s::int4[])"
            params = ["{" + ",".join(map(str, rest.tolist())) + "}"]
        exact = where.startswith("pos =") or last - first + 1 == len(rest)
        return self._stream_query(where, params), exact

    def _stream_query(self, where: str, params: list[Any]) -> Generator[tuple[int, bytes]]:
        from psycopg import pq, sql

        query = sql.SQL(
            "SELECT pos, convert_to(feature, 'UTF8') FROM {} WHERE " + where + " ORDER BY pos"
        ).format(self._features_table)
        # Rows a chunk at a time where the client library can (libpq 17+), else one by one.
        size = STREAM_ROWS if pq.version() >= 170000 else 1
        with pool(self._url).connection() as conn:
            yield from conn.cursor(binary=True).stream(query, params, size=size)

    def prefetch(self, positions: np.ndarray) -> None:
        """Read the features at `positions` (any order; negative ones are skipped) in one
        query, for the feature_at and feature_bytes calls that follow in this thread: a tile's
        points (geo.tiles), which would otherwise cost a round trip each, or an OGC page
        (geo.ogc.items), which would be read a growing block at a time."""
        if self._count <= SMALL_LAYER:
            return  # feature_at has them all already
        wanted = np.unique(positions[positions >= 0])
        tids = self._selected_tids(wanted)
        found = self._fetch_features(wanted.tolist(), tids)
        self._ahead.block = dict(zip(wanted.tolist(), found, strict=True))

    def _selected_tids(self, wanted: np.ndarray) -> np.ndarray | None:
        """Where the rows of `wanted` (ascending) are, if this thread's last selection holds
        them all (an OGC page of it): read straight from the rows, not looked up by position."""
        selection = getattr(self._ahead, "selection", None)
        tids = getattr(self._ahead, "tids", None)
        if selection is None or tids is None or not len(wanted):
            return None
        at = np.searchsorted(selection, wanted)
        if at[-1] >= len(selection) or not np.array_equal(selection[at], wanted):
            return None
        return tids[at]

    def _fetch_features(self, positions: Sequence[int], tids: Any = None) -> list[bytes]:
        """The features at `positions` (ascending), in one query; `tids` (block, offset), when
        given, say where their rows are."""
        from psycopg import sql

        if not positions:
            return []
        if tids is None and "tids" in self._loaded:  # read with the points (see points)
            tids = self._loaded["tids"][np.asarray(positions)]
        first, last = positions[0], positions[-1]
        params: list[Any]
        if last - first < 2 * len(positions):
            # Mostly consecutive (a whole layer, a dense selection): one range of the index,
            # read in order, beats a lookup per position.
            where, params = "pos BETWEEN %s AND %s", [first, last]
        elif tids is not None and not self._moved:
            # Straight to the rows (a TID scan). Were the table ever rewritten (VACUUM FULL,
            # CLUSTER), the rows there would hold other positions: checked below.
            blocks, offsets = tids["block"].tolist(), tids["offset"].tolist()
            where = "ctid = ANY(%s::tid[])"
            params = ["{" + ",".join(map('"({},{})"'.format, blocks, offsets)) + "}"]
        else:
            # An array's text: a list would be dumped element by element in Python.
            where, params = "pos = ANY(%s::int4[])", ["{" + ",".join(map(str, positions)) + "}"]
        rows = self._query(
            sql.SQL("SELECT pos, convert_to(feature, 'UTF8') FROM {} WHERE " + where).format(
                self._features_table
            ),
            params,
        )
        found = {pos: bytes(data) for pos, data in rows}
        if tids is not None and not self._moved and any(p not in found for p in positions):
            self._moved = True  # for this store: reopened, it reads them again (as published)
            log.warning(
                "%s: feature rows moved (table rewritten?); reading them by position",
                self._features_table.as_string(),
            )
            return self._fetch_features(positions)
        return [found[p] for p in positions]

    # -- whole columns, fetched once ----------------------------------------------------

    def _once(self, key: str, load) -> Any:
        found = self._loaded.get(key)
        if found is None:
            with self._lock:
                found = self._loaded.get(key)
                if found is None:
                    found = self._loaded[key] = load()
        return found

    def _packed(self, exprs: dict[str, tuple[str, str]]) -> dict[str, np.ndarray]:
        """Numeric columns in position order, fetched as one packed bytea: {name: (SQL
        expression, "i4" or "f8")}; far faster than a million rows of Python tuples."""
        from psycopg import sql

        send = " || ".join(
            f"{'int4send' if kind == 'i4' else 'float8send'}({expr})"
            for expr, kind in exprs.values()
        )
        query = sql.SQL("SELECT string_agg(int4send(pos) || {}, ''::bytea) FROM {}").format(
            sql.SQL(send), self._table
        )
        (data,) = self._query(query)[0]
        dtype = np.dtype([("pos", ">i4"), *((n, f">{k}") for n, (_, k) in exprs.items())])
        packed = np.frombuffer(data or b"", dtype=dtype)
        out = {}
        for name, (_, kind) in exprs.items():
            column = np.empty(self._count, dtype=np.float64 if kind == "f8" else np.int64)
            column[packed["pos"]] = packed[name]
            out[name] = column
        return out

    @property
    def ids(self) -> np.ndarray:
        def load() -> np.ndarray:
            from psycopg import sql

            rows = self._query(sql.SQL("SELECT id FROM {} ORDER BY pos").format(self._table))
            return np.array([r[0] for r in rows], dtype=str)

        return self._once("ids", load)

    def geometries(self) -> np.ndarray:
        def load() -> np.ndarray:
            from psycopg import sql

            if self._cols.point:
                return shapely.points(self.points())
            rows = self._query(
                sql.SQL("SELECT ST_AsBinary(geom) FROM {} ORDER BY pos").format(self._table)
            )
            return shapely.from_wkb([bytes(r[0]) for r in rows])

        return self._once("geometries", load)

    def points(self) -> np.ndarray:
        def load() -> np.ndarray:
            if self._cols.point:
                # With where each feature's row is, in the same pass: read by the tiles' points.
                tid = "(feature_tid::text::point)[{}]::int4"
                packed = self._packed(
                    {
                        "x": ("x", "f8"),
                        "y": ("y", "f8"),
                        "block": (tid.format(0), "i4"),
                        "offset": (tid.format(1), "i4"),
                    }
                )
                tids = np.empty(self._count, dtype=[("block", "u4"), ("offset", "u2")])
                tids["block"], tids["offset"] = packed["block"], packed["offset"]
                self._loaded["tids"] = tids
                return np.column_stack([packed["x"], packed["y"]])
            return shapely.get_coordinates(self.geometries())

        return self._once("points", load)

    def column(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        if key == "id":
            return np.arange(self._count), self.ids
        if key not in self._cols.texts:
            raise KeyError(key)

        def load() -> tuple[np.ndarray, np.ndarray]:
            from psycopg import sql

            # Per distinct value, its positions as packed int4: few values, one round trip.
            # Values in order of first appearance, as the file store's index has them, so that
            # what is built from the codes (the map's feed) is the same byte for byte.
            rows = self._query(
                sql.SQL(
                    "SELECT {}, string_agg(int4send(pos), ''::bytea) FROM {} GROUP BY 1 "
                    "ORDER BY min(pos)"
                ).format(sql.Identifier(key), self._table)
            )
            codes = np.zeros(self._count, dtype=np.int32)
            for code, (_, data) in enumerate(rows):
                codes[np.frombuffer(data, dtype=">i4")] = code
            return codes, np.array([r[0] for r in rows], dtype=str)

        return self._once(f"column:{key}", load)

    def number(self, key: str) -> np.ndarray:
        if key not in self._cols.numbers:
            raise KeyError(key)
        return self._once("numbers", self._load_numbers)[key]

    def _load_numbers(self) -> dict[str, np.ndarray]:
        from psycopg import sql

        exprs = {
            k: (f"coalesce({sql.Identifier(k).as_string()}, 'NaN')", "f8")
            for k in self._cols.numbers
        }
        return self._packed(exprs) if exprs else {}

    def time_spans(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not self._cols.time:
            return None

        def load() -> tuple[np.ndarray, np.ndarray]:
            # A date minus date 0001-01-01 is days; Python's ordinal of that day is 1.
            spans = self._packed(
                {
                    "first": ("first_day - date '0001-01-01' + 1", "i4"),
                    "last": ("last_day - date '0001-01-01' + 1", "i4"),
                }
            )
            return spans["first"], spans["last"]

        return self._once("spans", load)
