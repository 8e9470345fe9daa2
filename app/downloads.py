"""Downloads (/download/...): thin views over geo.export and geo.downloads. Each view parses its
filters, answers 304 to a client that holds the same representation, selects what the licences
let leave the server, and sends it (app.http adds the ETag, Cache-Control, compression and CORS).

What the build prepared is sent as it is (geo.downloads: the whole-store GeoPackage, the
attacks CSV, the whole attacks layer's features and CSV rows compressed once). The attacks
GeoJSON and CSV of any selection are stretches of bytes the server already holds (the layer
file's, kept in memory; the prepared CSV's, mapped), read as one file (geo.stretches): sent at
the speed of the connection, with their length, and answering byte ranges (resuming a long
download) without writing anything. A gzip download of a whole layer with nothing withheld is
its metadata compressed now and the prepared body as it is; any other is compressed as it is
sent (gzip level 1, app.http).

Without prepared files (a store built by an older kpmap, or in PostGIS) and for the small
layers, downloads are written as they are sent, as before: GeoJSON and CSV stream, and a
request with `Range` is answered from a file, so the bytes it continues are the bytes it began
with: a whole layer's is written into DOWNLOAD_CACHE_DIR the first time a range of it is asked
for and kept there, a filtered one to a temporary file for that request; a GeoPackage is
rendered once per store version, licences and filters and kept (geo.renders). A GeoJSON's bytes
differ between writes only in `generated_at`, a fixed-width time near the start, so a range of
a fresh write still continues an earlier one. When the disk is full, a cache is skipped (the
answer streams unranged, or the GeoPackage is written to the temporary folder), and 503 says so
only when no file can be written at all.
"""

import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
from flask import Blueprint, Response, current_app, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import ServiceUnavailable

from app import http
from app.extensions import download_folder, get_policy, get_renders, get_store, resources
from geo.downloads import Body, Prepared, csv_credits, geopackage_parts, metadata, selection
from geo.errors import LayerNotFound
from geo.export import csv_chunks, geojson_chunks, geojson_file, geojson_head, write_geopackage
from geo.fsutil import atomic_path
from geo.licences import Withheld
from geo.ogc import params
from geo.ogc.items import layer_name
from geo.query import FILTER_PARAMS, area_filters, filter_notes, parse_filters
from geo.renders import render_key
from geo.store import Store, is_database_url
from geo.stretches import Stretches, compress_head, gzip_chunks, gzip_length

bp = Blueprint("downloads", __name__)
log = logging.getLogger(__name__)

VARY = "Accept-Encoding"
GPKG = "application/geopackage+sqlite3"
# How many whole-layer files (kept for byte ranges) of each kind: one per store build, and a
# worker may still be serving the previous one.
KEPT_FILES = 2
# Bump when the GeoPackage's layout changes, so that no file kept by an older kpmap is sent.
GPKG_FORMAT = "1"


@bp.get("/download/<layer>.geojson")
def download_geojson(layer: str) -> Response:
    store = get_store()
    name = layer_name(store, layer)
    kwargs, skipped = _download_filters(name)
    etag = http.data_etag("geojson")
    if http.not_modified(etag):
        return http.not_modified_response(etag, weak=True, vary=VARY)
    policy = get_policy()
    positions, withheld = selection(store, policy, name, kwargs)
    members = {"metadata": _metadata(store, name, kwargs, skipped, positions, withheld)}
    data = store.layer(name)
    filename = _filename(store, name, "geojson")
    head = geojson_head(members)
    prepared = _prepared(store)
    whole = prepared.geojson.get(name) if prepared and len(positions) == len(data) else None
    if whole is not None and _gzip_wanted():
        return _send_gzip(head, whole, params.GEOJSON, etag, filename)
    body = geojson_file(data, positions, head)
    if body is not None:
        return _send_file(body, params.GEOJSON, etag, filename)

    def chunks() -> Iterable[bytes]:
        return geojson_chunks(data, positions, members)

    whole_layer = not (kwargs or skipped)
    kept_as = f"kpmap-{name}" if whole_layer else ""
    return _send(chunks, params.GEOJSON, etag, filename, kept_as=kept_as, keep=_in_database(store))


