"""Downloads (/download/...): thin views over geo.export. Each view parses its filters, answers 304
to a client that holds the same representation, selects what the licences let leave the
server, and streams it (app.http adds the ETag, Cache-Control, compression and CORS).

Byte ranges (resuming a long download): a request with `Range` is answered from a file, so the
bytes it continues are the bytes it began with. The GeoPackage is a file anyway. A whole
layer's GeoJSON or CSV is written whole into DOWNLOAD_CACHE_DIR the first time a range of it is
asked for, and kept there like the whole-store GeoPackage; a filtered one is written to a
temporary file for that request. Without `Range`, GeoJSON and CSV stream as they are made
(gzip when the client takes it), so the first byte leaves at once. A CSV's bytes depend only on
the store and the filters; a GeoJSON's differ between writes only in `generated_at`, a
fixed-width time near the start, so a range of a fresh write still continues an earlier one.
When the disk is full, a cache is skipped (the answer streams unranged, or the GeoPackage is
written to the temporary folder), and 503 says so only when no file can be written at all.
"""

import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from flask import Blueprint, Response, current_app, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import ServiceUnavailable

from app import http
from app.extensions import download_folder, get_policy, get_renders, get_store
from geo.errors import LayerNotFound
from geo.export import csv_chunks, geojson_chunks, write_geopackage
from geo.fsutil import atomic_path
from geo.licences import Withheld
from geo.ogc import documents, params
from geo.ogc.items import attribution, layer_name, selection, sources
from geo.query import FILTER_PARAMS, area_filters, describe_filters, filter_notes, parse_filters
from geo.renders import render_key
from geo.store import Store

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

    def chunks() -> Iterable[bytes]:
        positions, withheld = selection(store, get_policy(), name, kwargs)
        metadata = _metadata(store, name, kwargs, skipped, positions, withheld)
        return geojson_chunks(store.layer(name), positions, {"metadata": metadata})

    filename = _filename(store, name, "geojson")
    whole = not (kwargs or skipped)
    return _send(chunks, params.GEOJSON, etag, filename, kept_as=f"kpmap-{name}" if whole else "")


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
    # Each row carries its dataset's attribution, so that a row copied out of the file still
    # credits its source; what was withheld is said in the headers (a CSV has no metadata).
    credits = {
        s["dataset"]: s["attribution"] for s in sources(store, policy, name) if "dataset" in s
    }

    def chunks() -> Iterable[bytes]:
        return csv_chunks(store.layer(name), positions, attribution=credits)

    filename = _filename(store, name, "csv")
    response = _send(chunks, "text/csv", etag, filename, kept_as="" if kwargs else "kpmap-attacks")
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
    # Everything the file's bytes depend on besides the store (whose version names the file).
    key = render_key("gpkg", GPKG_FORMAT, get_policy().key, selections, filter_notes(request.args))
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
    chunks: Callable[[], Iterable[bytes]], mimetype: str, etag: str, filename: str, kept_as: str
) -> Response:
    """A generated download: streamed, or with `Range` from a file (kept in the download cache
    under the name `kept_as` when it is the whole layer, else temporary)."""
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
    response = http.respond(chunks(), mimetype, etag=etag, weak=True, vary=VARY, filename=filename)
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
    parts = []
    policy = get_policy()
    for name, kwargs, skipped in selections:
        positions, withheld = selection(store, policy, name, kwargs)
        metadata = _metadata(store, name, kwargs, skipped, positions, withheld)
        # "kpmap_" and not "kpmap:": GDAL reads a ":" in a metadata key as the end of the key,
        # which made every item one key "kpmap" and QGIS showed only one of them.
        flat = {f"kpmap_{k}": orjson.dumps(v).decode() for k, v in metadata.items()}
        parts.append((store.layer(name), positions, flat))
    write_geopackage(path, parts)


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
    # Files of earlier builds are not asked for again: keep only the newest few.
    for old in sorted(folder.glob(f"{prefix}-*.{ext}"), key=_mtime)[:-KEPT_FILES]:
        old.unlink(missing_ok=True)
    return kept


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
    entry = store.manifest["layers"][name]
    policy = get_policy()
    found = sources(store, policy, name, positions)
    metadata = {
        "title": entry.get("title", name),
        "layer": name,
        "count": len(positions),
        "filters": describe_filters(kwargs),
        "store_built_at": store.manifest.get("built_at"),
        "generated_at": documents.timestamp(),
        "sources": found,
        "licences": sorted({s["licence"] for s in found}),
        "attribution": attribution(found),
        "crs": "WGS 84 longitude/latitude (RFC 7946)",
    }
    if withheld is not None:
        metadata["withheld"] = withheld.notice(policy.datasets)
    if skipped:
        metadata["filters_not_applied"] = skipped
    if "district" not in skipped and (notes := filter_notes(request.args)):
        metadata["filter_notes"] = notes
    return metadata


def _filename(store: Store, name: str, extension: str) -> str:
    day = str(store.manifest.get("built_at", ""))[:10] or "undated"
    return f"kpmap-{name}-{day}.{extension}" if name != "kpmap" else f"kpmap-{day}.{extension}"
