"""geo/build/sources.py: the manifest and fetching from cache, mirror folder and a local HTTP
mirror.

Everything is synthetic and local except the last two tests, which read the real manifest and (with
KPMAP_MIRROR set) fetch the real files from the offline mirror folder.
"""

import functools
import hashlib
import os
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from geo.build.sources import Source, fetch, fetch_all, read_sources
from geo.errors import FetchError

# Synthetic test data, not a real boundary.
GEOJSON = (
    b'{"type": "FeatureCollection", "name": "synthetic test data", "features": [{"type": '
    b'"Feature", "id": 1, "properties": {"shapeName": "Synthetic"}, "geometry": {"type": '
    b'"Point", "coordinates": [71.5, 34.0]}}]}\n'
)
CORRUPT = GEOJSON.replace(b"71.5", b"72.5")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_source(name: str = "tiny", data: bytes = GEOJSON) -> Source:
    file = f"{name}.geojson"
    return Source(
        name=name,
        file=file,
        url=f"https://example.invalid/pinned/{file}",
        sha256=sha(data),
        mirror_path=f"synthetic/{file}",
        licence="Public Domain",
        attribution="synthetic",
        homepage="https://example.invalid",
        description="synthetic test data",
    )


def put(folder: Path, relpath: str, data: bytes) -> Path:
    path = folder / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def cache_files(cache: Path) -> list[str]:
    """Everything in the cache, temp files included: a failed fetch must leave nothing behind."""
    return sorted(p.name for p in cache.rglob("*")) if cache.exists() else []


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def served(tmp_path: Path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/served: (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=folder))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("layout", ["mirror_path", "flat"])
def test_fetch_from_mirror_folder(tmp_path, cache, layout):
    source = make_source()
    mirror = tmp_path / "mirror"
    put(mirror, source.mirror_path if layout == "mirror_path" else source.file, GEOJSON)
    path = fetch(source, cache=cache, mirror=str(mirror))
    assert path == cache / source.file
    assert path.read_bytes() == GEOJSON
    assert cache_files(cache) == [source.file]


def test_fetch_from_http_mirror(cache, served):
    folder, base = served
    source = make_source()
    put(folder, source.mirror_path, GEOJSON)
    path = fetch(source, cache=cache, mirror=base + "/")
    assert path.read_bytes() == GEOJSON
    assert cache_files(cache) == [source.file]


@pytest.mark.parametrize("mirror", ["empty-folder", "http://127.0.0.1:9"])
def test_cache_hit_needs_no_mirror(tmp_path, cache, mirror):
    source = make_source()
    put(cache, source.file, GEOJSON)
    (tmp_path / "empty-folder").mkdir()
    mirror = str(tmp_path / mirror) if mirror == "empty-folder" else mirror
    assert fetch(source, cache=cache, mirror=mirror).read_bytes() == GEOJSON


def test_corrupt_file_in_mirror_folder(tmp_path, cache):
    source = make_source()
    put(tmp_path / "mirror", source.mirror_path, CORRUPT)
    with pytest.raises(FetchError) as err:
        fetch(source, cache=cache, mirror=str(tmp_path / "mirror"))
    message = str(err.value)
    assert source.file in message
    assert sha(GEOJSON) in message and sha(CORRUPT) in message
    assert cache_files(cache) == []


def test_corrupt_file_over_http(cache, served):
    folder, base = served
    source = make_source()
    put(folder, source.mirror_path, CORRUPT)
    with pytest.raises(FetchError) as err:
        fetch(source, cache=cache, mirror=base)
    assert source.file in str(err.value)
    assert sha(GEOJSON) in str(err.value) and sha(CORRUPT) in str(err.value)
    assert cache_files(cache) == []


def test_missing_file_in_mirror_folder(tmp_path, cache):
    source = make_source()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with pytest.raises(FetchError) as err:
        fetch(source, cache=cache, mirror=str(mirror))
    message = str(err.value)
    for expected in [
        source.file,
        str(cache / source.file),
        str(mirror / source.mirror_path),
        str(mirror / source.file),
        source.url,
        "KPMAP_MIRROR",
        "KPMAP_CACHE",
    ]:
        assert expected in message
    assert cache_files(cache) == []


