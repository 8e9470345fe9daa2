"""What a download says about itself, and the downloads every store build prepares once.

`metadata` is the `metadata` member of a GeoJSON download and each GeoPackage table's metadata:
the filters, the count, the sources, licences and attribution of the rows it holds, and what the
licences withheld. `geopackage_parts` is what `geo.export.write_geopackage` writes for a
selection of every layer. The web app (app/downloads.py) and the build use the same two, so a
download the build prepared is the download the app would have written.

Prepared downloads. `kpmap build` (and import and synth, all through
geo.build.pipeline.build_store) calls `prepare(folder, manifest)` once the store's files and
manifest are written, before the store is moved into place. It writes into the store's version
folder, beside the layers:

- `kpmap.gpkg`: the whole-store GeoPackage, under the licence setting of the build's
  environment (KPMAP_LICENSED_DATASETS: give the build the server's);
- `attacks.csv` and `attacks.csv-rows.npy`: the whole attacks CSV and each row's byte range in
  it, so that the CSV of any selection is stretches of it (geo.stretches), never written row by
  row on a request;
- `attacks.geojson.deflate` and `attacks.csv.deflate`: the whole layer's GeoJSON features and
  its CSV rows, compressed once (raw deflate, level PREPARED_LEVEL): a gzip download of the
  whole layer sends them as they are, behind its head (the metadata) compressed per request.

Each file's sha256 joins the manifest's `files` (Store.open and `kpmap validate` check them as
they check the layers), and the manifest's `downloads` says what each holds. `Prepared.open`
finds them again for the store a server serves; a store without them (built by an older kpmap,
or published to PostGIS) is served as before, each download written when it is asked for.
"""

import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO

import numpy as np
import orjson
import pyarrow as pa

from geo.errors import BuildError
from geo.export import (
    GEOJSON_TAIL,
    Columns,
    CsvWriter,
    geopackage_batches,
    geopackage_rows,
    point_rows,
    write_geopackage_table,
)
from geo.helper import HelperProcess
from geo.licences import RowPolicy, Withheld, setting_from_env
from geo.query import describe_filters
from geo.store import integrity, is_database_url, schemas, swap
from geo.store.files import FileLayer, Store, manifest_version, read_manifest
from geo.store.layer import Layer
from geo.store.schemas import LayerSchema
from geo.stretches import Stretches, compress_piece, mapped, runs

# The manifest's `downloads` describes prepared files of this layout.
FORMAT = 1
GEOPACKAGE = "kpmap.gpkg"
# Layers whose GeoJSON and CSV are prepared: the one large enough for it to matter.
LAYERS = ("attacks",)
# ISA-L's level for the bodies compressed once (geo.stretches.compress_piece): about as small as
# zlib's level 1 that a stream is compressed at as it is sent, and 1 GB/s on a core.
PREPARED_LEVEL = 2
PIECE_BYTES = 16 << 20
# Rows of the CSV made at once: bounds the columns held in memory while writing.
CSV_BATCH = 50_000
# From this many features in LAYERS the GeoPackage is written by a process of its own, beside the
# CSV; below it a process would cost more to start than it saves.
SEPARATE_GEOPACKAGE_FROM = 50_000
PIECES_AHEAD = 4


