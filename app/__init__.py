"""The kpmap web app: thin Flask views over geo/ (see ../shared/STYLE.md, "The factory").

create_app()                      settings from KPMAP_* environment variables
create_app({"STORE": "/path"})    a test mapping overrides them

The factory has no process-wide side effects: the gunicorn entry, wsgi.py, freezes the opened
store out of the garbage collector's sight once the app is made.
"""

from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app import assets, downloads, errors, extensions, feeds, http, maps, ogc, tiles
from app.extensions import get_policy, get_store  # noqa: F401  (the app's public helpers)
from geo import paths
from geo.settings import app_defaults, public_url


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then KPMAP_* environment variables, then `config`."""
    app = Flask(__name__)
    # Every KPMAP_* setting and its default is declared once, in geo.settings.
    app.config.from_mapping(app_defaults(), STORE=str(paths.store_dir()))
    app.config.from_prefixed_env("KPMAP")  # KPMAP_STORE=... sets STORE, and so on
    if config:
        app.config.from_mapping(config)
    # A malformed public URL stops the start here, not every OGC request.
    app.config["PUBLIC_URL"] = public_url(app.config["PUBLIC_URL"])
    proxies = int(app.config["TRUSTED_PROXIES"])
    if proxies:
        # X-Forwarded-For/-Proto/-Host/-Prefix are believed only from this many proxies in front
        # (nginx, a load balancer); otherwise anyone could set them.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_prefix=proxies
        )

    extensions.init_app(app)
    assets.init_app(app)
    if app.config.get("ONLINE_BASEMAP"):
        maps.online_provider(app.config["ONLINE_BASEMAP"])  # ValueError names the setting
    http.register(app)
    errors.register(app)
    for blueprint in (maps.bp, feeds.bp, downloads.bp, ogc.bp, tiles.bp):
        app.register_blueprint(blueprint)
    return app
