"""The HTTP behaviour answers share, in one place: conditional GET (ETag, If-None-Match, 304,
byte ranges) through werkzeug's helpers, one Cache-Control policy, one CORS hook, one
compression path, and one Content-Security-Policy builder with the other security headers.

Views build their answers with `respond` (a body or a stream), `respond_file` (an open file,
with byte ranges) and `not_modified`; `register` installs the hooks that run on every answer,
error answers included:

- compression: zstd, brotli or gzip for a whole body, gzip (level 1, as it streams) for a
  stream, as the client's Accept-Encoding allows with its q-values (`gzip;q=0` is a refusal);
  a view that sends a body it keeps coded (cached vector tiles) sets Content-Encoding itself,
  chosen by the same negotiation (`negotiate`, `negotiate_header`), and is left as it is;
  a strong ETag gets the coding appended (`"abc-gzip"`), and still answers 304. Partial
  answers (206) and files served by byte ranges are never compressed, so a resumed download
  continues the bytes it began with.
- CORS: any origin may read the public data (/ogc, /download, /tiles), errors included.
- security headers: the CSP (scripts, styles and images only from the app itself), nosniff,
  and the referrer policy, unless a view set its own.
"""

import functools
import hashlib
import sys
import zlib
from collections.abc import Iterable, Iterator
from typing import BinaryIO, cast

import brotli
from flask import Flask, Response, request
from isal import isal_zlib
from werkzeug.datastructures import Accept, ETags
from werkzeug.http import parse_accept_header
from werkzeug.wsgi import FileWrapper

from app.extensions import get_policy, get_store

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

# --- Cache-Control ---------------------------------------------------------------------------

DATA_MAX_AGE = 300  # data answers and the map's feeds: a store may be rebuilt any time
YEAR = 365 * 24 * 3600  # files under a versioned URL


def cache_for(response: Response, max_age: int, immutable: bool = False) -> Response:
    """`Cache-Control: public, max-age=N` (and `immutable`): the one policy every answer uses."""
    response.cache_control.public = True
    response.cache_control.max_age = max_age
    response.cache_control.no_cache = None
    if immutable:
        response.cache_control.immutable = True
    return response


# --- conditional GET -------------------------------------------------------------------------


# Bump when a data answer's bytes change for the same store and request, so cached ETags expire.
FORMAT_VERSION = "1"


def data_etag(representation: str, *extra: str) -> str:
    """The ETag of a data answer (downloads, OGC API): same store, same licences, same request,
    same representation (and `extra`) -> same tag, in every worker."""
    manifest = get_store().manifest
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{FORMAT_VERSION}|{manifest.get('built_at')}|{representation}|".encode())
    # The same request answers differently when the operator licenses another dataset; the
    # whole-store downloads kept on disk are named after this tag too.
    digest.update(f"withheld:{get_policy().key}|".encode())
    for name, entry in sorted(manifest.get("layers", {}).items()):
        digest.update(f"{name}:{entry.get('sha256')}|".encode())
    for value in extra:
        digest.update(f"{value}|".encode())
    digest.update(request.path.encode())
    for key, value in sorted(request.args.items(multi=True)):
        digest.update(f"&{key}={value}".encode())
    return digest.hexdigest()


def not_modified(etag: str) -> bool:
    """Whether If-None-Match holds this tag, compared weakly (RFC 9110 13.1.2), with or without
    the content coding that compression appends to it."""
    return none_match(request.if_none_match, etag)


def none_match(tags: ETags, etag: str) -> bool:
    """not_modified for a parsed If-None-Match (werkzeug.http.parse_etags), outside a request."""
    if not tags:
        return False
    return tags.contains_weak(etag) or any(tags.contains_weak(f"{etag}-{c}") for c in CODINGS)


def not_modified_response(
    etag: str, weak: bool = False, max_age: int = DATA_MAX_AGE, vary: str | None = None
) -> Response:
    response = Response(status=304)
    response.set_etag(etag, weak=weak)
    if vary:
        response.headers["Vary"] = vary
    return cache_for(response, max_age)