def metadata(
    store: Store,
    policy: RowPolicy,
    name: str,
    kwargs: dict[str, Any],
    skipped: list[str],
    positions: np.ndarray,
    withheld: Withheld | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """A download's `metadata`: title, layer, count, the filters applied (`kwargs`) and those not
    applied to this layer (`skipped`), when the store was built and this was written, the
    sources of the rows at `positions` with their licences and attribution, the CRS, and (for
    attacks) what the licences withheld; `notes` say which polygons a district filter chose."""
    entry = store.manifest["layers"][name]
    found = sources(store, policy, name, positions)
    result = {
        "title": entry.get("title", name),
        "layer": name,
        "count": len(positions),
        "filters": describe_filters(kwargs),
        "store_built_at": store.manifest.get("built_at"),
        "generated_at": generated_at(),
        "sources": found,
        "licences": sorted({s["licence"] for s in found}),
        "attribution": attribution(found),
        "crs": "WGS 84 longitude/latitude (RFC 7946)",
    }
    if withheld is not None:
        result["withheld"] = withheld.notice(policy.datasets)
    if skipped:
        result["filters_not_applied"] = skipped
    if "district" not in skipped and notes:
        result["filter_notes"] = notes
    return result


def selection(
    store: Store, policy: RowPolicy, name: str, kwargs: dict[str, Any]
) -> tuple[np.ndarray, Withheld | None]:
    """The positions a download or the API may hand out, and what the licences withheld (None
    for the layers that hold no dataset's rows: the others count attacks, they hold none)."""
    positions = store.select(name, **kwargs)
    if name != "attacks":
        return positions, None
    return policy.split(store.layer(name), positions)


def sources(
    store: Store, policy: RowPolicy, name: str, positions: np.ndarray | None = None
) -> list[dict]:
    """The layer's sources from the manifest; for attacks, only the datasets the rows at
    `positions` come from (a dataset whose rows were all withheld is named in `withheld`)."""
    found = store.manifest["layers"][name].get("sources", [])
    if name != "attacks" or positions is None:
        return found
    present = set(policy.present(store.layer(name), positions))
    return [s for s in found if "dataset" not in s or s["dataset"] in present]


def attribution(found: list[dict[str, Any]]) -> str:
    """The attribution of some sources (as `sources` gives them), one line."""
    return "; ".join(s["attribution"] for s in found)


def generated_at() -> str:
    """Now, as a download's `generated_at`: RFC 3339 to the second, UTC, always 20 characters
    (a range of a fresh write continues an earlier one: see app/downloads.py)."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def geopackage_parts(
    store: Store, policy: RowPolicy, selections: list, notes: list[str] | None = None
) -> list[tuple[Layer, np.ndarray, dict[str, str]]]:
    """(layer, positions, table metadata) of each (name, kwargs, skipped) in `selections`, as
    geo.export.write_geopackage takes them."""
    parts = []
    for name, kwargs, skipped in selections:
        positions, withheld = selection(store, policy, name, kwargs)
        found = metadata(store, policy, name, kwargs, skipped, positions, withheld, notes)
        # "kpmap_" and not "kpmap:": GDAL reads a ":" in a metadata key as the end of the key,
        # which made every item one key "kpmap" and QGIS showed only one of them.
        flat = {f"kpmap_{k}": orjson.dumps(v).decode() for k, v in found.items()}
        parts.append((store.layer(name), positions, flat))
    return parts


def csv_credits(store: Store, policy: RowPolicy, name: str) -> dict[str, str]:
    """Dataset key -> the credit its terms require, for the CSV's `attribution` column (the
    manifest's, whatever the licences withhold: a row's credit depends on its dataset alone)."""
    return {s["dataset"]: s["attribution"] for s in sources(store, policy, name) if "dataset" in s}


def withholds(store: Store, policy: RowPolicy) -> list[str]:
    """The datasets of the store whose rows `policy` leaves out of the downloads: two policies
    with the same list withhold the same rows and say the same of them."""
    if "attacks" not in store.layer_names:
        return []
    present = policy.present(store.layer("attacks"))
    return sorted(set(present) & policy.restricted)


# --- written by the build ---------------------------------------------------------------------


def prepare(
    folder: Path, manifest: dict[str, Any], early: "EarlyCsv | None" = None
) -> dict[str, Any]:
    """Write the prepared downloads of the store in `folder` (complete, manifest included) and
    return its manifest with them added to `files` and `downloads` (manifest.json rewritten).
    `early`: most of the CSV's batches, begun while the build wrote the layer (EarlyCsv)."""
    # Just written and hashed by the build; whole layers are copied out, nothing looked up.
    store = Store.open(folder, ready=False, verify=False)
    policy = _build_policy()
    prepared: dict[str, Any] = {"format": FORMAT, "geojson": {}, "csv": {}}
    big = sum(len(store.layer(name)) for name in LAYERS if name in store.layer_names)
    with ExitStack() as stack:
        geopackage = None
        if big >= SEPARATE_GEOPACKAGE_FROM:
            # GDAL and SQLite hold the GIL through much of their work: a thread would take
            # turns with the CSV's, a process of its own writes beside it on another core, fed
            # the rows of LAYERS as this process takes them apart for the CSV (each feature is
            # decoded once). A fresh interpreter, not multiprocessing's spawn, which would run
            # the caller's script again.
            geopackage = stack.enter_context(_GeoPackageProcess(folder))
        else:
            write_store_geopackage(folder, store, policy)
        # Compressing (ISA-L lets go of the GIL) runs on the other cores meanwhile: the CSV as
        # it is written, the GeoJSON read in a thread of its own once every CSV is written,
        # while the GeoPackage's process builds its spatial index alone (~3 s for a million
        # points), both cut into pieces that the threads of `pool` compress.
        cores = max(1, (os.cpu_count() or 1) - 1)
        pool = stack.enter_context(ThreadPoolExecutor(cores))
        bodies = stack.enter_context(ThreadPoolExecutor(1))
        wholes: list[tuple[str, _FileFeatures]] = []
        for name in LAYERS:
            if name not in store.layer_names:
                continue
            layer = store.layer(name)
            if not isinstance(layer, FileLayer) or layer.offsets is None or not len(layer):
                continue  # a layer not kept as a file's bytes: written when asked for
            # Read from the file in one pass, not through the layer's mapping: its pages stay
            # the page cache's, not this process's memory.
            source = stack.enter_context(open(_layer_file(store, folder, name), "rb")).fileno()
            features = _FileFeatures(source, layer.offsets)
            wholes.append((name, features))
            rows = geopackage.feeder(layer, policy) if geopackage else None
            prepared["csv"][name] = _write_csv(
                store, policy, layer, features, folder, pool, rows, early
            )
        compressing = {
            name: bodies.submit(
                _deflate, pool, features.whole(), folder / f"{name}.geojson.deflate"
            )
            for name, features in wholes
        }
        prepared["geojson"] = {name: job.result() for name, job in compressing.items()}
        written = [
            entry[k]
            for kind in ("geojson", "csv")
            for entry in prepared[kind].values()
            for k in ("file", "rows", "deflate")
            if k in entry
        ]
        # hashed while the GeoPackage is being finished
        hashing = {name: pool.submit(integrity.file_record, folder / name) for name in written}
        if geopackage is not None:
            geopackage.wait()
        files = dict(integrity.recorded(manifest))
        files |= {name: job.result() for name, job in hashing.items()}
    files[GEOPACKAGE] = integrity.file_record(folder / GEOPACKAGE)
    prepared["gpkg"] = {"file": GEOPACKAGE, "withholds": withholds(store, policy)}
    manifest = {**manifest, "downloads": prepared, "files": dict(sorted(files.items()))}
    # As the build writes it (geo.build.pipeline._write_json).
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    (folder / integrity.MANIFEST).write_text(text, encoding="utf-8")
    return manifest


