"""Point folium at the front-end files the app serves itself, never at a CDN.

folium's supported hook is the `default_js` / `default_css` lists on its element classes. They are
class attributes, so they are process-wide: `localise_folium()` sets them once at start-up
(`init_app`, called by the factory), for every folium class the map uses. The files come from the
pinned npm packages that app/install_assets.py copies into app/static/vendor/.

folium elements not listed here still name their CDN; the map tests fail on any http(s) or //
URL in a page, so using a new element means adding its npm package and its line here first.
branca's colormap legend (a hard-coded d3 link) is not used for the same reason: the map draws
its own legend.
"""

import functools
import hashlib
import json
import logging
from pathlib import Path

from flask import Flask, Response, request

from app import http

VENDOR_DIR = Path(__file__).parent / "static" / "vendor"

# folium class -> [(asset name folium uses, path under /static/vendor/)]; the files are those
# app/install_assets.py copies. folium's Map also lists jQuery, Bootstrap, Font Awesome and
# Leaflet.awesome-markers, for its Icon markers and Bootstrap-styled popups. This map draws circle
# markers and its own divIcons and styles its popups itself, so they are left out: ~480 KB
# (107 KB gzipped) less to load before the map can draw, on the slow links many readers are on.
JS = {
    "Map": [("leaflet", "leaflet/dist/leaflet.js")],
    "MarkerCluster": [("markerclusterjs", "leaflet.markercluster/dist/leaflet.markercluster.js")],
    "HeatMap": [("leaflet-heat.js", "leaflet.heat/dist/leaflet-heat.js")],
}
CSS = {
    "Map": [("leaflet_css", "leaflet/dist/leaflet.css")],
    "MarkerCluster": [
        ("markerclustercss", "leaflet.markercluster/dist/MarkerCluster.css"),
        ("markerclusterdefaultcss", "leaflet.markercluster/dist/MarkerCluster.Default.css"),
    ],
    "HeatMap": [],
}


def _classes() -> dict:
    import folium
    from folium.plugins import HeatMap, MarkerCluster

    return {"Map": folium.Map, "MarkerCluster": MarkerCluster, "HeatMap": HeatMap}


def localise_folium(base_url: str = "/static/vendor") -> None:
    """Make every folium class the map uses load its JS and CSS from `base_url` (idempotent).

    Each URL carries its package's version (?v=1.9.4), so browsers may keep it for good.
    """
    versions = _installed_versions()

    def url(path: str) -> str:
        version = versions.get(path.split("/", 1)[0])
        return f"{base_url}/{path}" + (f"?v={version}" if version else "")

    for name, cls in _classes().items():
        cls.default_js = [(key, url(path)) for key, path in JS[name]]
        cls.default_css = [(key, url(path)) for key, path in CSS[name]]


def _installed_versions(vendor: Path = VENDOR_DIR) -> dict[str, str]:
    """Folder under vendor/ -> version of the npm package installed there (VERSIONS.json)."""
    from app.install_assets import vendor_dir

    try:
        versions = json.loads((vendor / "VERSIONS.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}  # not installed: init_app warns
    return {vendor_dir(package): version for package, version in versions.items()}


def versioned(url: str, path: Path) -> str:
    """`url` with the first 12 hex digits of the file's sha256 (?v=...), to cache it for good."""
    try:
        modified = path.stat().st_mtime_ns  # an edited file gets a new URL without a restart
    except OSError:
        return url
    return f"{url}?v={_content_hash(path, modified)}"


@functools.lru_cache(maxsize=32)
def _content_hash(path: Path, modified: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def cache_versioned_files(response: Response) -> Response:
    """A static file asked for with ?v= never changes under that URL: let browsers keep it a
    year without asking again (one round trip less per file, per visit, on a slow link)."""
    asked_versioned = request.endpoint == "static" and request.args.get("v")
    if asked_versioned and response.status_code in (200, 304):
        http.cache_for(response, http.YEAR, immutable=True)
    return response


def vendor_paths() -> list[str]:
    """Every file under app/static/vendor/ that the pages link to."""
    return [path for table in (JS, CSS) for entries in table.values() for _, path in entries]


def missing_vendor_files(vendor: Path = VENDOR_DIR) -> list[str]:
    return [path for path in vendor_paths() if not (vendor / path).is_file()]


def init_app(app: Flask) -> None:
    """Localise folium's assets for this process; warn when they were never installed."""
    localise_folium(f"{app.static_url_path}/vendor")
    app.after_request(cache_versioned_files)
    missing = missing_vendor_files()
    if missing:
        # Not fatal: the data endpoints work without them, but the map page would be blank.
        logging.getLogger(__name__).warning(
            "front-end assets are not installed (%s ...): run `make assets` "
            "(npm ci, then app/install_assets.py)",
            missing[0],
        )
