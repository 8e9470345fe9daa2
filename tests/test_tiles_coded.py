"""Cached tiles kept and sent coded (geo/tiles/cache.py), `kpmap tiles seed`'s `.gz` files for
nginx, the fast path for cached tiles (app/tiles.py's FastTiles), the warm tiler, and the
nginx snippet of docs/tiles.md run for real."""

import gzip
import shutil
import sys
import tempfile
import threading
import urllib.request
import zlib
from pathlib import Path

import brotli
import pytest
from werkzeug.serving import make_server
from werkzeug.test import Client

from app import create_app, http
from app.extensions import get_tiler
from geo.tiles import cache as tile_cache
from geo.tiles.cache import CODINGS, MIN_CODED_BYTES, TileCache, TileKey
from geo.tiles.tiler import SHAPE_LAYERS, Tiler
from tests.helpers import run_cli

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

BIG_MVT = "/tiles/districts/0/0/0.mvt"  # ~3 KB: kept coded
SMALL_MVT = "/tiles/attacks/0/0/0.mvt"  # under MIN_CODED_BYTES: sent as it is
EMPTY_MVT = "/tiles/attacks/5/3/10.mvt"
PNG = "/tiles/districts/5/22/13.png"
RETINA = "/tiles/durand_line/0/0/0@2x.png"


def decode(body: bytes, coding: str | None) -> bytes:
    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "br":
        return brotli.decompress(body)
    if coding == "zstd":
        return zstd.decompress(body)
    assert coding is None
    return body


@pytest.fixture
def counted(monkeypatch) -> list[str]:
    """The codings geo.tiles.cache encodes, one entry per encoding made."""
    made: list[str] = []
    encode = tile_cache.encode

    def counting(data: bytes, coding: str) -> bytes:
        made.append(coding)
        return encode(data, coding)

    monkeypatch.setattr(tile_cache, "encode", counting)
    return made


def test_the_cache_codes_as_app_http_does():
    assert MIN_CODED_BYTES == http.MIN_COMPRESS_BYTES
    assert set(CODINGS) == set(http.CODINGS)
    assert "image/png" not in http.COMPRESSIBLE


# --- coded once, sent as negotiated -----------------------------------------------------------


def test_a_coding_is_made_once_per_tile_and_sent_as_negotiated(store_dir, counted):
    client = create_app({"STORE": str(store_dir), "TESTING": True}).test_client()
    plain = client.get(BIG_MVT)
    assert len(plain.data) >= MIN_CODED_BYTES and "Content-Encoding" not in plain.headers
    etags = {plain.headers["ETag"]}
    for header, coding in (
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip;q=0.5, br;q=0.9", "br"),
        ("*", "zstd"),
    ):
        for _ in range(3):
            response = client.get(BIG_MVT, headers={"Accept-Encoding": header})
            assert response.headers["Content-Encoding"] == coding
            assert decode(response.data, coding) == plain.data
            assert response.headers["ETag"] == f'{plain.headers["ETag"][:-1]}-{coding}"'
            assert response.headers["Vary"] == "Accept-Encoding"
            assert int(response.headers["Content-Length"]) == len(response.data)
            etags.add(response.headers["ETag"])
    assert sorted(counted) == ["br", "gzip", "zstd"]  # each made once, then kept
    assert len(etags) == 4
    for refused in ("gzip;q=0", "gzip;q=0, identity", "GZIP;Q=0", "gzip;q=0, *;q=0", "identity"):
        response = client.get(BIG_MVT, headers={"Accept-Encoding": refused})
        assert "Content-Encoding" not in response.headers
        assert response.data == plain.data and response.headers["ETag"] == plain.headers["ETag"]


@pytest.mark.parametrize("path", [SMALL_MVT, EMPTY_MVT, PNG, RETINA])
def test_small_tiles_and_png_are_never_coded(store_dir, counted, path):
    client = create_app({"STORE": str(store_dir), "TESTING": True}).test_client()
    for _ in range(2):
        response = client.get(path, headers={"Accept-Encoding": "gzip, br, zstd"})
        assert response.status_code == 200 and "Content-Encoding" not in response.headers
    assert counted == []


def test_a_304_names_the_coding_the_200_would_have(client):
    first = client.get(BIG_MVT, headers={"Accept-Encoding": "gzip"})
    for sent in (first.headers["ETag"], first.headers["ETag"].replace("-gzip", "")):
        again = client.get(BIG_MVT, headers={"Accept-Encoding": "gzip", "If-None-Match": sent})
        assert again.status_code == 304 and again.data == b""
        assert again.headers["ETag"] == first.headers["ETag"]
        assert again.headers["Vary"] == "Accept-Encoding"


