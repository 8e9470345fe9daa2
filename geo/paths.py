"""Where kpmap keeps its files by default. Every default can be overridden by an environment
variable or a command-line option; nothing here touches the disk."""

import os
from pathlib import Path

# The checkout: kpmap is installed editable (`pip install -e .`) and run from its checkout.
ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"
SOURCES_TOML = DATA_DIR / "sources.toml"


def cache_dir() -> Path:
    """Folder for fetched upstream files: $KPMAP_CACHE, else data/upstream/ in the checkout."""
    return Path(os.environ.get("KPMAP_CACHE") or DATA_DIR / "upstream")


def store_dir() -> Path:
    """Folder of the built store: $KPMAP_STORE, else data/store/ in the checkout."""
    return Path(os.environ.get("KPMAP_STORE") or DATA_DIR / "store")


def mirror() -> str | None:
    """$KPMAP_MIRROR: a local folder or an http(s) base URL that holds the upstream files."""
    return os.environ.get("KPMAP_MIRROR") or None
