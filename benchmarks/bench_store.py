"""Benchmark: `kpmap build` from a warm cache, and Store.open / a query on the built store.

Run with `make bench` (or `.venv/bin/python -m benchmarks.bench_store`). Prints figures; asserts
nothing:
targets (issue 2) are build <= 10 s from a warm cache and Store.open <= 1 s.
"""

import statistics
import tempfile
import time
from pathlib import Path

from geo import paths
from geo.build.pipeline import build_store
from geo.store import Store


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        mirror = paths.mirror() or str(paths.cache_dir())
        build_store(store, mirror=mirror)  # warms the cache and the imports
        builds = timed(lambda: build_store(store, mirror=mirror), 3)
        opens = timed(lambda: Store.open(store), 10)
        opened = Store.open(store)
        queries = timed(lambda: opened.query("districts", bbox=(70, 33, 72, 35)), 200)
    print(f"build (warm cache):  median {statistics.median(builds):.2f} s, max {max(builds):.2f} s")
    print(
        f"Store.open:          median {statistics.median(opens) * 1e3:.0f} ms, "
        f"max {max(opens) * 1e3:.0f} ms"
    )
    print(f"districts bbox query: median {statistics.median(queries) * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
