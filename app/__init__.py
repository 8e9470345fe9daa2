"""The kpmap web app: thin Flask views over geo/ (see ../shared/STYLE.md, "The factory").

create_app()                      settings from KPMAP_* environment variables
create_app({"STORE": "/path"})    a test mapping overrides them
"""

import gc
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask_compress import Compress

from geo import paths
from geo.licences import RowPolicy
from geo.settings import app_defaults
from geo.store import Store
from geo.store.live import LiveStore

STORE_KEY = "kpmap.store"
POLICY_KEY = "kpmap.row_policy"


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then KPMAP_* environment variables, then `config`."""
    app = Flask(__name__)
    # Every KPMAP_* setting and its default is declared once, in geo.settings.
    app.config.from_mapping(app_defaults(), STORE=str(paths.store_dir()))
    app.config.from_mapping(
        # Pages, scripts, styles, small JSON and vector tiles are compressed for slow links
        # (Leaflet: 148 KB -> ~40 KB; an MVT tile by 20-45 %). The API and the map's feeds
        # compress their large JSON and CSV themselves, as they stream; PNG is compressed already.
        COMPRESS_MIMETYPES=[
            "text/html",
            "text/css",
            "text/javascript",
            "application/javascript",
            "image/svg+xml",
            "application/json",
            "application/vnd.mapbox-vector-tile",
        ],
        COMPRESS_STREAMS=False,
    )
    app.config.from_prefixed_env("KPMAP")  # KPMAP_STORE=... sets STORE, and so on
    if config:
        app.config.from_mapping(config)

    # [live-store hook 1] The store at STORE, switched to a new build or import between
    # requests (geo.store.live); views take one version per request through get_store().
    app.extensions[STORE_KEY] = LiveStore(
        Path(app.config["STORE"]),
        check_every=float(app.config["STORE_CHECK_INTERVAL"]),
        freeze=True,  # a new store too leaves the collector's sight, as gc.freeze() below
    )
    # An unknown dataset name stops the start here, with the names there are, rather than
    # leaving the operator to believe rows are served that are not (or the reverse).
    app.extensions[POLICY_KEY] = RowPolicy.from_setting(app.config["LICENSED_DATASETS"])
    # The store lives as long as the process: move it out of the cyclic collector's sight, or
    # every collection walks a million attacks (90-220 ms pauses on a 1M store). Frozen objects
    # are never written to by the collector, so workers forked after this (gunicorn --preload)
    # keep sharing the store's memory pages.
    gc.freeze()

    from app import assets, errors, security

    assets.init_app(app)
    Compress(app)
    # Registered after Compress, so it runs before it (Flask runs these hooks in reverse).
    app.after_request(_buffer_static_files)
    errors.register(app)
    security.register(app)
    for blueprint in _blueprints():
        app.register_blueprint(blueprint)
    return app


def _buffer_static_files(response: Response) -> Response:
    """Read a static file into the response, so flask-compress compresses it whole.

    Flask streams static files; flask-compress would compress such a stream chunk by chunk
    without ever closing the file. The files here are at most ~150 KB.
    """
    if request.endpoint == "static" and response.is_streamed and response.status_code == 200:
        response.direct_passthrough = False  # so the server closes the response, and the file
        response.make_sequence()
    return response


def _blueprints() -> list:
    """Every blueprint the app serves (imported here so nothing runs at import time)."""
    from app import api, maps, tiles

    return [maps.bp, api.bp, tiles.bp]


def get_live() -> LiveStore:
    """The app's live store (geo.store.live): the store at STORE, of whichever version."""
    return current_app.extensions[STORE_KEY]


def get_store() -> Store:
    """The store this request answers from (read-only). [live-store hook 2] Taken from the live
    store once per request and kept in `g`, so one answer never mixes two versions, and a
    switch happens only between requests."""
    if "kpmap_store" not in g:
        g.kpmap_store = get_live().current()
    return g.kpmap_store


def get_policy() -> RowPolicy:
    """Which datasets' rows this app withholds (LICENSED_DATASETS, geo.licences)."""
    return current_app.extensions[POLICY_KEY]