@bp.get("/download/<layer>.csv")
def download_csv(layer: str) -> Response:
    store = get_store()
    name = layer_name(store, layer)
    if name != "attacks":
        raise LayerNotFound(
            f"CSV is offered for the attacks layer only; download {name} as "
            f"/download/{name}.geojson or in /download/kpmap.gpkg"
        )
    kwargs, _ = _download_filters(name)
    etag = http.data_etag("csv")
    if http.not_modified(etag):
        return http.not_modified_response(etag, weak=True, vary=VARY)
    policy = get_policy()
    positions, withheld = selection(store, policy, name, kwargs)
    data = store.layer(name)
    filename = _filename(store, name, "csv")
    prepared = _prepared(store)
    rows = prepared.csv.get(name) if prepared else None
    if rows is not None:
        # Each row carries its dataset's attribution (the prepared file's last column).
        if len(positions) == len(data) and _gzip_wanted():
            header = rows.buffer[: rows.header]
            response = _send_gzip(header, rows.body, "text/csv", etag, filename)
        else:
            response = _send_file(rows.file(positions), "text/csv", etag, filename)
    else:
        # Each row carries its dataset's attribution, so that a row copied out of the file
        # still credits its source; what was withheld is said in the headers (a CSV has no
        # metadata).
        credits = csv_credits(store, policy, name)

        def chunks() -> Iterable[bytes]:
            return csv_chunks(data, positions, attribution=credits)

        kept_as = "" if kwargs else "kpmap-attacks"
        keep = _in_database(store)
        response = _send(chunks, "text/csv", etag, filename, kept_as=kept_as, keep=keep)
    response.headers["Kpmap-Withheld"] = str(withheld.count if withheld else 0)
    if withheld and withheld.count:
        reason = withheld.notice(policy.datasets)["reason"]
        response.headers["Kpmap-Withheld-Reason"] = reason.encode("ascii", "replace").decode()
    return response


@bp.get("/download/kpmap.gpkg")
def download_geopackage() -> Response:
    """Every layer in one GeoPackage, rendered once per store version, licences and filters and
    kept for every worker (geo.renders: one writer per key while the others wait; at most
    MAX_RENDERS at once, then 503 with Retry-After). A HEAD never renders: it gets the kept
    file's length, or no Content-Length before the file exists (0 would be false)."""
    store = get_store()
    selections = []
    for name in store.layer_names:
        kwargs, skipped = _download_filters(name)
        selections.append((name, kwargs, skipped))
    etag = http.data_etag("gpkg")
    if http.not_modified(etag):
        return http.not_modified_response(etag, weak=True, vary=VARY)
    filename = _filename(store, "kpmap", "gpkg")
    notes = filter_notes(request.args)
    prepared = _prepared(store)
    if prepared and not notes and not any(kwargs or skipped for _, kwargs, skipped in selections):
        whole = prepared.geopackage(store, get_policy())
        if whole is not None:  # written by the build: never on a request
            return _send_file(whole, GPKG, etag, filename)
    # Everything the file's bytes depend on besides the store (whose version names the file).
    key = render_key("gpkg", GPKG_FORMAT, get_policy().key, selections, notes)
    renders = get_renders()
    if request.method == "HEAD":
        kept = renders.peek(store.version, key, ".gpkg")
        length = None  # not written yet: the size is not known
        if kept is not None:
            with kept:
                length = os.fstat(kept.fileno()).st_size
        return http.respond(
            iter(()), GPKG, etag=etag, weak=True, vary=VARY, filename=filename, length=length
        )

    def write(path: Path) -> None:
        _write_geopackage(store, selections, path)

    try:
        kept = renders.get(store.version, key, ".gpkg", write)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # The download folder is full: written to the temporary folder for this request alone.
        log.warning("could not keep a GeoPackage in the download folder: %s", exc)
        response = _send_temporary(write, GPKG, etag, filename)
        if response is None:
            raise ServiceUnavailable(
                "the server has no disk space left to write the GeoPackage; try again later, or "
                "download the layers as GeoJSON",
                retry_after=60,
            ) from None
        return response
    try:
        length = os.fstat(kept.fileno()).st_size
        return http.respond_file(
            kept, length, GPKG, etag=etag, weak=True, vary=VARY, filename=filename
        )
    except BaseException:
        kept.close()
        raise


