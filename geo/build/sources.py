"""The upstream manifest (data/sources.toml) and fetching its files into the cache.

A file comes from the first place that has it with the right sha256: the cache, else the mirror
($KPMAP_MIRROR: a local folder or an http(s) base URL), else its pinned upstream URL when no mirror
is set. A file with the wrong hash is never kept in the cache.
"""

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import pooch
import requests

from geo import paths
from geo.errors import FetchError
from geo.fsutil import atomic_path

# pooch logs every download at INFO; a fetch that fails says so through FetchError instead.
pooch.get_logger().setLevel("WARNING")

HINT = (
    "Set KPMAP_MIRROR to a folder or http(s) base URL that holds the upstream files "
    "(e.g. ../shared/data/upstream), or KPMAP_CACHE to a folder that already holds them."
)


@dataclass(frozen=True)
class Source:
    """One upstream file as data/sources.toml names it."""

    name: str
    file: str
    url: str
    sha256: str
    mirror_path: str
    licence: str
    attribution: str
    homepage: str
    description: str


def read_sources(path: Path | str = paths.SOURCES_TOML) -> dict[str, Source]:
    """Read the manifest: table name -> Source. Raises FetchError naming a malformed entry."""
    try:
        with open(path, "rb") as f:
            tables = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise FetchError(f"{path}: not valid TOML: {exc}") from exc
    keys = {f.name for f in fields(Source)} - {"name"}
    sources = {}
    for name, entry in tables.items():
        if not isinstance(entry, dict) or set(entry) != keys:
            got = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise FetchError(f"{path}: [{name}] must have exactly {sorted(keys)}, got {got}")
        problems = [k for k, v in entry.items() if not isinstance(v, str) or not v.strip()]
        if not re.fullmatch(r"[0-9a-f]{64}", str(entry["sha256"])):
            problems.append("sha256 (64 lowercase hex digits)")
        if not str(entry["url"]).startswith("https://"):
            problems.append("url (https://)")
        # Both names become paths under the cache or mirror: keep them inside it.
        if PurePosixPath(str(entry["file"])).name != entry["file"]:
            problems.append("file (a bare file name)")
        mp = PurePosixPath(str(entry["mirror_path"]))
        if mp.is_absolute() or ".." in mp.parts:
            problems.append("mirror_path (relative, no '..')")
        if problems:
            raise FetchError(f"{path}: [{name}] has a bad value for: {', '.join(problems)}")
        sources[name] = Source(name=name, **entry)
    return sources


def file_sha256(path: Path) -> str:
    """The file's sha256, read in 1 MB chunks (a layer file may be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy_verified(src: Path, dest: Path, sha256: str) -> str | None:
    """Copy src to dest atomically; return the wrong hash (dest untouched), or None if it fits."""
    with atomic_path(dest) as tmp:
        h = hashlib.sha256()
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            for chunk in iter(lambda: fin.read(1 << 20), b""):
                h.update(chunk)
                fout.write(chunk)
        if h.hexdigest() != sha256:
            tmp.unlink()  # not written: atomic_path leaves dest as it was
            return h.hexdigest()
    return None


def fetch(source: Source, cache: Path | str | None = None, mirror: str | None = None) -> Path:
    """Return the path of `source`'s file in the cache, fetching it first if it is not there.

    Defaults: cache is paths.cache_dir() ($KPMAP_CACHE), mirror is paths.mirror() ($KPMAP_MIRROR).
    A cached file whose hash does not match is deleted and fetched again. With a mirror set, the
    upstream URL is not tried (air-gapped machines and CI). Raises FetchError.
    """
    cache = Path(cache) if cache is not None else paths.cache_dir()
    mirror = mirror if mirror is not None else paths.mirror()
    dest = cache / source.file
    looked = []
    if dest.is_file():
        actual = file_sha256(dest)
        if actual == source.sha256:
            return dest
        dest.unlink()  # a wrong file must not survive a failed fetch either
        looked.append(f"cache:    {dest} (wrong hash {actual}, deleted)")
    else:
        looked.append(f"cache:    {dest} (missing)")

    def fail(problem: str) -> FetchError:
        tried = "not tried: a mirror is set" if mirror else "tried"
        where = "\n  ".join([*looked, f"upstream: {source.url} ({tried})"])
        return FetchError(
            f"cannot fetch {source.file} ({source.name}): {problem}\n  {where}\n{HINT}"
        )

    cache.mkdir(parents=True, exist_ok=True)
    if mirror and not re.match(r"https?://", mirror):
        folder = Path(mirror).expanduser()
        if not folder.is_dir():
            looked.append(f"mirror:   {folder} (no such folder)")
            raise fail("the mirror folder does not exist")
        for src in (folder / source.mirror_path, folder / source.file):
            if src.is_file():
                wrong = _copy_verified(src, dest, source.sha256)
                if wrong is None:
                    return dest
                looked.append(f"mirror:   {src} (hash mismatch)")
                raise fail(f"hash mismatch: expected {source.sha256}, got {wrong}")
            looked.append(f"mirror:   {src} (missing)")
        raise fail("missing from the mirror folder")

    url = f"{mirror.rstrip('/')}/{quote(source.mirror_path)}" if mirror else source.url
    if mirror:
        looked.append(f"mirror:   {url}")
    try:
        # pooch downloads to a temp file in the cache and moves it into place only if the hash fits.
        pooch.retrieve(url, known_hash=f"sha256:{source.sha256}", fname=source.file, path=cache)
    except ValueError as exc:  # pooch's hash mismatch: its message has both hashes
        raise fail(f"hash mismatch from {url}: {exc}") from exc
    except (requests.RequestException, OSError) as exc:
        # pooch streams the body and never closes the response on an HTTP error: close it here so
        # its socket is not left open for as long as the exception lives.
        if isinstance(exc, requests.RequestException) and exc.response is not None:
            exc.response.close()
        raise fail(f"download from {url} failed: {exc}") from exc
    return dest


def fetch_all(
    sources: Mapping[str, Source] | None = None,
    cache: Path | str | None = None,
    mirror: str | None = None,
) -> dict[str, Path]:
    """Fetch every source (default: all of data/sources.toml); name -> cached path.

    Tries every file before failing, so one FetchError lists all that could not be fetched.
    """
    sources = read_sources() if sources is None else sources
    fetched, errors = {}, []
    for name, source in sources.items():
        try:
            fetched[name] = fetch(source, cache=cache, mirror=mirror)
        except FetchError as exc:
            errors.append(str(exc))
    if errors:
        raise FetchError("\n\n".join(errors))
    return fetched
