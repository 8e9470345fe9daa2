"""Tile benchmark: cold and cached tiles on a synthetic 1,000,000-attack store, and a load test.

    python -m benchmarks.bench_tiles [STORE_DIR] [--samples 40] [--load] [--duration 30]

Without STORE_DIR it builds one with `kpmap synth 1000000 --store /tmp/kpmap-bench-tiles`
(about 1.5 minutes; kept for the next run). Prints figures; asserts nothing.

- cold: a tile that no cache holds, through the whole Flask request (parse, render, respond),
  for MVT and PNG at every zoom 0-14, on tiles sampled over the attacks' bounds (some of which
  are empty: KP is not a rectangle). The attack index is built first ("first use", timed apart).
- cached: the same request again, answered from the in-memory LRU.
- load (--load): wrk against gunicorn as `make run` starts it (gunicorn_conf.py, wsgi:app) on
  cached tiles, after a warm-up, with `Accept-Encoding: gzip` as browsers send it. wrk runs on
  the same machine, so it takes CPU from the server. benchmarks/bench_tiles_nginx.py sets the
  same load against nginx serving the seeded disk cache, side by side.
"""

import argparse
import gc
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks.net import free_port
from geo import tiles
from geo.tiles import canvas
from geo.tiles.points import CLUSTER_MAXZOOM

TARGETS = {"mvt": 100.0, "png": 150.0, "cached": 2.0, "load": 1500.0}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_tiles")
    parser.add_argument("store", nargs="?", type=Path, default=Path("/tmp/kpmap-bench-tiles"))
    parser.add_argument("--attacks", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=40, help="tiles per zoom (default 40)")
    parser.add_argument("--load", action="store_true", help="also run wrk against gunicorn")
    parser.add_argument("--duration", type=int, default=30, help="wrk seconds (default 30)")
    args = parser.parse_args()

    ensure_store(args.store, args.attacks)
    from app import create_app
    from app.extensions import get_tile_cache, get_tiler

    started = time.perf_counter()
    app = create_app({"STORE": str(args.store), "TESTING": True})
    elapsed = time.perf_counter() - started
    print(f"create_app (Store.open, tables, the tiler warmed): {elapsed:.1f} s")
    with app.test_request_context():
        tiler, cache = get_tiler(), get_tile_cache()
    started = time.perf_counter()
    tiles.Tiler(tiler.store, tiler.policy).warm()
    count = len(tiler.attack_index().all.points)
    print(
        f"Tiler.warm alone ({count:,} attacks; deaths from the index, Morton sort, clusters for "
        f"z0-{CLUSTER_MAXZOOM}, shapes, labels, towns): {time.perf_counter() - started:.1f} s"
    )
    client = app.test_client()
    bounds = tiles.layer_bounds(tiler.store, "attacks")

    print("\ncold tiles (no cache), ms per request:")
    cold = run_cold(client, cache, bounds, args.samples, seed=0)
    print("\ncold tiles again after gc.freeze() (the store's objects out of the collector's way):")
    gc.freeze()
    run_cold(client, cache, bounds, args.samples, seed=1)

    urls = [u for u, empty in cold if not empty]
    print("\ncached tiles (in-memory LRU), ms per request:")
    run_cached(client, urls)
    run_filtered(client, cache, bounds)
    if args.load:
        load_test(args.store, urls, args.duration)
    return 0


def ensure_store(store: Path, attacks: int) -> None:
    if (store / "manifest.json").exists():
        return
    kpmap = Path(sys.executable).with_name("kpmap")
    print(f"building {store} with {attacks:,} synthetic attacks ...", flush=True)
    subprocess.run([str(kpmap), "synth", str(attacks), "--store", str(store)], check=True)


def sample_tiles(bounds, z: int, n: int, rng: random.Random) -> list[tiles.Tile]:
    found = list(tiles.tiles_in_bounds(bounds, z))
    rng.shuffle(found)
    return found[:n]


def ms(values: list[float]) -> str:
    a = np.array(values) * 1000
    return f"p50 {np.percentile(a, 50):6.1f}  p95 {np.percentile(a, 95):6.1f}  max {a.max():6.1f}"


