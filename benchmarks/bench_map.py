"""Benchmark of the web map: prints figures, asserts nothing.

    .venv/bin/python -m benchmarks.bench_map [--synthetic 100000] [--runs 5] [--no-folium]

Targets (issue 4): with the default store the map page's HTML <= 300 KB, generated in <= 150 ms
when warm, and "all layers drawn" (window.kpmapReady) in headless Chromium <= 2 s; with a
synthetic 100,000-attack store the page loads in <= 3 s and stays responsive. Issue 15: the
default page drawn faster than plain folium with its CDN files served locally, <= 250 KB in all.

The browser figures are read in the page with the app under gunicorn as `make run` starts it
(gunicorn_conf.py; --gunicorn changes it), each load in a fresh browser context (nothing
cached): "all layers drawn" is performance.now() when the last layer is drawn (window.kpmapReady,
milliseconds since navigation started), "with the basemap" the later of that and the page's load
event (which waits for every basemap tile the first view shows), "first contentful paint" the
first frame the page shows, as presented (layers drawn before it are on screen with it, those
drawn after it a frame after they are drawn), and "bytes" everything the page fetched as it
came over the wire (compressed bodies and headers). "first" is the first load of a URL after
the server started, "warm" the loads after it.

The baseline, in the same browser and run: plain folium (folium.Map fitted to the same view,
over the same basemap tiles from the app), its CDN files (Leaflet, jQuery, Bootstrap, Font
Awesome, Leaflet.awesome-markers) fetched once with `npm pack` into ~/.cache/kpmap-bench and
served by nginx (gzip on, as a CDN would) when /usr/sbin/nginx is there, else by Python's
http.server; "drawn" is its load event. --no-folium skips it. Needs /usr/bin/chromium and the
installed front-end assets (make assets).
"""

import argparse
import getpass
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from geo import paths
from geo.build.pipeline import build_store
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, READY

NGINX = "/usr/sbin/nginx"

ROOT = Path(__file__).resolve().parent.parent


def page_figures(store: Path, runs: int) -> None:
    """HTML size and generation time of `/`, in process (Flask test client)."""
    from app import assets, create_app

    app = create_app({"STORE": str(store)})
    assets.init_app(app)
    client = app.test_client()
    started = time.perf_counter()
    size = len(client.get("/").data)
    first = time.perf_counter() - started
    times, kept = [], []
    for i in range(max(runs, 20)):
        started = time.perf_counter()
        # a view not asked for before: rendered (the page of a request is kept once rendered)
        response = client.get(f"/?center=34,{70 + i / 1000}")
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
        started = time.perf_counter()
        client.get("/")
        kept.append(time.perf_counter() - started)
    print(f"  HTML of /: {size / 1024:.1f} KB (target <= 300 KB)")
    median, worst = statistics.median(times) * 1000, max(times) * 1000
    print(
        f"  generation: first {first * 1000:.0f} ms; warm median {median:.0f} ms, max "
        f"{worst:.0f} ms over {len(times)} (target <= 150 ms warm); a page asked for "
        f"before (kept): median {statistics.median(kept) * 1000:.1f} ms"
    )
    for url in ("/api/map/attacks.json", "/api/map/clusters.json?z=7&view=64,28,79,39"):
        client.get(url)
        started = time.perf_counter()
        body = client.get(url, headers={"Accept-Encoding": "gzip"}).data
        took = time.perf_counter() - started
        print(
            f"  {url.split('?')[0]}: {len(body) / 1024:.1f} KB gzipped, {took * 1000:.0f} ms warm"
        )