def test_missing_mirror_folder(tmp_path, cache):
    source = make_source()
    with pytest.raises(FetchError, match="mirror folder does not exist") as err:
        fetch(source, cache=cache, mirror=str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(err.value)


def test_http_404(cache, served):
    _, base = served
    source = make_source()
    with pytest.raises(FetchError, match="404") as err:
        fetch(source, cache=cache, mirror=base)
    assert f"{base}/{source.mirror_path}" in str(err.value)
    assert "KPMAP_MIRROR" in str(err.value)
    assert cache_files(cache) == []


@pytest.mark.parametrize("kind", ["folder", "http"])
def test_corrupt_cache_file_is_replaced(tmp_path, cache, served, kind):
    source = make_source()
    put(cache, source.file, CORRUPT)
    folder, base = served
    put(folder, source.mirror_path, GEOJSON)
    path = fetch(source, cache=cache, mirror=str(folder) if kind == "folder" else base)
    assert path.read_bytes() == GEOJSON
    assert cache_files(cache) == [source.file]


def test_corrupt_cache_file_is_deleted_when_fetch_fails(tmp_path, cache):
    source = make_source()
    put(cache, source.file, CORRUPT)
    (tmp_path / "mirror").mkdir()
    with pytest.raises(FetchError, match="wrong hash"):
        fetch(source, cache=cache, mirror=str(tmp_path / "mirror"))
    assert cache_files(cache) == []


def test_fetch_all_reports_every_failure(tmp_path, cache):
    good, bad = make_source("good"), make_source("bad")
    put(tmp_path / "mirror", good.file, GEOJSON)
    sources = {"good": good, "bad": bad}
    with pytest.raises(FetchError) as err:
        fetch_all(sources, cache=cache, mirror=str(tmp_path / "mirror"))
    assert bad.file in str(err.value) and good.file not in str(err.value)
    put(tmp_path / "mirror", bad.file, GEOJSON)
    paths = fetch_all(sources, cache=cache, mirror=str(tmp_path / "mirror"))
    assert paths == {"good": cache / good.file, "bad": cache / bad.file}


@pytest.mark.parametrize(
    "entry, problem",
    [
        ('file = "x"', "must have exactly"),
        ('sha256 = "abc"', "sha256"),
        ('url = "http://example.invalid/x"', "url"),
        ('file = "../x.geojson"', "file"),
        ('mirror_path = "/etc/x.geojson"', "mirror_path"),
    ],
)
def test_read_sources_rejects_malformed_entry(tmp_path, entry, problem):
    good = {
        "file": '"x.geojson"',
        "url": '"https://example.invalid/x.geojson"',
        "sha256": f'"{sha(GEOJSON)}"',
        "mirror_path": '"synthetic/x.geojson"',
        "licence": '"Public Domain"',
        "attribution": '"synthetic"',
        "homepage": '"https://example.invalid"',
        "description": '"synthetic"',
    }
    key, value = entry.split(" = ")
    table = good | {key: value} if problem != "must have exactly" else {key: value}
    toml = tmp_path / "sources.toml"
    toml.write_text("[x]\n" + "".join(f"{k} = {v}\n" for k, v in table.items()))
    with pytest.raises(FetchError, match=problem):
        read_sources(toml)
    (tmp_path / "ok.toml").write_text("[x]\n" + "".join(f"{k} = {v}\n" for k, v in good.items()))
    assert read_sources(tmp_path / "ok.toml")["x"].file == "x.geojson"


def test_real_manifest():
    sources = read_sources()
    assert set(sources) >= {"cod_adm1_shp", "cod_adm2_shp", "cod_adm2_dbf", "cod_lines_shp"}
    for name, source in sources.items():
        assert source.name == name
        assert re.fullmatch(r"[0-9a-f]{64}", source.sha256)
        # pinned at a commit (a branch name would let the bytes change under the hash)
        pinned = r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[0-9a-f]{40}/"
        assert re.match(pinned, source.url)
        assert source.url.endswith("/" + source.file)
        assert source.mirror_path.endswith(source.file)


@pytest.mark.skipif(
    not os.environ.get("KPMAP_MIRROR"),
    reason="KPMAP_MIRROR is unset (CI sets it to ../shared/data/upstream)",
)
def test_fetch_real_files_from_mirror(tmp_path):
    sources = read_sources()
    paths = fetch_all(sources, cache=tmp_path, mirror=os.environ["KPMAP_MIRROR"])
    assert set(paths) == set(sources)
    for name, path in paths.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sources[name].sha256