def test_coded_bodies_count_in_the_memory_cache(tmp_path):
    cache = TileCache(max_bytes=10_000)
    data = bytes(range(256)) * 20  # 5 KB, coded
    key = TileKey("districts", 1, 0, 0, "mvt")
    tile = cache.put(key, data, on_disk=False)
    before = cache._bytes
    body = cache.coded(key, tile, "gzip")
    assert cache._bytes == before + len(body)
    assert cache.coded(key, tile, "gzip") is body
    for y in range(1, 4):  # more tiles than fit: the oldest go, their codings with them
        cache.put(TileKey("districts", 1, 0, y, "mvt"), data, on_disk=False)
    assert cache._bytes <= 10_000 and cache.get(key) is None
    assert cache._bytes == sum(t.size() for t in cache._memory.values())


# --- on disk: written with the tile, read back, and seeded for nginx --------------------------


def test_coded_tiles_are_kept_on_disk_beside_the_tile(store_dir, tmp_path, counted):
    config = {"STORE": str(store_dir), "TESTING": True, "TILE_CACHE_DIR": str(tmp_path)}
    client = create_app(config).test_client()
    served = {c: client.get(BIG_MVT, headers={"Accept-Encoding": c}) for c in CODINGS}
    plain = client.get(BIG_MVT)
    tile = tmp_path / "current/districts/0/0/0.mvt"
    assert tile.read_bytes() == plain.data
    for coding, suffix in CODINGS.items():
        kept = tile.with_name(tile.name + suffix).read_bytes()
        assert kept == served[coding].data and decode(kept, coding) == plain.data
    assert sorted(counted) == sorted(CODINGS)
    # another server (process) sends them from disk, never coding them again
    other = create_app(config).test_client()
    for coding in CODINGS:
        again = other.get(BIG_MVT, headers={"Accept-Encoding": coding})
        assert again.data == served[coding].data
        assert again.headers["ETag"] == served[coding].headers["ETag"]
    assert sorted(counted) == sorted(CODINGS)
    # PNG and small tiles: no coded file
    client.get(PNG, headers={"Accept-Encoding": "gzip"})
    assert not list(tmp_path.glob("current/districts/**/*.png.*"))


def test_seed_writes_a_gz_beside_each_vector_tile_for_nginx(store_dir, tmp_path, capsys):
    cache = tmp_path / "tiles"
    argv = ["tiles", "seed", "districts", "--zoom", "0-3", "--format", "mvt,png"]
    argv += ["--cache-dir", str(cache), "--store", str(store_dir)]
    assert run_cli(argv) == 0
    tiles = sorted((cache / "current/districts").rglob("*.mvt"))
    assert any(t.stat().st_size >= MIN_CODED_BYTES for t in tiles)
    for tile in tiles:
        gz = tile.with_name(tile.name + ".gz")
        if tile.stat().st_size >= MIN_CODED_BYTES:
            assert gzip.decompress(gz.read_bytes()) == tile.read_bytes()
        else:
            assert not gz.exists()
    assert not list(cache.glob("current/**/*.png.gz"))
    # a cache seeded before coded files were written gets them on the next run
    for gz in cache.glob("current/**/*.gz"):
        gz.unlink()
    capsys.readouterr()
    assert run_cli(argv) == 0
    assert " 0 written" in capsys.readouterr().out
    assert len(list(cache.glob("current/**/*.mvt.gz"))) == sum(
        t.stat().st_size >= MIN_CODED_BYTES for t in tiles
    )


# --- the fast path ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fast_app(store_dir, tmp_path_factory):
    """An app whose fast path is watched: `view_calls` counts what reaches Flask."""
    directory = tmp_path_factory.mktemp("fast-tiles")
    app = create_app({"STORE": str(store_dir), "TESTING": True, "TILE_CACHE_DIR": str(directory)})
    fast = app.wsgi_app
    inner = fast.wsgi_app
    calls = []

    def counting(environ, start_response):
        calls.append(environ["PATH_INFO"])
        return inner(environ, start_response)

    fast.wsgi_app = counting
    app.view_calls = calls
    app.view = inner
    return app


ENCODINGS = [None, "gzip", "br", "gzip;q=0", "gzip, deflate, br, zstd", "identity", "*;q=0"]


@pytest.mark.parametrize("path", [BIG_MVT, SMALL_MVT, EMPTY_MVT, PNG, RETINA])
@pytest.mark.parametrize("accept", ENCODINGS)
def test_a_cached_tile_is_answered_as_the_view_answers_it(fast_app, path, accept):
    fast, view = fast_app.test_client(), Client(fast_app.view)
    fast.get(path)  # now cached
    etag = fast.get(path, headers={"Accept-Encoding": accept or ""}).headers["ETag"]
    for method in ("GET", "HEAD"):
        for condition in (None, etag, '"stale"', "*", f"W/{etag}"):
            headers = {}
            if accept is not None:
                headers["Accept-Encoding"] = accept
            if condition is not None:
                headers["If-None-Match"] = condition
            before = len(fast_app.view_calls)
            ours = fast.open(path, method=method, headers=headers)
            assert len(fast_app.view_calls) == before, "the fast path answered"
            theirs = view.open(path, method=method, headers=headers)
            assert ours.status == theirs.status
            assert dict(ours.headers) == dict(theirs.headers)
            assert ours.data == theirs.data


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        (f"{BIG_MVT}?actor=ISKP", {}, 200),  # filtered
        (BIG_MVT, {"Range": "bytes=0-10"}, 200),
        (BIG_MVT, {"If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}, 200),
        ("/tiles/districts/15/0/0.mvt", {}, 400),
        ("/tiles/districts/00/0/0.mvt", {}, 200),
        ("/tiles/districts/1/2/0.mvt", {}, 400),
        ("/tiles/nowhere/0/0/0.mvt", {}, 404),
        ("/tiles/districts/0/0/0.jpg", {}, 404),
        ("/tiles/districts.json", {}, 200),
    ],
)
def test_everything_else_goes_to_the_view(fast_app, path, headers, status):
    client = fast_app.test_client()
    client.get(BIG_MVT)
    before = len(fast_app.view_calls)
    assert client.get(path, headers=headers).status_code == status
    assert len(fast_app.view_calls) == before + 1