def run_cold(client, cache, bounds, samples: int, seed: int) -> list[tuple[str, bool]]:
    rng = random.Random(seed)
    pooled: dict[str, list[float]] = {"mvt": [], "png": []}
    full: dict[str, list[float]] = {"mvt": [], "png": []}  # tiles with something in them
    seen = []
    for z in range(tiles.MAX_ZOOM + 1):
        chosen = sample_tiles(bounds, z, samples, rng)
        line = [f"  z{z:<2} {len(chosen):3} tiles"]
        for fmt in ("mvt", "png"):
            times, empty = [], 0
            for z_, x, y in chosen:
                url = f"/tiles/attacks/{z_}/{x}/{y}.{fmt}"
                cache.clear_memory()
                started = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - started)
                assert response.status_code == 200, (url, response.status_code)
                is_empty = response.data in (b"", canvas.empty_png(1))
                empty += is_empty
                if not is_empty:
                    full[fmt].append(times[-1])
                seen.append((url, is_empty))
            pooled[fmt] += times
            line.append(f"{fmt} {ms(times)} ({empty} empty)")
        print("  |  ".join(line))
    for fmt, target in (("mvt", TARGETS["mvt"]), ("png", TARGETS["png"])):
        p95 = np.percentile(np.array(pooled[fmt]) * 1000, 95)
        verdict = "meets" if p95 <= target else "MISSES"
        print(f"  all zooms, {fmt}: {ms(pooled[fmt])}  -> {verdict} p95 <= {target:.0f} ms")
        p95 = np.percentile(np.array(full[fmt]) * 1000, 95)
        verdict = "meets" if p95 <= target else "MISSES"
        print(f"    non-empty only ({len(full[fmt])}): {ms(full[fmt])}  -> {verdict}")
    return seen


def run_cached(client, urls: list[str]) -> None:
    times = []
    for url in urls:
        client.get(url)
        for _ in range(5):
            started = time.perf_counter()
            client.get(url)
            times.append(time.perf_counter() - started)
    p95 = np.percentile(np.array(times) * 1000, 95)
    verdict = "meets" if p95 <= TARGETS["cached"] else "MISSES"
    print(f"  {len(times)} requests: {ms(times)}  -> {verdict} p95 <= {TARGETS['cached']:.0f} ms")


def run_filtered(client, cache, bounds) -> None:
    rng = random.Random(2)
    query = "?actor=ISKP,TTP&from=2018&to=2022-06"
    print(f"\nfiltered tiles ({query}), cold, ms per request:")
    z, x, y = sample_tiles(bounds, 8, 1, rng)[0]
    cache.clear_memory()
    started = time.perf_counter()
    client.get(f"/tiles/attacks/{z}/{x}/{y}.mvt{query}")
    first = time.perf_counter() - started
    print(f"  first tile (selects the attacks, clusters them): {first * 1000:.0f} ms")
    times = []
    for z in range(tiles.MAX_ZOOM + 1):
        for z_, x, y in sample_tiles(bounds, z, 10, rng):
            cache.clear_memory()
            started = time.perf_counter()
            client.get(f"/tiles/attacks/{z_}/{x}/{y}.mvt{query}")
            times.append(time.perf_counter() - started)
    print(f"  then {len(times)} tiles over z0-14: {ms(times)}")


def load_test(store: Path, urls: list[str], duration: int) -> None:
    from benchmarks.bench_tiles_nginx import Gunicorn, write_script, wrk_run

    print("\nload test: wrk against gunicorn as `make run` starts it, cached tiles, gzip asked")
    wrk = shutil.which("wrk")
    if wrk is None:
        print("  skipped: wrk is not installed (apt-get install -y wrk)")
        return
    env = {**os.environ, "KPMAP_STORE": str(store)}
    with tempfile.TemporaryDirectory() as work:
        with Gunicorn(free_port(), "wsgi:app", env, Path(work)) as server:
            wait_until_up(server.url + "/tiles/attacks.json")
            paths = urls[:400]
            script = write_script(Path(work) / "gzip.lua", paths, {"Accept-Encoding": "gzip"})
            wrk_run(wrk, server, script, 5, 32)  # fills every worker's memory cache
            result = wrk_run(wrk, server, script, duration, 32)
    ok = result["rate"] >= TARGETS["load"] and not result["errors"]
    print(f"  {len(paths)} tile URLs, {duration} s, 2 threads, 32 connections")
    print(
        f"  {result['rate']:,.0f} tiles/s, p50 {result['p50']:.1f} ms, "
        f"p99 {result['p99']:.1f} ms, errors {result['errors']} (load {result['load']})"
    )
    print(f"  -> {'meets' if ok else 'MISSES'} >= {TARGETS['load']:.0f} tiles/s, no errors")


def wait_until_up(url: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"gunicorn did not answer {url} in {timeout} s")


if __name__ == "__main__":
    sys.exit(main())
