"""Benchmark of the OGC API and downloads (issue 5) on a SYNTHETIC 1,000,000-attack store.

    python -m benchmarks.bench_api [STORE]

Without STORE, builds one with `kpmap synth 1000000` in a temporary folder (a few minutes; needs
KPMAP_MIRROR or a filled fetch cache). Prints figures; asserts nothing. Targets: items with a
bbox, a datetime interval and limit=1000 answer in p95 <= 100 ms (server side, warm: timed
around the Flask test client, no network); the full attacks GeoJSON download streams at
>= 50 MB/s with flat memory (peak resident memory while streaming, over the level before it).
benchmarks/bench_downloads.py measures the downloads over HTTP, beside nginx (issue 15).
"""

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ITEMS_REQUESTS = 300


def rss_mb() -> float:
    """This process's resident memory now (Linux), in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRss:
    """Samples resident memory every 10 ms in a thread; `.peak` is the highest seen."""

    def __enter__(self):
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def build_store(folder: Path) -> Path:
    store = folder / "store"
    cmd = [sys.executable, "-m", "geo.cli", "synth", "1000000", "--store", str(store)]
    print("building:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return store


def bench_items(client) -> None:
    rng = np.random.default_rng(5)
    times, matched, returned = [], [], []
    for i in range(ITEMS_REQUESTS + 20):
        x, y = rng.uniform(70.0, 72.5), rng.uniform(32.0, 35.5)
        first = date(2015, 1, 1) + timedelta(days=int(rng.integers(0, 3650)))
        last = first + timedelta(days=365)
        url = (
            f"/ogc/collections/attacks/items?bbox={x:.3f},{y:.3f},{x + 1:.3f},{y + 1:.3f}"
            f"&datetime={first}T00:00:00Z/{last}T00:00:00Z&limit=1000"
        )
        started = time.perf_counter()
        response = client.get(url)
        body = response.data
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, body[:300]
        if i < 20:
            continue  # warm-up
        times.append(elapsed)
        doc_head = body[:200].decode()
        matched.append(int(doc_head.split('"numberMatched":')[1].split(",")[0]))
        returned.append(int(doc_head.split('"numberReturned":')[1].split(",")[0]))
    ms = np.array(times) * 1e3
    print(
        f"items bbox 1°x1° + 1-year datetime + limit=1000 ({ITEMS_REQUESTS} requests): "
        f"p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms, "
        f"max {ms.max():.1f} ms; numberMatched median {int(statistics.median(matched))}, "
        f"numberReturned median {int(statistics.median(returned))}  [target p95 <= 100 ms]"
    )


def bench_download(
    client, url: str, label: str, headers: dict | None = None, unpacked: int = 0
) -> int:
    """Stream one download to nowhere; print its rate and memory; return its size in bytes."""
    before = rss_mb()
    with PeakRss() as peak:
        started = time.perf_counter()
        response = client.get(url, headers=headers or {}, buffered=False)
        size = 0
        first = None
        for chunk in response.response:
            if first is None:
                first = time.perf_counter() - started
            size += len(chunk)
        response.close()
        elapsed = time.perf_counter() - started
    assert response.status_code == 200
    rate = f"{size / 2**20 / elapsed:.0f} MB/s"
    if unpacked:
        rate += f" on the wire, {unpacked / 2**20 / elapsed:.0f} MB/s of {unpacked / 2**20:.0f} MB"
    print(
        f"{label}: {size / 2**20:.0f} MB in {elapsed:.2f} s = {rate}, "
        f"first byte after {first * 1e3:.0f} ms; resident memory {before:.0f} MB before, "
        f"peak {peak.peak:.0f} MB while streaming (+{peak.peak - before:.0f} MB)"
    )
    return size


def main() -> None:
    from app import create_app

    with tempfile.TemporaryDirectory(prefix="kpmap-bench-api-") as tmp:
        store = Path(sys.argv[1]) if len(sys.argv) > 1 else build_store(Path(tmp))
        started = time.perf_counter()
        app = create_app({"STORE": str(store), "TESTING": True})
        count = app.extensions["kpmap.store"].manifest["layers"]["attacks"]["count"]
        print(
            f"store {store}: {count} attacks; create_app (Store.open) "
            f"{time.perf_counter() - started:.1f} s, resident {rss_mb():.0f} MB"
        )
        client = app.test_client()
        bench_items(client)
        size = bench_download(
            client, "/download/attacks.geojson", "full attacks GeoJSON download [target >= 50 MB/s]"
        )
        bench_download(
            client,
            "/download/attacks.geojson",
            "same, gzip (the build's prepared body behind a fresh head)",
            {"Accept-Encoding": "gzip"},
            unpacked=size,
        )
        bench_download(client, "/download/attacks.csv", "full attacks CSV download")
        bench_download(
            client,
            "/download/attacks.geojson?bbox=71,34,72,35&from=2020&to=2021",
            "filtered GeoJSON download (1°x1°, 2 years)",
        )
        bench_download(client, "/download/kpmap.gpkg", "GeoPackage of every layer")


if __name__ == "__main__":
    main()