class _GeoPackageProcess(HelperProcess):
    """write_store_geopackage(folder) in a process of its own, fed the rows of LAYERS on its
    standard input (`feeder`)."""

    CODE = (
        "import sys; from pathlib import Path; from geo.downloads import write_store_geopackage; "
        "write_store_geopackage(Path(sys.argv[1]), fed=sys.stdin.buffer)"
    )

    def __init__(self, folder: Path):
        super().__init__(self.CODE, str(folder))

    def feeder(self, layer: Layer, policy: RowPolicy) -> "_Feeder":
        """What takes the rows of `layer` the GeoPackage holds (those `policy` hands out), a
        batch of features at a time, and sends them to the process; fed in LAYERS' order."""
        return _Feeder(self, layer, policy)

    def wait(self, what: str = f"writing {GEOPACKAGE}") -> None:
        super().wait(what)


class _CsvProcess(HelperProcess):
    """`csv_batches` of every other batch of a layer (the odd ones), in a process of its own:
    the CSV's text and the GeoPackage's rows of those batches, made on another core while
    `_write_csv` makes the even ones, and read (`next`) in order. See also EarlyCsv."""

    CODE = (
        "import sys; from pathlib import Path; from geo.downloads import csv_batches; "
        "csv_batches(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == 'gpkg', "
        "sys.stdout.buffer)"
    )

    def __init__(self, folder: Path, name: str, batch: int, geopackage: bool):
        super().__init__(
            self.CODE,
            str(folder),
            name,
            str(batch),
            "gpkg" if geopackage else "csv",
            stdout=subprocess.PIPE,
        )

    @staticmethod
    def takes(k: int) -> bool:
        """Does it make batch k?"""
        return k % 2 == 1

    def next(self) -> "_CsvBatch":
        """The next batch's frame (see csv_batches); BuildError if the process stopped."""
        assert self.process.stdout is not None
        frame = _CsvBatch.read(self.process.stdout)
        if frame is None:
            self.wait("making the CSV")
            raise BuildError("making the CSV failed: its process stopped early (exit 0)")
        return frame


