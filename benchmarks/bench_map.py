"""Benchmark of the web map: prints figures, asserts nothing.

    .venv/bin/python -m benchmarks.bench_map [--synthetic 100000] [--runs 5]

Targets (issue 4): with the default store the map page's HTML <= 300 KB, generated in <= 150 ms
when warm, and "all layers drawn" (window.kpmapReady) in headless Chromium <= 2 s; with a
synthetic 100,000-attack store the page loads in <= 3 s and stays responsive.

The browser figures are read in the page (performance.now() when the last layer is drawn, i.e.
milliseconds since navigation started) with the app under gunicorn as `make run` starts it
(2 workers of 4 threads; --gunicorn changes it), each load in a fresh browser context (nothing
cached). "first" is the first load of a URL after the server started, "warm" the loads after
it. Needs /usr/bin/chromium and the installed front-end assets (make assets).
"""

import argparse
import os
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
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, READY

ROOT = Path(__file__).resolve().parent.parent


def wsgi_app():
    """The app gunicorn serves here: the factory, with the map's assets localised (idempotent)."""
    from app import assets, create_app

    app = create_app()
    assets.init_app(app)
    return app


def page_figures(store: Path, runs: int) -> None:
    """HTML size and generation time of `/`, in process (Flask test client)."""
    from app import assets, create_app

    app = create_app({"STORE": str(store)})
    assets.init_app(app)
    client = app.test_client()
    started = time.perf_counter()
    size = len(client.get("/").data)
    first = time.perf_counter() - started
    times = []
    for _ in range(max(runs, 20)):
        started = time.perf_counter()
        response = client.get("/")
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    print(f"  HTML of /: {size / 1024:.1f} KB (target <= 300 KB)")
    median, worst = statistics.median(times) * 1000, max(times) * 1000
    print(
        f"  generation: first {first * 1000:.0f} ms; warm median {median:.0f} ms, max "
        f"{worst:.0f} ms over {len(times)} (target <= 150 ms warm)"
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
            [
                str(gunicorn),
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{self.port}",
                "benchmarks.bench_map:wsgi_app()",
            ],
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
    store: Path, runs: int, paths_to_load: list[str], responsiveness: bool, options: list[str]
) -> None:
    from playwright.sync_api import sync_playwright

    server = Gunicorn(store, options)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for path in paths_to_load:
                ready, interaction = [], ""
                for _ in range(runs + 1):
                    page = browser.new_page(viewport={"width": 1280, "height": 800})
                    page.goto(server.url + path)
                    page.wait_for_function(READY, timeout=300_000)
                    stats = page.evaluate("() => window.kpmapStats")
                    ready.append(stats["ms"]["ready"])
                    if responsiveness and len(ready) == runs + 1:
                        interaction = interaction_figures(page)
                    page.close()
                mode = "server-gridded" if "cells" in stats else "clustered in the browser"
                warm = ready[1:]
                print(
                    f"  {path}: {stats['count']:,} attacks ({mode}); all layers drawn: first "
                    f"{ready[0] / 1000:.2f} s, warm median {statistics.median(warm) / 1000:.2f} s"
                    f" (max {max(warm) / 1000:.2f} s, {len(warm)} loads)"
                )
                if interaction:
                    print(interaction)
            browser.close()
    finally:
        server.close()


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
    parser.add_argument(
        "--gunicorn",
        default="--preload --workers 2 --worker-class gthread --threads 4 --timeout 120",
        help="gunicorn options (default: those of `make run`, %(default)s)",
    )
    args = parser.parse_args()
    options = args.gunicorn.split()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = work / "store"
        build_store(store, mirror=paths.mirror() or str(paths.cache_dir()))
        print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        print("default store")
        page_figures(store, args.runs)
        print(f"  (browser figures with gunicorn {args.gunicorn})")
        browser_figures(store, args.runs, ["/", "/embed"], False, options)
        if args.synthetic:
            print(f"synthetic store: the default store plus {args.synthetic:,} attacks")
            big = synthetic_store(store, args.synthetic, work)
            page_figures(big, args.runs)
            # about 5,000 matching attacks: the most the browser clusters itself (CLIENT_LIMIT)
            browser_figures(big, args.runs, ["/", "/?from=2025-07"], True, options)
        print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