def _send(
    chunks: Callable[[], Iterable[bytes]],
    mimetype: str,
    etag: str,
    filename: str,
    kept_as: str,
    keep: bool = False,
) -> Response:
    """A generated download: streamed, or with `Range` from a file (kept in the download cache
    under the name `kept_as` when it is the whole layer, else temporary). With `keep`, a whole
    layer is kept and sent from the file even without `Range`: a store in a database is then
    read once per version and machine for it, not once per download: the first is streamed as
    it is read and written into the download folder meanwhile (`_teed`), the later ones are
    sent from the file."""
    stream = None
    if keep and kept_as and not http.wants_range():
        folder = download_folder(current_app)
        if folder is not None:
            whole = folder / f"{kept_as}-{etag}.{filename.rsplit('.', 1)[1]}"
            response = _send_path(whole, mimetype, etag, filename) if whole.exists() else None
            if response is not None:
                return response
            stream = _teed(chunks, whole)
    if http.wants_range():

        def write(path: Path) -> None:
            with open(path, "wb") as f:
                for chunk in chunks():
                    f.write(chunk)

        ext = filename.rsplit(".", 1)[1]
        kept = _kept(kept_as, etag, ext, write) if kept_as else None
        response = _send_path(kept, mimetype, etag, filename) if kept else None
        response = response or _send_temporary(write, mimetype, etag, filename)
        if response is not None:
            return response
        # no disk to write it on: the whole answer, streamed, is still right (RFC 9110 14.2)
    stream = chunks() if stream is None else stream
    response = http.respond(stream, mimetype, etag=etag, weak=True, vary=VARY, filename=filename)
    response.headers["Accept-Ranges"] = "bytes"
    return response


def _send_path(path: Path, mimetype: str, etag: str, filename: str) -> Response | None:
    """A file streamed from an already open file, so it may be replaced meanwhile."""
    try:
        f = open(path, "rb")  # closed with the response
    except OSError:
        return None
    try:
        length = os.fstat(f.fileno()).st_size
        return http.respond_file(
            f, length, mimetype, etag=etag, weak=True, vary=VARY, filename=filename
        )
    except BaseException:
        f.close()
        raise


def _send_temporary(
    write: Callable[[Path], None], mimetype: str, etag: str, filename: str
) -> Response | None:
    """Write a file into a temporary folder, send it, and remove it once sent (or dropped);
    None when it cannot be written (a full disk)."""
    try:
        folder = Path(tempfile.mkdtemp(prefix="kpmap-gpkg-"))
    except OSError:
        return None
    try:
        path = folder / f"download.{filename.rsplit('.', 1)[1]}"  # GDAL goes by the extension
        write(path)
        response = _send_path(path, mimetype, etag, filename)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        log.warning("could not write a download to %s: %s", folder, exc)
        return None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if response is None:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    # Runs when the server is done with the response, streamed whole or not (e.g. HEAD).
    response.call_on_close(lambda: shutil.rmtree(folder, ignore_errors=True))
    return response


def _write_geopackage(store: Store, selections: list, path: Path) -> None:
    parts = geopackage_parts(store, get_policy(), selections, filter_notes(request.args))
    write_geopackage(path, parts)


def _in_database(store: Store) -> bool:
    return is_database_url(str(store.path))


def _prepared(store: Store) -> Prepared | None:
    """The downloads the build prepared for this store version, opened once per process."""
    return resources().live.derived("prepared-downloads", store, Prepared.open)


def _gzip_wanted() -> bool:
    """Whether a whole download goes out gzip-compressed: no range asked (ranges are of the
    identity bytes), and gzip the coding the client takes (app.http's rule for streams)."""
    return not http.wants_range() and http.negotiate(http.STREAM_CODINGS) == "gzip"


def _send_file(body: Stretches, mimetype: str, etag: str, filename: str) -> Response:
    """Bytes the server holds, as a file: Content-Length, and byte ranges (app.http)."""
    file = cast(BinaryIO, body)  # a read-only file, as app.http takes one
    return http.respond_file(
        file, len(body), mimetype, etag=etag, weak=True, vary=VARY, filename=filename
    )