class EarlyCsv(HelperProcess):
    """What a _CsvProcess does, begun while the build writes the layer, beside its writing:
    the CSV text and GeoPackage rows of the layer's chunks (`takes`), each made as soon as the
    build has written it (`written`, then `done`), kept in a file beside the build's work
    folder and read by `prepare` (`next`) in order.

    The CSV's credits are not in the manifest yet: the build gives them as it will record them
    (geo.build.attacks.AttackLayer.releases). `prepare` uses what this made only if they are
    the manifest's, and otherwise makes the whole CSV itself (`fits`)."""

    CODE = (
        "import sys; from pathlib import Path; from geo.downloads import early_csv_batches; "
        "early_csv_batches(Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), "
        "sys.stdin.buffer, sys.stdout)"
    )
    CHUNK = struct.Struct("<QQQ")  # a chunk written: its first byte, its end, its features

    def __init__(self, layer_file: Path, name: str, credits: dict[str, str]):
        self.name, self.credits = name, credits
        # beside the build's work folder: the store's disk, not /tmp
        self.frames = tempfile.TemporaryFile(dir=layer_file.parent.parent)
        self.bounds: list[tuple[int, int]] = []  # each chunk's first feature and end
        self._read = 0
        fd = str(self.frames.fileno())
        args = (str(layer_file), name, json.dumps(credits), fd)
        super().__init__(self.CODE, *args, stdout=subprocess.PIPE, pass_fds=(int(fd),))

    def written(self, offsets: np.ndarray) -> None:
        """A chunk of features written (their byte ranges in the layer file), to read now."""
        if not len(offsets):
            return
        first = self.bounds[-1][1] if self.bounds else 0
        self.bounds.append((first, first + len(offsets)))
        message = self.CHUNK.pack(int(offsets[0, 0]), int(offsets[-1, 1]), len(offsets))
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(message)
            self.process.stdin.flush()
        except OSError:  # a broken pipe: the process stopped
            self.wait("making the CSV")
            raise

    def done(self) -> None:
        """Every chunk is written."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass  # it stopped early: `next` says why

    @staticmethod
    def takes(k: int) -> bool:
        """Does it make chunk k? Every one, since chunks are decoded straight into columns
        (Columns.decoded): it keeps up with the build's writing, and the build, whose own work
        is the longest path, only writes them out (a 1M build: 46–48 s, against 50–52 s when
        it made one chunk in four itself; before the decoding, three in four was best)."""
        return True

    def fits(self, name: str, credits: dict[str, str], rows: int) -> bool:
        """Did this make the CSV of this layer as the manifest has it?"""
        count = self.bounds[-1][1] if self.bounds else 0
        return (name, credits, rows) == (self.name, self.credits, count)

    def next(self) -> "_CsvBatch":
        """The next frame it made (see early_csv_batches); BuildError if none came."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.wait("making the CSV")
            raise BuildError("making the CSV failed: its process stopped early (exit 0)")
        size = int(line)
        frame = _CsvBatch.parse(os.pread(self.frames.fileno(), size, self._read))
        self._read += size
        if frame is None:
            raise BuildError("making the CSV failed: a batch was cut short")
        return frame

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.frames.close()


def early_csv_batches(
    layer_file: Path, name: str, credits: str, frames: int, chunks: BinaryIO, said: TextIO
) -> None:
    """What EarlyCsv runs: for every chunk of the layer file it is told of (`chunks`), the
    frame (_CsvBatch, with its GeoPackage rows, every one of them) of each it takes written to
    the file descriptor `frames` and its length in bytes said (a line to `said`) once it can be
    read."""
    schema = schemas.LAYERS[name]
    writer = CsvWriter(schema, json.loads(credits))
    with open(layer_file, "rb") as source, os.fdopen(frames, "wb") as out:
        k = 0
        while head := chunks.read(EarlyCsv.CHUNK.size):
            start, end, count = EarlyCsv.CHUNK.unpack(head)
            if EarlyCsv.takes(k):
                found = _read_columns(source.fileno(), schema, start, end, count)
                made = _CsvBatch.of(writer, found)
                made.arrow = _ipc(point_rows(schema, found))
                parts = made.frame()
                for part in parts:
                    out.write(part)
                out.flush()
                print(sum(map(len, parts)), file=said, flush=True)
            k += 1


