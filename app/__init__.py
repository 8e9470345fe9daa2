"""The kpmap web app: thin Flask views over geo/ (see ../shared/STYLE.md, "The factory").

create_app()                      settings from KPMAP_* environment variables
create_app({"STORE": "/path"})    a test mapping overrides them
"""

from pathlib import Path
from typing import Any

from flask import Flask, current_app

from geo import paths
from geo.store import Store

STORE_KEY = "kpmap.store"


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then KPMAP_* environment variables, then `config`."""
    app = Flask(__name__)
    app.config.from_mapping(
        STORE=str(paths.store_dir()),
        # Basemap tiles from an online provider are opt-in (an xyzservices name, e.g.
        # "OpenStreetMap.Mapnik"); by default the app serves its own basemap.
        ONLINE_BASEMAP="",
        # Optional folder for the disk tile cache laid out as <layer>/<z>/<x>/<y>.<ext>.
        TILE_CACHE_DIR="",
    )
    app.config.from_prefixed_env("KPMAP")  # KPMAP_STORE=... sets STORE, and so on
    if config:
        app.config.from_mapping(config)

    app.extensions[STORE_KEY] = Store.open(Path(app.config["STORE"]))

    from app import errors, security

    errors.register(app)
    security.register(app)
    for blueprint in _blueprints():
        app.register_blueprint(blueprint)
    return app


def _blueprints() -> list:
    """Every blueprint the app serves (imported here so nothing runs at import time)."""
    import importlib

    found = []
    for module in ("app.maps", "app.api", "app.tiles"):
        try:
            found.append(importlib.import_module(module).bp)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return found


def get_store() -> Store:
    """The store the app opened at start-up (one per process, read-only)."""
    return current_app.extensions[STORE_KEY]