def respond(
    body: bytes | Iterable[bytes],
    mimetype: str,
    *,
    etag: str | None = None,
    weak: bool = False,
    max_age: int = DATA_MAX_AGE,
    vary: str | None = None,
    filename: str | None = None,
    length: int | None = None,
) -> Response:
    """A 200 with the shared headers. Bytes are sent whole; an iterable of chunks streams.

    A stream is a plain generator, never stream_with_context: its chunks need nothing from the
    request, and a stream holding the request context breaks when a client drops it unread.
    """
    response = Response(body, mimetype=mimetype)
    if etag:
        response.set_etag(etag, weak=weak)
    if vary:
        response.headers["Vary"] = vary
    if filename:
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    if length is not None and not isinstance(body, bytes):
        response.headers["Content-Length"] = str(length)
    return cache_for(response, max_age)


def respond_file(
    f: BinaryIO,
    length: int,
    mimetype: str,
    *,
    etag: str,
    weak: bool = False,
    max_age: int = DATA_MAX_AGE,
    vary: str | None = None,
    filename: str | None = None,
) -> Response:
    """An open file (closed with the response), with `Accept-Ranges: bytes`: a single byte
    range answers 206, one past the end 416 (werkzeug's make_conditional), If-Range included."""
    response = respond(
        _ClosingFile(f),
        mimetype,
        etag=etag,
        weak=weak,
        max_age=max_age,
        vary=vary,
        filename=filename,
        length=length,
    )
    # Not direct_passthrough: werkzeug would then never call the response's close hooks.
    response.call_on_close(f.close)
    conditional = response.make_conditional(request, accept_ranges=True, complete_length=length)
    return cast(Response, conditional)  # werkzeug's stub names its own Response class


class _ClosingFile(FileWrapper):
    """A file as 1 MB chunks, closed once read through (or with the response, read or not);
    seekable, so a byte range is read from where it starts."""

    def __init__(self, f: BinaryIO):
        super().__init__(f, buffer_size=1 << 20)

    def __next__(self) -> bytes:
        try:
            return super().__next__()
        except StopIteration:
            self.close()
            raise


def wants_range() -> bool:
    return request.method in ("GET", "HEAD") and "Range" in request.headers


# --- compression -----------------------------------------------------------------------------

CODINGS = ("zstd", "br", "gzip")  # a whole body: the first of these the client takes
STREAM_CODINGS = ("gzip",)  # a stream: gzip at level 1 keeps pace with the stream
COMPRESSIBLE = frozenset(
    {
        "text/html",
        "text/css",
        "text/csv",
        "text/javascript",
        "application/javascript",
        "image/svg+xml",
        "application/json",
        "application/geo+json",
        "application/vnd.oai.openapi+json",
        "application/vnd.mapbox-vector-tile",
    }
)
MIN_COMPRESS_BYTES = 500
# ISA-L's level 1 for streams (a filtered download, written as it is sent): on GeoJSON 2.7 times
# the speed of zlib's level 1 (470 vs 174 MiB/s on a core here) for the same size, and ~10%
# larger than zlib's default level.
GZIP_STREAM_LEVEL = 1


def accepted(coding: str, accept: Accept | None = None) -> float:
    """The q-value the client's Accept-Encoding (or `accept`, parsed) gives a content coding
    (0: refused or absent). A coding named explicitly wins over `*`, so `gzip;q=0, *` refuses
    gzip."""
    accept = request.accept_encodings if accept is None else accept
    qualities = {value.lower(): q for value, q in accept}
    if coding in qualities:
        return qualities[coding]
    return qualities.get("*", 0)


def negotiate(codings: Iterable[str], accept: Accept | None = None) -> str | None:
    """The coding the client prefers among `codings` (ties go to the order given)."""
    best, best_q = None, 0.0
    for coding in codings:
        q = accepted(coding, accept)
        if q > best_q:
            best, best_q = coding, q
    return best


@functools.lru_cache(maxsize=256)
def negotiate_header(header: str, codings: tuple[str, ...] = CODINGS) -> str | None:
    """negotiate() for the text of an Accept-Encoding header, outside a request: for a body
    that is kept coded (cached tiles). Remembered: clients send few distinct headers."""
    return negotiate(codings, parse_accept_header(header))