def _send_gzip(head: bytes, body: Body, mimetype: str, etag: str, filename: str) -> Response:
    """A whole download gzip-compressed: `head` compressed now, the prepared body as it is."""
    compressed = compress_head(head)
    response = http.respond(
        gzip_chunks(head, compressed, body.deflate, body.crc32, body.bytes),
        mimetype,
        etag=etag,
        weak=True,
        vary=VARY,
        filename=filename,
        length=gzip_length(compressed, len(body.deflate)),
    )
    response.headers["Content-Encoding"] = "gzip"  # app.http leaves a coded answer as it is
    return response


def _kept(prefix: str, etag: str, ext: str, write: Callable[[Path], None]) -> Path | None:
    """A whole download kept in DOWNLOAD_CACHE_DIR under its ETag (which changes with every
    store build): written by the first request, read by every later one and by the other
    workers. None when the folder cannot be used or the disk is full: the caller then serves
    without it."""
    folder = download_folder(current_app)
    if folder is None:
        return None
    kept = folder / f"{prefix}-{etag}.{ext}"
    if kept.exists():
        return kept
    try:
        with atomic_path(kept, durable=False) as tmp:  # no reader ever sees half a file
            write(tmp)
    except OSError as exc:
        level = logging.WARNING if exc.errno in (errno.ENOSPC, errno.EDQUOT) else logging.ERROR
        log.log(level, "could not keep %s in %s: %s", kept.name, folder, exc)
        return None
    _prune(kept)
    return kept


def _prune(kept: Path) -> None:
    """Files of earlier builds are not asked for again: keep only the newest few like `kept`."""
    prefix = kept.name.rsplit("-", 1)[0]
    for old in sorted(kept.parent.glob(f"{prefix}-*{kept.suffix}"), key=_mtime)[:-KEPT_FILES]:
        old.unlink(missing_ok=True)


def _teed(chunks: Callable[[], Iterable[bytes]], kept: Path) -> Iterable[bytes]:
    """The chunks as they are sent, written into a temporary file beside `kept` meanwhile and
    moved to `kept` once all were sent; a send cut short (or a full disk) keeps nothing."""
    try:
        out = tempfile.NamedTemporaryFile(dir=kept.parent, prefix=f".{kept.name}.", delete=False)
    except OSError as exc:
        log.warning("could not keep %s: %s", kept.name, exc)
        yield from chunks()
        return
    writing, complete = True, False
    try:
        for chunk in chunks():
            if writing:
                try:
                    out.write(chunk)
                except OSError as exc:  # a full disk: the download goes on, not kept
                    log.warning("could not keep %s: %s", kept.name, exc)
                    writing = False
            yield chunk
        complete = True
    finally:
        out.close()
        if writing and complete:
            os.replace(out.name, kept)
            _prune(kept)
        else:
            os.unlink(out.name)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _download_filters(name: str) -> tuple[dict[str, Any], list[str]]:
    """The map's filters for one layer. Attack-only filters (actor, from, ...) are not errors
    on the other layers' downloads, since the map passes the same filters to every download;
    they are reported in the metadata as not applied."""
    args = request.args
    skipped: list[str] = []
    if name != "attacks":
        allowed = area_filters(name)
        skipped = [k for k in FILTER_PARAMS if k not in allowed and args.get(k)]
        # Not applied here, but a malformed value is still a 400: it is wrong for any layer.
        parse_filters(MultiDict([(k, v) for k, v in args.items(multi=True) if k in skipped]))
        args = MultiDict([(k, v) for k, v in args.items(multi=True) if k in allowed])
    return parse_filters(args, name), skipped


def _metadata(
    store: Store,
    name: str,
    kwargs: dict[str, Any],
    skipped: list[str],
    positions: np.ndarray,
    withheld: Withheld | None = None,
) -> dict[str, Any]:
    notes = filter_notes(request.args)
    return metadata(store, get_policy(), name, kwargs, skipped, positions, withheld, notes)


def _filename(store: Store, name: str, extension: str) -> str:
    day = str(store.manifest.get("built_at", ""))[:10] or "undated"
    return f"kpmap-{name}-{day}.{extension}" if name != "kpmap" else f"kpmap-{day}.{extension}"