def _ipc(batch: pa.RecordBatch) -> bytes:
    """`batch` as an Arrow IPC stream of its own."""
    stream = pa.BufferOutputStream()
    with pa.ipc.new_stream(stream, batch.schema) as ipc:
        ipc.write_batch(batch)
    return stream.getvalue().to_pybytes()


class _Feeder:
    """Sends one layer's GeoPackage rows to a _GeoPackageProcess as an Arrow IPC stream: a
    call per batch of features taken apart (`Columns`), then `close`."""

    def __init__(self, process: _GeoPackageProcess, layer: Layer, policy: RowPolicy):
        self.process = process
        self.layer = layer
        self.withheld = policy.withheld_mask(layer)
        self.stream: pa.ipc.RecordBatchStreamWriter | None = None

    def __call__(self, positions: np.ndarray, found: Columns) -> None:
        self.send(_handed_out(self.layer, self.withheld, positions, found))

    def relay(self, positions: np.ndarray, batch: pa.RecordBatch) -> None:
        """Send the rows `policy` hands out of `batch`, made elsewhere: the rows of the
        features at `positions`, every one."""
        if self.withheld is not None:
            batch = batch.filter(pa.array(~self.withheld[positions]))
        self.send(batch)

    def send(self, batch: pa.RecordBatch) -> None:
        """Send rows already taken apart (those `policy` hands out)."""
        try:
            if self.stream is None:
                self.stream = pa.ipc.new_stream(self.process.process.stdin, batch.schema)
            self.stream.write_batch(batch)
        except OSError:  # a broken pipe: the process stopped
            self.process.wait()  # raises BuildError with the process's message
            raise

    def close(self) -> None:
        """The end of the layer's rows (the stream's end, an empty one if no row was sent)."""
        if self.stream is None:
            self(np.zeros(0, dtype=np.int64), Columns.of(self.layer, np.zeros(0, dtype=np.int64)))
        assert self.stream is not None
        self.stream.close()


def _handed_out(
    layer: Layer, withheld: np.ndarray | None, positions: np.ndarray, found: Columns
) -> pa.RecordBatch:
    """The GeoPackage rows of the features at `positions` (taken apart: `found`) but those
    `withheld` (a mask over the layer, or None)."""
    if withheld is not None:
        keep = ~withheld[positions]
        positions, found = positions[keep], found.take(keep)
    return geopackage_rows(layer, positions, found)


def write_store_geopackage(
    folder: Path,
    store: Store | None = None,
    policy: RowPolicy | None = None,
    fed: BinaryIO | None = None,
) -> None:
    """The whole-store GeoPackage of the store in `folder`, as the app would write it for a
    download of every layer under `policy` (the build's licence setting unless given). With
    `fed`, the rows of LAYERS are read from it, an Arrow IPC stream per layer in LAYERS' order
    (see _Feeder), not taken apart here; each must hold as many rows as `policy` hands out."""
    store = store or Store.open(folder, ready=False, verify=False)  # as `prepare` opens it
    policy = policy or _build_policy()
    selections: list[tuple[str, dict[str, Any], list[str]]] = [
        (name, {}, []) for name in store.layer_names
    ]
    path = folder / GEOPACKAGE
    for layer, positions, metadata in geopackage_parts(store, policy, selections):
        name = layer.schema.name
        if fed is None or name not in LAYERS:
            batches: Iterable[pa.RecordBatch] = geopackage_batches(layer, positions)
        else:
            batches = pa.ipc.open_stream(fed)
        written = write_geopackage_table(path, layer.schema, batches, metadata)
        if written != len(positions):
            raise BuildError(f"{GEOPACKAGE}: {name} was fed {written} rows, not {len(positions)}")


def _build_policy() -> RowPolicy:
    """The licence setting the server will have, read from the build's environment."""
    try:
        return RowPolicy.from_setting(setting_from_env())
    except ValueError as error:
        print(
            f"kpmap: {error}; the prepared GeoPackage withholds every restricted dataset",
            file=sys.stderr,
        )
        return RowPolicy.from_setting("")