class Gunicorn:
    """gunicorn serving the app over `store` on a free local port."""

    def __init__(self, store: Path, options: list[str]):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        gunicorn = Path(sys.executable).parent / "gunicorn"
        self.process = subprocess.Popen(
            [str(gunicorn), *options, "-b", f"127.0.0.1:{self.port}", "wsgi:app"],
            cwd=ROOT,
            env=dict(os.environ, KPMAP_STORE=str(store)),
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/static/kpmap/map.css", timeout=5).close()
                return
            except OSError:
                time.sleep(0.2)
        self.close()
        raise SystemExit("gunicorn did not start within 120 s")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def browser_figures(
    store: Path,
    runs: int,
    paths_to_load: list[str],
    responsiveness: bool,
    options: list[str],
    folium_page: "FoliumPage | None" = None,
) -> None:
    from playwright.sync_api import sync_playwright

    server = Gunicorn(store, options)
    plain = folium_page.serve(server.url) if folium_page else None
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            loads: dict[str, list[dict]] = {path: [] for path in paths_to_load}
            baseline: list[dict] = []
            for i in range(runs + 1):  # the pages in turn, so that both see the same load
                for path in paths_to_load:
                    last = responsiveness and i == runs
                    loads[path].append(load_page(browser, server.url + path, last))
                if plain:
                    baseline.append(load_page(browser, plain.url, False, kpmap=False))
            for path, found in loads.items():
                stats = found[-1]["stats"]
                mode = "server-gridded" if "cells" in stats else "clustered in the browser"
                print(f"  {path}: {stats['count']:,} attacks ({mode})")
                print("    " + summary(found, "all layers drawn", "ready"))
                print("    " + summary(found, "with the basemap", "drawn"))
                print("    " + summary(found, "first contentful paint", "paint"))
                print("    " + summary(found, "bytes", "bytes", unit="KB"))
                if found[-1].get("interaction"):
                    print(found[-1]["interaction"])
            if baseline:
                print(f"  plain folium, its CDN files local ({plain.server}):")
                print("    " + summary(baseline, "drawn (load event)", "drawn"))
                print("    " + summary(baseline, "first contentful paint", "paint"))
                print("    " + summary(baseline, "bytes", "bytes", unit="KB"))
            browser.close()
    finally:
        if plain:
            plain.close()
        server.close()


def load_page(browser, url: str, interact: bool, kpmap: bool = True) -> dict:
    """One load in a fresh context: its times (ms since navigation) and bytes over the wire."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sizes: list = []
    page.on("requestfinished", lambda request: sizes.append(request))
    page.goto(url)
    if kpmap:
        page.wait_for_function(READY, timeout=300_000)
    page.wait_for_function("() => document.readyState === 'complete'", timeout=300_000)
    page.wait_for_load_state("networkidle")
    found: dict = {}
    loaded = page.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventEnd")
    # the first frame on screen: the layers drawn before it are in it, those drawn after it
    # come a frame after they are drawn
    found["paint"] = page.evaluate(
        "() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime"
    )
    if kpmap:
        found["stats"] = page.evaluate("() => window.kpmapStats")
        found["ready"] = found["stats"]["ms"]["ready"]
        found["drawn"] = max(found["ready"], loaded)
    else:
        found["drawn"] = loaded
    total = 0
    for request in sizes:
        measured = request.sizes()
        total += measured["responseBodySize"] + measured["responseHeadersSize"]
    found["bytes"] = total / 1024
    if interact:
        found["interaction"] = interaction_figures(page)
    context.close()
    return found


def summary(found: list[dict], label: str, key: str, unit: str = "ms") -> str:
    first, warm = found[0][key], [f[key] for f in found[1:]]
    if unit == "KB":
        return f"{label}: first {first:,.0f} KB, warm median {statistics.median(warm):,.0f} KB"
    return (
        f"{label}: first {first:.0f} ms, warm median {statistics.median(warm):.0f} ms "
        f"(min {min(warm):.0f}, max {max(warm):.0f}, {len(warm)} loads)"
    )


def interaction_figures(page) -> str:
    """How long a time-slider step and a zoom take to redraw the attacks: until the page's script
    has drawn them again (kpmapStats.draws counts that) and, for a zoom in the browser-clustered
    mode, until Leaflet's zoomend and the next frame (markercluster re-clusters on its own)."""
    gridded = page.evaluate("() => window.kpmapStats.cells !== undefined")
    slider = page.locator(".kpmap-timeline input[type=range]")
    before = page.evaluate("() => window.kpmapStats.draws")
    started = page.evaluate("() => performance.now()")
    slider.evaluate("s => { s.value = s.min; s.dispatchEvent(new Event('input')); }")
    page.wait_for_function(f"() => window.kpmapStats.draws > {before}", timeout=60_000)
    step = page.evaluate("() => performance.now()") - started
    page.evaluate(
        """() => {
            const map = Object.values(window).find(v => v instanceof L.Map);
            window.kpmapBench = { zoomed: false };
            map.once("zoomend", () => requestAnimationFrame(() => requestAnimationFrame(() => {
                window.kpmapBench.zoomed = performance.now();
            })));
        }"""
    )
    before = page.evaluate("() => window.kpmapStats.draws")
    started = page.evaluate("() => performance.now()")
    page.mouse.move(900, 400)
    page.mouse.wheel(0, -300)
    if gridded:
        page.wait_for_function(f"() => window.kpmapStats.draws > {before}", timeout=60_000)
        zoom = page.evaluate("() => performance.now()") - started
    else:
        page.wait_for_function("() => window.kpmapBench.zoomed", timeout=60_000)
        zoom = page.evaluate("() => window.kpmapBench.zoomed") - started
    return f"    redraw after a time-slider step: {step:.0f} ms; after a zoom: {zoom:.0f} ms"


# folium's CDN files (folium.Map's default_js / default_css) by the npm package they come from;
# the two not on npm are stood in for by an empty stylesheet (they style icons the map shows none
# of, so a browser only parses them).
FOLIUM_PACKAGES = {
    "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/": "leaflet@1.9.3",
    "https://code.jquery.com/jquery-3.7.1.min.js": ("jquery@3.7.1", "dist/jquery.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@5.2.2/": "bootstrap@5.2.2",
    "https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@6.2.0/": (
        "@fortawesome/fontawesome-free@6.2.0"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/Leaflet.awesome-markers/2.0.2/": (
        "drmonty-leaflet-awesome-markers@2.0.2"
    ),
}
FOLIUM_CACHE = Path.home() / ".cache" / "kpmap-bench" / "folium-cdn"


class FoliumPage:
    """Plain folium over the app's basemap, its CDN files local (fetched once with npm pack)."""

    def __init__(self, store: Path, work: Path):
        import folium

        from geo.store.files import Store

        self.folder = work / "folium-www"
        (self.folder / "cdn").mkdir(parents=True)
        minx, miny, maxx, maxy = Store.open(store).layer("districts").bounds
        m = folium.Map(location=[(miny + maxy) / 2, (minx + maxx) / 2], zoom_start=7, tiles=None)
        folium.TileLayer(
            tiles="BASEMAP/tiles/basemap/{z}/{x}/{y}.png", attr="kpmap", max_native_zoom=14
        ).add_to(m)
        m.fit_bounds([[miny, minx], [maxy, maxx]])
        html = m.get_root().render()
        for url in re.findall(r'(?:src|href)="(https://[^"]+)"', html):
            html = html.replace(url, "/cdn/" + self._fetch(url))
        self.html = html
        self.url = self.server = ""
        self._stop = None

    def _fetch(self, url: str) -> str:
        """The CDN file at `url`, from its npm package (packed once into FOLIUM_CACHE); its
        name under /cdn/."""
        name = re.sub(r"[^\w.-]", "_", url.split("://", 1)[1])
        target = self.folder / "cdn" / name
        for prefix, package in FOLIUM_PACKAGES.items():
            if url.startswith(prefix):
                spec, inner = package if isinstance(package, tuple) else (package, None)
                inner = inner or url[len(prefix) :]
                if spec == "drmonty-leaflet-awesome-markers@2.0.2":
                    inner = ("js/" if inner.endswith(".js") else "css/") + inner
                root = self._unpacked(spec)
                shutil.copy(root / inner, target)
                # a stylesheet's fonts, beside it as it names them (../webfonts/...)
                for sibling in ("webfonts", "fonts"):
                    if (root / sibling).is_dir() and not (self.folder / sibling).exists():
                        shutil.copytree(root / sibling, self.folder / sibling)
                return name
        target.write_text("/* not on npm: " + url + " */\n")
        return name

    @staticmethod
    def _unpacked(spec: str) -> Path:
        folder = FOLIUM_CACHE / re.sub(r"[^\w.-]", "_", spec)
        if not (folder / "package").is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            tgz = subprocess.run(
                ["npm", "pack", spec, "--silent"],
                cwd=folder,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()[-1]
            subprocess.run(["tar", "xzf", tgz], cwd=folder, check=True)
        return folder / "package"

    def serve(self, basemap: str) -> "FoliumPage":
        (self.folder / "folium.html").write_text(self.html.replace("BASEMAP", basemap))
        if Path(NGINX).exists():
            self._nginx()
        else:
            self._python()
        self.url += "/folium.html"
        return self

    def _nginx(self) -> None:
        prefix = self.folder.parent / "folium-nginx"
        (prefix / "tmp").mkdir(parents=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
        conf = prefix / "nginx.conf"
        conf.write_text(
            f"daemon off; {user} pid {prefix}/nginx.pid; error_log {prefix}/error.log;\n"
            "events { worker_connections 64; }\n"
            f"http {{ access_log off; client_body_temp_path {prefix}/tmp;\n"
            f"  proxy_temp_path {prefix}/tmp; fastcgi_temp_path {prefix}/tmp;\n"
            f"  uwsgi_temp_path {prefix}/tmp; scgi_temp_path {prefix}/tmp;\n"
            "  types { text/html html; text/css css; application/javascript js;\n"
            "    font/woff2 woff2; font/ttf ttf; }\n"
            "  gzip on; gzip_types text/css application/javascript;\n"
            f"  server {{ listen 127.0.0.1:{port}; root {self.folder}; }} }}\n"
        )
        process = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(conf)])
        self._stop = lambda: (process.terminate(), process.wait(timeout=30))
        self.url, self.server = f"http://127.0.0.1:{port}", "nginx"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/folium.html", timeout=5).close()
                return
            except OSError:
                time.sleep(0.1)

    def _python(self) -> None:
        import functools
        import http.server
        import threading

        handler = functools.partial(
            http.server.SimpleHTTPRequestHandler, directory=str(self.folder)
        )
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        self._stop = httpd.shutdown
        self.url, self.server = f"http://127.0.0.1:{httpd.server_port}", "Python's http.server"

    def close(self) -> None:
        if self._stop:
            self._stop()


def synthetic_store(base: Path, n: int, work: Path) -> Path:
    store = work / f"synth-{n}"
    shutil.copytree(base, store)
    kpmap = Path(sys.executable).parent / "kpmap"
    started = time.perf_counter()
    subprocess.run([str(kpmap), "synth", str(n), "--store", str(store)], check=True)
    print(f"  (kpmap synth {n:,} took {time.perf_counter() - started:.0f} s)")
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-folium", action="store_true", help="skip the plain folium page")
    parser.add_argument(
        "--store", type=Path, help="the default store to use (default: one built now)"
    )
    parser.add_argument(
        "--gunicorn",
        default="--config gunicorn_conf.py",
        help="gunicorn options (default: those of `make run`, %(default)s)",
    )
    args = parser.parse_args()
    options = args.gunicorn.split()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = args.store or work / "store"
        if not args.store:
            build_store(store, mirror=paths.mirror() or str(paths.cache_dir()))
        # before the app localises folium's assets (process-wide): the CDN URLs as folium has them
        plain = None if args.no_folium else FoliumPage(store, work)
        print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        print("default store")
        page_figures(store, args.runs)
        print(f"  (browser figures with gunicorn {args.gunicorn})")
        browser_figures(store, args.runs, ["/", "/embed"], False, options, plain)
        if args.synthetic:
            print(f"synthetic store: the default store plus {args.synthetic:,} attacks")
            big = synthetic_store(store, args.synthetic, work)
            page_figures(big, args.runs)
            # about 5,000 matching attacks: the most the browser clusters itself (CLIENT_LIMIT)
            browser_figures(big, args.runs, ["/", "/?from=2025-07"], True, options)
        print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