def test_a_post_to_a_tile_is_still_a_405(fast_app):
    response = fast_app.test_client().post(BIG_MVT)
    assert response.status_code == 405 and "GET" in response.headers["Allow"]


# --- every index built before the first request -----------------------------------------------


def test_the_tiler_is_warm_before_the_first_request(store_dir, monkeypatch):
    warmed = []
    warm = Tiler.warm

    def watching(self):
        warmed.append(self.store.version)
        return warm(self)

    monkeypatch.setattr(Tiler, "warm", watching)
    app = create_app({"STORE": str(store_dir), "TESTING": True})
    with app.test_request_context("/"):
        tiler = get_tiler()
        assert warmed == [tiler.store.version]
        assert tiler._attacks is not None and set(tiler._shapes) == set(SHAPE_LAYERS)
        assert tiler._towns is not None and tiler._labels is not None


# --- the nginx snippet in docs/tiles.md, for real ---------------------------------------------

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed")
def test_the_docs_nginx_snippet_serves_the_seeded_cache(store_dir):
    from benchmarks.bench_tiles_nginx import Nginx
    from benchmarks.net import free_port

    # nginx's workers run as another user: a folder they can read (pytest's are private)
    tmp_path = Path(tempfile.mkdtemp(prefix="kpmap-test-nginx-"))
    tmp_path.chmod(0o755)
    try:
        serve_through_nginx(store_dir, tmp_path, Nginx, free_port())
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def serve_through_nginx(store_dir: Path, tmp_path: Path, Nginx, port: int) -> None:
    cache = tmp_path / "tiles"
    argv = ["tiles", "seed", "districts", "--zoom", "0-2", "--format", "mvt,png"]
    assert run_cli([*argv, "--cache-dir", str(cache), "--store", str(store_dir)]) == 0
    app = create_app({"STORE": str(store_dir), "TILE_CACHE_DIR": str(cache)})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with Nginx(port, server.server_port, cache, tmp_path / "nginx"):
            base = f"http://127.0.0.1:{port}"

            def get(path: str, accept: str | None = None):
                headers = {"Accept-Encoding": accept} if accept is not None else {}
                request = urllib.request.Request(base + path, headers=headers)
                with urllib.request.urlopen(request) as response:
                    return response.headers, response.read()

            tile = cache / "current/districts/0/0/0.mvt"
            headers, body = get(BIG_MVT, "gzip")
            assert headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in headers["Vary"]
            assert body == tile.with_name("0.mvt.gz").read_bytes()  # sent as it is
            assert headers["Content-Type"] == "application/vnd.mapbox-vector-tile"
            assert headers["Access-Control-Allow-Origin"] == "*"
            assert headers["Cache-Control"] == "public, max-age=3600"
            assert "Content-Security-Policy" not in headers  # nginx's own answer
            for accept in (None, "gzip;q=0", "br"):
                headers, body = get(BIG_MVT, accept)
                assert "Content-Encoding" not in headers and body == tile.read_bytes()
            headers, body = get("/tiles/districts/1/1/0.png")
            assert headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")
            assert "Content-Encoding" not in headers
            # a filtered tile, a tile not on disk and the TileJSON are the app's
            headers, body = get(f"{BIG_MVT}?from=2020", "gzip")
            assert "Content-Security-Policy" in headers and zlib.decompress(body, 31)
            headers, body = get("/tiles/attacks/5/3/10.mvt", "gzip")
            assert body == b"" and "Content-Security-Policy" in headers
            headers, body = get("/tiles/districts.json")
            assert b'"tilejson"' in body and "Content-Security-Policy" in headers
            # a tile the app renders on a miss is written with its .gz: nginx serves it next
            assert not (cache / "current/districts/3/5/3.mvt").exists()
            get("/tiles/districts/3/5/3.mvt", "gzip")
            assert (cache / "current/districts/3/5/3.mvt.gz").exists()
            headers, _ = get("/tiles/districts/3/5/3.mvt", "gzip")
            assert headers["Content-Encoding"] == "gzip"
            assert "Content-Security-Policy" not in headers
    finally:
        server.shutdown()
        thread.join()