class _Deflater:
    """A body given in parts (`add`), compressed once into `path` (raw deflate): cut into
    PIECE_BYTES pieces that the pool's threads compress into streams that concatenate into one
    (geo.stretches.compress_piece), at most PIECES_AHEAD of them in memory at once. `finish`
    gives its entry: the file, the body's CRC-32 and length."""

    def __init__(self, pool: ThreadPoolExecutor, path: Path):
        self.pool, self.path = pool, path
        self.out = open(path, "wb")  # closed by finish, or when the context ends
        self.pending = bytearray()
        self.jobs: deque[Future[bytes]] = deque()
        self.crc = self.size = 0

    def __enter__(self) -> "_Deflater":
        return self

    def __exit__(self, *exc: object) -> None:
        self.out.close()

    def add(self, data: bytes | memoryview) -> None:
        self.pending += data
        while len(self.pending) >= PIECE_BYTES:
            self._submit(bytes(self.pending[:PIECE_BYTES]), last=False)
            del self.pending[:PIECE_BYTES]

    def finish(self) -> dict[str, Any]:
        self._submit(bytes(self.pending), last=True)
        while self.jobs:
            self.out.write(self.jobs.popleft().result())
        self.out.close()
        return {"deflate": self.path.name, "crc32": self.crc, "bytes": self.size}

    def _submit(self, piece: bytes, last: bool) -> None:
        self.crc = zlib.crc32(piece, self.crc)
        self.size += len(piece)
        self.jobs.append(self.pool.submit(compress_piece, piece, PREPARED_LEVEL, last))
        while len(self.jobs) > PIECES_AHEAD:
            self.out.write(self.jobs.popleft().result())


def _deflate(pool: ThreadPoolExecutor, body: Iterable[bytes], path: Path) -> dict[str, Any]:
    """`body` (its parts) compressed once into `path` (see _Deflater); its entry."""
    with _Deflater(pool, path) as deflater:
        for data in body:
            deflater.add(data)
        return deflater.finish()


def _layer_file(store: Store, folder: Path, name: str) -> Path:
    """The file of the layer `name` of the store in `folder`, as its manifest names it."""
    return folder / store.manifest["layers"][name]["file"]


class _FileFeatures:
    """The features of a layer file the build wrote (open as `source`), read in one pass:
    `offsets` holds each one's byte range, and one comma lies between two (geo.geojson)."""

    def __init__(self, source: int, offsets: np.ndarray):
        if len(offsets) > 1 and not (offsets[1:, 0] == offsets[:-1, 1] + 1).all():
            raise BuildError("the layer file's features are not one after another")
        self.source, self.offsets = source, offsets

    def whole(self) -> Iterator[bytes]:
        """What a download of every feature sends after its head (geo.export.geojson_file):
        the features and the FeatureCollection's end, in pieces."""
        start, end = int(self.offsets[0, 0]), int(self.offsets[-1, 1])
        for at in range(start, end, PIECE_BYTES):
            yield os.pread(self.source, min(PIECE_BYTES, end - at), at)
        yield GEOJSON_TAIL

    def parsed(self, schema: LayerSchema, start: int, stop: int) -> Columns:
        """The features from `start` to `stop` (positions), taken apart (Columns)."""
        return _read_columns(
            self.source, schema, self.offsets[start, 0], self.offsets[stop - 1, 1], stop - start
        )


def _read_columns(source: int, schema: LayerSchema, start: int, end: int, count: int) -> Columns:
    """The `count` features between two byte offsets of a layer file the build wrote (one
    comma between two), taken apart (Columns)."""
    size = int(end) - int(start)
    text = bytearray(size + 2)  # read between the brackets of a JSON array: no copy to make
    text[0], text[-1] = ord("["), ord("]")
    if os.preadv(source, [memoryview(text)[1:-1]], int(start)) != size:
        raise BuildError(f"the layer file ends before byte {end}")
    found = Columns.decoded(schema, text)
    if len(found.ids) != count:
        raise BuildError(f"{len(found.ids)} features read of {count}")
    return found


