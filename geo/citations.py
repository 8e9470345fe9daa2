"""The publications authored data cites (data/citations.toml), looked up by key."""

import tomllib
from pathlib import Path
from typing import Any

from geo import paths
from geo.errors import BuildError

CITATIONS_TOML = paths.DATA_DIR / "citations.toml"


def read_citations(path: Path = CITATIONS_TOML) -> dict[str, dict[str, str]]:
    """key -> {publication, title, date, url}; publication, title and date are required."""
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    citations = {}
    for key, entry in raw.items():
        missing = [k for k in ("publication", "title", "date") if not entry.get(k)]
        if missing:
            raise BuildError(f"{path}: citation {key!r} lacks {', '.join(missing)}")
        citations[key] = {k: entry.get(k, "") for k in ("publication", "title", "date", "url")}
    return citations


def cite(citations: dict[str, dict[str, str]], key: str, where: str) -> dict[str, Any]:
    """The citation for `key`; BuildError naming `where` it was used if there is none."""
    try:
        return dict(citations[key])
    except KeyError:
        known = ", ".join(citations)
        raise BuildError(f"{where}: unknown citation {key!r}; known: {known}") from None