def compress(response: Response) -> Response:
    """The one compression path (an after-request hook)."""
    mimetype = response.mimetype
    if mimetype not in COMPRESSIBLE:
        return response
    vary = response.headers.get("Vary", "")
    if "accept-encoding" not in vary.lower():
        response.headers["Vary"] = f"{vary}, Accept-Encoding" if vary else "Accept-Encoding"
    if response.status_code != 200 or "Content-Encoding" in response.headers:
        return response  # a 206 is a range of the identity bytes, never compressed
    if request.endpoint == "static" and response.is_streamed:
        # Flask streams static files; read them (at most ~150 KB here) to compress them whole.
        response.direct_passthrough = False
        response.make_sequence()
    streamed = response.is_streamed
    coding = negotiate(STREAM_CODINGS if streamed else CODINGS)
    if coding is None:
        return response
    if streamed:
        inner = response.response
        response.direct_passthrough = False
        response.response = _gzip_stream(response.iter_encoded(), inner)
        response.headers.pop("Content-Length", None)
    else:
        body = response.get_data()
        if len(body) < MIN_COMPRESS_BYTES:
            return response
        response.set_data(_compress(body, coding))
    response.headers["Content-Encoding"] = coding
    response.headers.pop("Accept-Ranges", None)  # ranges are served of the identity bytes only
    etag, weak = response.get_etag()
    if etag and not weak:
        response.set_etag(f"{etag}-{coding}")
    if not streamed and request.method in ("GET", "HEAD"):
        response.make_conditional(request)
    return response


def _compress(body: bytes, coding: str) -> bytes:
    if coding == "zstd":
        return zstd.compress(body, 3)
    if coding == "br":
        return brotli.compress(body, quality=4)
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip header and trailer
    return compressor.compress(body) + compressor.flush()


def _gzip_stream(chunks: Iterator[bytes], inner: object) -> Iterator[bytes]:
    compressor = isal_zlib.compressobj(GZIP_STREAM_LEVEL, isal_zlib.DEFLATED, 31)  # 31: gzip
    try:
        for chunk in chunks:
            out = compressor.compress(chunk)
            if out:
                yield out
        yield compressor.flush()
    finally:
        close = getattr(inner, "close", None)
        if close is not None:
            close()  # the stream under it (a file, a generator) ends with this one


# --- CORS ------------------------------------------------------------------------------------

PUBLIC_PREFIXES = ("/ogc", "/download/", "/tiles/")
EXPOSED_HEADERS = (
    "ETag, Content-Disposition, Content-Range, Accept-Ranges, Kpmap-Withheld, Kpmap-Withheld-Reason"
)


def cors(response: Response) -> Response:
    """Read-only public data: any site may fetch it, errors included, so clients see why."""
    if request.path.startswith(PUBLIC_PREFIXES):
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response


# --- Content-Security-Policy and the other security headers ------------------------------------

# Scripts, styles, fonts and images only from the app itself. Folium writes its map set-up as an
# inline <script>, so scripts also allow 'unsafe-inline'; no other host is ever allowed.
CSP_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self' 'unsafe-inline'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data: blob:",
    "font-src": "'self' data:",
    "connect-src": "'self'",
    "worker-src": "'self' blob:",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'self'",
}


def content_security_policy(frame_ancestors: str = "'self'", img_hosts: Iterable[str] = ()) -> str:
    """The policy, with the frame ancestors (`*` for pages other sites may frame) and the
    image hosts (an online basemap's) a page needs."""
    directives = dict(CSP_DIRECTIVES, **{"frame-ancestors": frame_ancestors})
    hosts = " ".join(img_hosts)
    if hosts:
        directives["img-src"] += " " + hosts
    return "; ".join(f"{k} {v}" for k, v in directives.items())


CONTENT_SECURITY_POLICY = content_security_policy()


def security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    return response


def register(app: Flask) -> None:
    """Install the hooks (Flask runs after-request hooks in reverse order of registration)."""
    app.after_request(security_headers)
    app.after_request(cors)
    app.after_request(compress)