def _write_csv(
    store: Store,
    policy: RowPolicy,
    layer: Layer,
    features: _FileFeatures,
    folder: Path,
    pool: ThreadPoolExecutor,
    rows: "_Feeder | None" = None,
    early: EarlyCsv | None = None,
) -> dict[str, Any]:
    """The whole CSV of `layer` (every row: a download of fewer rows is stretches of it), each
    row's byte range, and its rows compressed as they are written (the pool's threads); the
    CSV's entry. Each batch of features taken apart is given to `rows` too (the GeoPackage's),
    then `rows` is closed. A large layer's odd batches are made by another process: `early`,
    if it made them of this layer as it is, else a _CsvProcess made meanwhile."""
    name = layer.schema.name
    path = folder / f"{name}.csv"
    offsets = np.zeros((len(layer), 2), dtype=np.int64)
    credits = csv_credits(store, policy, name)
    writer = CsvWriter(layer.schema, credits)
    header = writer.header.encode("utf-8")
    at = len(header)
    deflated = folder / f"{name}.csv.deflate"
    with ExitStack() as stack:
        out = stack.enter_context(open(path, "wb"))
        deflater = stack.enter_context(_Deflater(pool, deflated))
        helper: EarlyCsv | _CsvProcess | None = None
        bounds = [(s, min(s + CSV_BATCH, len(layer))) for s in range(0, len(layer), CSV_BATCH)]
        if early is not None and early.fits(name, credits, len(layer)):
            helper, bounds = early, early.bounds
        elif len(layer) >= SEPARATE_GEOPACKAGE_FROM and len(bounds) > 1:
            helper = stack.enter_context(_CsvProcess(folder, name, CSV_BATCH, rows is not None))
        out.write(header)
        for k, (start, stop) in enumerate(bounds):
            batch = np.arange(start, stop)
            if helper is not None and helper.takes(k):
                made = helper.next()
                if rows is not None:
                    rows.relay(batch, made.geopackage_rows())
            else:
                found = features.parsed(layer.schema, start, stop)
                made = _CsvBatch.of(writer, found)
                if rows is not None:
                    rows(batch, found)
            if len(made.lengths) != len(batch):
                raise BuildError(f"{name}.csv: {len(made.lengths)} rows made of {len(batch)}")
            if not len(batch):
                continue
            offsets[batch, 1] = at + np.cumsum(made.lengths)
            offsets[batch, 0] = offsets[batch, 1] - made.lengths
            at = int(offsets[batch[-1], 1])
            out.write(made.text)
            deflater.add(made.text)
        compressed = deflater.finish()
        if helper is not None:
            helper.wait("making the CSV")
    if rows is not None:
        rows.close()
    np.save(folder / f"{name}.csv-rows.npy", offsets)
    entry = {"file": path.name, "rows": f"{name}.csv-rows.npy", "header": len(header)}
    return entry | compressed


@dataclass
class _CsvBatch:
    """A batch of a layer's CSV: its rows' text, each row's length in bytes, and (when the
    GeoPackage is written too) its GeoPackage rows as an Arrow IPC stream."""

    text: bytes | memoryview
    lengths: np.ndarray
    arrow: bytes | memoryview = b""

    FRAME = struct.Struct("<QQQ")  # the lengths of text, lengths (rows) and arrow

    @classmethod
    def of(cls, writer: CsvWriter, found: Columns) -> "_CsvBatch":
        lines = writer.lines(found)
        text = "".join(lines).encode("utf-8")
        if len(text) == sum(map(len, lines)):  # ASCII: a character is a byte
            lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
        else:
            sizes = (len(line.encode("utf-8")) for line in lines)
            lengths = np.fromiter(sizes, dtype=np.int64, count=len(lines))
        return cls(text, lengths)

    def frame(self) -> list[bytes | memoryview]:
        """The batch as `read` reads it, in parts (written one after another)."""
        head = self.FRAME.pack(len(self.text), len(self.lengths), len(self.arrow))
        return [head, self.text, self.lengths.astype("<i8").tobytes(), self.arrow]

    @classmethod
    def read(cls, source: IO[bytes]) -> "_CsvBatch | None":
        """The next frame `frame` gave, or None at the end of `source`."""
        head = source.read(cls.FRAME.size)
        if len(head) < cls.FRAME.size:
            return None
        text_bytes, rows, arrow_bytes = cls.FRAME.unpack(head)
        rest = source.read(text_bytes + rows * 8 + arrow_bytes)
        return cls.parse(head + rest)

    @classmethod
    def parse(cls, frame: bytes) -> "_CsvBatch | None":
        """The batch of a whole frame, its parts views of it (not copies); None if it is cut
        short."""
        if len(frame) < cls.FRAME.size:
            return None
        text_bytes, rows, arrow_bytes = cls.FRAME.unpack_from(frame)
        if len(frame) < cls.FRAME.size + text_bytes + rows * 8 + arrow_bytes:
            return None
        view = memoryview(frame)
        at = cls.FRAME.size
        text = view[at : at + text_bytes]
        at += text_bytes
        lengths = np.frombuffer(frame, dtype="<i8", count=rows, offset=at).astype(np.int64)
        at += rows * 8
        return cls(text, lengths, view[at : at + arrow_bytes])

    def geopackage_rows(self) -> pa.RecordBatch:
        return pa.ipc.open_stream(pa.py_buffer(self.arrow)).read_next_batch()


