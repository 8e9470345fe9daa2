"""Is a store folder still what its build wrote? Every file against the manifest's record.

The build lists every file it writes in the manifest's `files` (name -> sha256 and size).
`Store.open` checks them all (in a thread, while the layers load: a million-attack store is
~2 GB, hashed at 1-2 GB/s), and so does `kpmap validate`. A file that was changed, cut short
or removed after the build is one line naming it and what to run:

    attacks.geojson in data/store is damaged: its sha256 is not the one manifest.json
    records (it changed after the build); rebuild the store with `kpmap build`

manifest.json itself is the record: it is checked by being readable and of the store's format.
"""

import hashlib
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from geo import paths
from geo.errors import StoreCorrupt

MANIFEST = "manifest.json"
# The build's own record of imported records: a rebuild cannot make it again (see remedy).
IMPORTED = "imported.jsonl"
# A layer's saved index may be removed: Store.open then parses the (checked) layer file instead.
OPTIONAL_SUFFIX = ".index.npz"


def file_record(path: Path) -> dict[str, Any]:
    """{"sha256": ..., "bytes": ...} of one file, read in large chunks."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"sha256": digest, "bytes": path.stat().st_size}


def describe(folder: Path, known: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The manifest's `files`: every file in a freshly built store folder but the manifest.

    `known` are sha256s already computed while writing (file name -> sha256), not read again.
    """
    known = known or {}
    files = {}
    for path in sorted(folder.iterdir()):
        if path.name == MANIFEST or not path.is_file():
            continue
        if path.name in known:
            files[path.name] = {"sha256": known[path.name], "bytes": path.stat().st_size}
        else:
            files[path.name] = file_record(path)
    return files


def recorded(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The files a manifest records (empty for a store built before kpmap recorded them)."""
    files = manifest.get("files")
    return files if isinstance(files, dict) else {}


def problems(
    root: Path, manifest: dict[str, Any], shown: Path | None = None, names: Iterable[str] = ()
) -> list[str]:
    """One line per file of the store folder `root` that is missing, of another size or of
    another sha256 than its manifest records (only `names`, when given). `shown` is the path
    the user gave, named in the lines (default: root)."""
    shown = shown or root
    files = recorded(manifest)
    wanted = list(names) or list(files)
    found = []
    for name in wanted:
        entry = files.get(name)
        if entry is None:
            found.append(f"{name} in {shown} is not listed in {MANIFEST}; {remedy(name, shown)}")
            continue
        path = root / name
        try:
            size = path.stat().st_size
            if size != entry.get("bytes", size):
                found.append(
                    f"{name} in {shown} is damaged: {size} bytes where {MANIFEST} records "
                    f"{entry['bytes']} (cut short or changed after the build); "
                    + remedy(name, shown)
                )
                continue
            if file_record(path)["sha256"] != entry.get("sha256"):
                found.append(
                    f"{name} in {shown} is damaged: its sha256 is not the one {MANIFEST} records "
                    f"(it changed after the build); {remedy(name, shown)}"
                )
        except FileNotFoundError:
            if not name.endswith(OPTIONAL_SUFFIX):
                found.append(f"{name} is missing from {shown}; {remedy(name, shown)}")
        except OSError as exc:
            found.append(f"{name} in {shown} cannot be read ({exc.strerror or exc})")
    return found


def remedy(name: str, shown: Path) -> str:
    """What to run about a damaged file: a rebuild makes every file again but the imported
    records, which only the provider files they came from can give back."""
    option = "" if Path(shown) == paths.store_dir() else f" --store {shown}"
    if name == IMPORTED:
        return (
            "the imported records cannot be trusted and a rebuild would keep them: move the "
            f"store aside, then run `kpmap build{option}` and `kpmap import` again for each "
            "provider file"
        )
    return f"rebuild the store with `kpmap build{option}` (imported records are kept)"


def verify(root: Path, manifest: dict[str, Any], shown: Path | None = None, **kw) -> None:
    """Raise StoreCorrupt, one line naming the (first) damaged file, if any file is damaged."""
    _raise_first(problems(root, manifest, shown, **kw))


def _raise_first(found: list[str]) -> None:
    if found:
        more = f" (and {len(found) - 1} more damaged file(s): `kpmap validate` lists them)"
        raise StoreCorrupt(found[0] + (more if len(found) > 1 else ""))


class Verification:
    """`verify` running in a thread (hashing releases the GIL), so that it overlaps the load."""

    def __init__(
        self,
        root: Path,
        manifest: dict[str, Any],
        shown: Path | None = None,
        names: Iterable[str] = (),
    ):
        self._found: list[str] = []
        self._error: BaseException | None = None
        args = (root, manifest, shown, list(names))
        self._thread = threading.Thread(
            target=self._run, args=args, name="kpmap-verify", daemon=True
        )
        self._thread.start()

    def _run(
        self, root: Path, manifest: dict[str, Any], shown: Path | None, names: list[str]
    ) -> None:
        try:
            self._found = problems(root, manifest, shown, names)
        except BaseException as exc:  # handed to the waiting thread
            self._error = exc

    def result(self) -> None:
        """Wait for the check; raise StoreCorrupt (one line) if a file is damaged."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        _raise_first(self._found)
