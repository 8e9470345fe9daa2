"""Every KPMAP_* setting, declared once: its name, default and what it does.

The web app takes its defaults from here (app.create_app: KPMAP_<NAME> environment variables,
then a test mapping, override them); the command line reads the few it needs through
geo.paths. tests/test_settings.py checks that docs/settings.md lists every one, and
that the code uses no KPMAP_ variable this table lacks.
"""

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Setting:
    name: str  # the environment variable is KPMAP_<name>
    default: Any  # "" for unset
    help: str
    app: bool = True  # a setting of the web app (app.config[name]); else of the command line


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "MIRROR",
        "",
        "a local folder or an http(s) base URL holding the upstream files; when set, the pinned "
        "upstream URLs are not tried",
        app=False,
    ),
    Setting("CACHE", "", "where fetched files are kept (default data/upstream/)", app=False),
    Setting(
        "STORE",
        "",
        "the store folder (default data/store/), or a postgresql:// URL of a database that "
        "`kpmap publish` loaded (a read replica's URL serves as well)",
    ),
    Setting(
        "STORE_POOL_SIZE",
        10,
        "with a postgresql:// store: the most database connections each app process opens",
    ),
    Setting(
        "STORE_CHECK_INTERVAL",
        1.0,
        "seconds between the web app's looks at the store's manifest: a new build or import is "
        "opened beside the old store and served from the next requests on",
    ),
    Setting(
        "ONLINE_BASEMAP",
        "",
        "basemap tiles from an online provider, by xyzservices name (e.g. OpenStreetMap.Mapnik); "
        "unset, the app serves its own basemap",
    ),
    Setting(
        "MAP_CLIENT_LIMIT",
        5000,
        "up to this many matching events are clustered in the browser; above it the server "
        "grids them for each view",
    ),
    Setting(
        "TILE_CACHE_DIR",
        "",
        "a disk cache of tiles laid out as <layer>/<z>/<x>/<y>.<ext> (nginx or a CDN can serve it)",
    ),
    Setting("TILE_MEMORY_MB", 64, "the in-memory tile cache's size"),
    Setting("TILE_MAX_AGE", 3600, "seconds tiles may be cached by browsers and proxies"),
    Setting(
        "DOWNLOAD_CACHE_DIR",
        "",
        "where GeoPackages are kept once written, whole or filtered, for every worker "
        "(default: a private folder of this user's in the system temp folder)",
    ),
    Setting(
        "DOWNLOAD_CACHE_MB",
        2048,
        "how much the downloads kept in DOWNLOAD_CACHE_DIR may take; the least recently used "
        "go first",
    ),
    Setting(
        "MAX_RENDERS",
        2,
        "downloads (GeoPackages) prepared at once, by all the workers sharing DOWNLOAD_CACHE_DIR; "
        "a request that needs one more is answered 503 with Retry-After",
    ),
    Setting(
        "LICENSED_DATASETS",
        "",
        "the restricted datasets (acled, gtd) whose rows the operator is licensed to "
        "redistribute, comma-separated; unset, their rows are counted and drawn as aggregates "
        "only; read by the web app and kpmap tiles",
    ),
    Setting(
        "PUBLIC_URL",
        "",
        "the service's public address (e.g. https://kpmap.example.org, or with a path prefix); "
        "the absolute links of the OGC API documents and TileJSON are built from it, never from "
        "the request's Host header; unset, they name the host the request was sent to (fine on "
        "one machine; set it behind a cache or proxy)",
    ),
    Setting(
        "TRUSTED_PROXIES",
        0,
        "how many proxies in front of the app (nginx, a load balancer) set X-Forwarded-For, "
        "-Proto, -Host and -Prefix; those headers are believed only when this is 1 or more "
        "(werkzeug's ProxyFix)",
    ),
    Setting(
        "TEST_CRASH_AT",
        "",
        "for the crash tests only: a step of geo.store.swap.CRASH_STEPS at which a build or "
        "import kills itself (SIGKILL)",
        app=False,
    ),
)


def default(name: str) -> Any:
    """One setting's default."""
    return next(s.default for s in SETTINGS if s.name == name)


def app_defaults() -> dict[str, Any]:
    """The web app's settings with their defaults, for Flask's config."""
    return {s.name: s.default for s in SETTINGS if s.app}


def public_url(text: str) -> str:
    """PUBLIC_URL checked and without its trailing slash ("" when unset); ValueError says what
    is wrong.

    >>> public_url("https://kpmap.example.org/")
    'https://kpmap.example.org'
    """
    text = (text or "").strip()
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(
            f"PUBLIC_URL={text!r} must be an http(s) address with no query, "
            "e.g. https://kpmap.example.org or https://example.org/kpmap"
        )
    return text.rstrip("/")