def csv_batches(folder: Path, name: str, batch: int, geopackage: bool, out: BinaryIO) -> None:
    """The odd batches (of `batch` features) of the CSV `_write_csv` makes of the layer `name`
    of the store in `folder`, written to `out` as frames (_CsvBatch), in order: what a
    _CsvProcess runs. With `geopackage`, each frame holds the batch's GeoPackage rows too,
    every one (`_write_csv` leaves out those the licences withhold)."""
    store = Store.open(folder, ready=False, verify=False)
    layer = store.layer(name)
    assert isinstance(layer, FileLayer) and layer.offsets is not None
    writer = CsvWriter(layer.schema, csv_credits(store, _build_policy(), name))
    with open(_layer_file(store, folder, name), "rb") as source:
        features = _FileFeatures(source.fileno(), layer.offsets)
        for k, start in enumerate(range(0, len(layer), batch)):
            if not _CsvProcess.takes(k):
                continue
            stop = min(start + batch, len(layer))
            found = features.parsed(layer.schema, start, stop)
            made = _CsvBatch.of(writer, found)
            if geopackage:
                made.arrow = _ipc(geopackage_rows(layer, np.arange(start, stop), found))
            for part in made.frame():
                out.write(part)
    out.flush()


# --- read by the app ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    """A prepared body: its raw deflate stream (mapped), and its uncompressed CRC-32 and length."""

    deflate: Any
    crc32: int
    bytes: int


@dataclass(frozen=True)
class Rows:
    """A layer's prepared CSV: the whole file (mapped), its header's length, each row's byte
    range, and its rows compressed."""

    buffer: Any
    header: int
    offsets: np.ndarray
    body: Body

    def file(self, positions: np.ndarray) -> Stretches:
        """The CSV of the rows at `positions`: the header and stretches of the file."""
        found = runs(self.buffer, self.offsets, positions)  # rows need no separator: never None
        assert found is not None
        return Stretches(self.buffer[: self.header], self.buffer, *found)


@dataclass(frozen=True)
class Prepared:
    """The prepared downloads of one store version, opened (mapped) once per process."""

    geojson: dict[str, Body] = field(default_factory=dict)
    csv: dict[str, Rows] = field(default_factory=dict)
    gpkg: Any = None
    gpkg_withholds: tuple[str, ...] = ()

    @classmethod
    def open(cls, store: Store) -> "Prepared | None":
        """The prepared downloads of `store`, or None when it has none (an older build, a store
        in PostGIS) or its folder now holds another version (a newer build replaced it)."""
        entry = store.manifest.get("downloads")
        if not isinstance(entry, dict) or entry.get("format") != FORMAT:
            return None
        if is_database_url(str(store.path)):
            return None
        try:
            root = swap.resolve(Path(store.path))
            if manifest_version(read_manifest(root)) != store.version:
                return None
            geojson = {
                name: Body(mapped(root / e["deflate"]), int(e["crc32"]), int(e["bytes"]))
                for name, e in entry.get("geojson", {}).items()
            }
            rows = {}
            for name, e in entry.get("csv", {}).items():
                body = Body(mapped(root / e["deflate"]), int(e["crc32"]), int(e["bytes"]))
                offsets = np.load(root / e["rows"], allow_pickle=False)
                rows[name] = Rows(mapped(root / e["file"]), int(e["header"]), offsets, body)
            gpkg = entry.get("gpkg") or {}
            return cls(
                geojson=geojson,
                csv=rows,
                gpkg=mapped(root / gpkg["file"]) if gpkg.get("file") else None,
                gpkg_withholds=tuple(gpkg.get("withholds", ())),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # whatever is wrong, the downloads are still written on request

    def geopackage(self, store: Store, policy: RowPolicy) -> Stretches | None:
        """The whole-store GeoPackage, if it was prepared under licences that withhold what
        `policy` withholds; else None."""
        if self.gpkg is None or list(self.gpkg_withholds) != withholds(store, policy):
            return None
        return Stretches(b"", self.gpkg, np.array([0]), np.array([len(self.gpkg)]))
