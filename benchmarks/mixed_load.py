"""Mixed load: what the web map, the API, the tiles and the downloads are asked for at once.

    python -m benchmarks.mixed_load [--store DIR] [--seconds 60] [--clients 16] [--seed 1]

Starts the server as `make run` does (benchmarks.slow_clients.server_command) on the store
given (default: KPMAP_STORE or data/store; for the figures of issue 14, a synthetic
million-attack store made with `kpmap synth`), and runs CLIENTS clients for SECONDS, each on a
keep-alive connection of its own, each request drawn at random from a mix of what users do:
the map page and its embed, the map's feeds, OGC API items (a 1° box, a year, up to 1,000) and
item pages, TileJSON, MVT and PNG tiles of the attack layer at zoom 5-12 (as browsers ask,
with Accept-Encoding), filtered GeoJSON and CSV downloads, a resumed range of the whole
attacks GeoJSON, a HEAD of the GeoPackage, and requests a user gets wrong (they must be 4xx).

Prints, for each kind, the requests made, the statuses, and the latency p50/p95/p99; then the
errors: any 5xx, a connection error or time-out, or a status other than the kind's expected
ones. It asserts nothing; its exit status is 0.
"""

import argparse
import http.client
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from pathlib import Path

import mercantile
import orjson

from benchmarks import slow_clients

ROOT = Path(__file__).resolve().parent.parent
# KP's extent, where the attacks are.
WEST, SOUTH, EAST, NORTH = 69.3, 31.1, 74.0, 36.8
YEARS = range(2015, 2025)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="the store to serve (default: KPMAP_STORE or data/store)")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60, help="seconds before a request fails")
    args = parser.parse_args(argv)
    env = slow_clients.server_env(args.store)
    port = slow_clients.free_port()
    command = slow_clients.server_command(port, None)
    print("server:", " ".join(command))
    server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    try:
        slow_clients.wait_until_up(f"http://127.0.0.1:{port}/ogc", server)
        ids = _some_ids(port)
        mix = Mix(ids, random.Random(args.seed))
        print(f"load before: {_load()}; {args.clients} clients for {args.seconds:.0f} s")
        results = _run(port, mix, args.clients, args.seconds, args.timeout, args.seed)
        print(f"load after: {_load()}")
        _report(results, args.seconds)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    return 0


class Mix:
    """Requests as (kind, method, path, headers, expected statuses), drawn at random."""

    def __init__(self, ids: list[str], rng: random.Random):
        self.ids, self.rng = ids, rng
        self.kinds = [
            (self.page, 3),
            (self.feed, 6),
            (self.items, 8),
            (self.item, 4),
            (self.tilejson, 1),
            (self.mvt, 30),
            (self.png, 8),
            (self.download, 3),
            (self.resumed, 1),
            (self.geopackage_head, 1),
            (self.mistake, 3),
        ]

    def draw(self, rng: random.Random) -> tuple[str, str, str, dict[str, str], set[int]]:
        choose, _ = rng.choices(self.kinds, weights=[w for _, w in self.kinds])[0]
        return choose(rng)

    def _box(self, rng: random.Random, size: float) -> str:
        x, y = rng.uniform(WEST, EAST - size), rng.uniform(SOUTH, NORTH - size)
        return f"{x:.3f},{y:.3f},{x + size:.3f},{y + size:.3f}"

    def page(self, rng):
        path = rng.choice(["/", "/embed", "/?layers=districts,attacks,heat", "/?zoom=9"])
        return "page", "GET", path, GZIP, {200}

    def feed(self, rng):
        box, zoom = self._box(rng, rng.choice([0.5, 1, 3])), rng.randint(7, 12)
        year = rng.choice(YEARS)
        which = rng.choice(["attacks", "clusters"])
        query = {"bbox": box, "z": zoom, "from": f"{year}-01-01", "to": f"{year}-12-31"}
        return "feed", "GET", f"/api/map/{which}.json?{urllib.parse.urlencode(query)}", GZIP, {200}

    def items(self, rng):
        year = rng.choice(YEARS)
        query = {
            "bbox": self._box(rng, 1),
            "datetime": f"{year}-01-01T00:00:00Z/{year}-12-31T23:59:59Z",
            "limit": 1000,
        }
        path = f"/ogc/collections/attacks/items?{urllib.parse.urlencode(query)}"
        return "ogc items", "GET", path, GZIP | GEOJSON, {200}

    def item(self, rng):
        quoted = urllib.parse.quote(rng.choice(self.ids), safe="")
        return "ogc item", "GET", f"/ogc/collections/attacks/items/{quoted}", GEOJSON, {200}

    def tilejson(self, rng):
        path = rng.choice(["/tiles/attacks.json", "/tiles/basemap.json"])
        return "tilejson", "GET", path, {}, {200}

    def _tile(self, rng) -> mercantile.Tile:
        lon, lat = rng.uniform(WEST, EAST), rng.uniform(SOUTH, NORTH)
        return mercantile.tile(lon, lat, rng.randint(5, 12))

    def mvt(self, rng):
        t = self._tile(rng)
        return "mvt tile", "GET", f"/tiles/attacks/{t.z}/{t.x}/{t.y}.mvt", GZIP, {200, 204}

    def png(self, rng):
        t = self._tile(rng)
        layer = rng.choice(["attacks", "districts", "basemap"])
        return "png tile", "GET", f"/tiles/{layer}/{t.z}/{t.x}/{t.y}.png", {}, {200, 204}

    def download(self, rng):
        year = rng.choice(YEARS)
        query = {"bbox": self._box(rng, 0.5), "from": f"{year}-01-01", "to": f"{year}-06-30"}
        ext = rng.choice(["geojson", "csv"])
        path = f"/download/attacks.{ext}?{urllib.parse.urlencode(query)}"
        return "download", "GET", path, GZIP, {200}

    def resumed(self, rng):
        start = rng.randrange(0, 500_000_000)
        headers = {"Range": f"bytes={start}-{start + (1 << 20) - 1}"}
        return "download range", "GET", "/download/attacks.geojson", headers, {206, 416}

    def geopackage_head(self, rng):
        return "gpkg head", "HEAD", "/download/kpmap.gpkg", {}, {200}

    def mistake(self, rng):
        path = rng.choice(
            [
                "/?zoom=%C2%B2",
                "/api/map/clusters.json?z=%C2%B2",
                "/ogc/collections/attacks/items?bbox=1,2,3",
                "/ogc/collections/attacks/items?datetime=2020-13-01",
                "/download/attacks.geojson?from=yesterday",
                "/tiles/attacks/40/1/1.mvt",
                "/ogc/collections/nothing/items",
            ]
        )
        return "user mistake", "GET", path, {}, {400, 404}


GZIP = {"Accept-Encoding": "gzip"}
GEOJSON = {"Accept": "application/geo+json"}


def _some_ids(port: int) -> list[str]:
    """Attack ids to ask for, from the API itself."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request("GET", "/ogc/collections/attacks/items?limit=1000", headers=GEOJSON)
    features = orjson.loads(connection.getresponse().read())["features"]
    connection.close()
    return [f["id"] for f in features] or ["none"]


def _run(port: int, mix: Mix, clients: int, seconds: float, timeout: float, seed: int) -> dict:
    results: dict[str, list] = defaultdict(list)  # kind -> [(status or error, latency)]
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        connection = None
        while time.monotonic() < end:
            kind, method, path, headers, expected = mix.draw(rng)
            started = time.monotonic()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                connection.request(method, path, headers=headers)
                response = connection.getresponse()
                response.read()
                outcome: int | str = response.status
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as error:
                outcome = type(error).__name__
                if connection is not None:
                    connection.close()
                connection = None
            took = time.monotonic() - started
            with lock:
                results[kind].append((outcome, took, outcome in expected, path))
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _report(results: dict, seconds: float) -> None:
    total = sum(len(v) for v in results.values())
    errors = []
    print(f"{total:,} requests in {seconds:.0f} s ({total / seconds:,.0f}/s)")
    for kind in sorted(results):
        done = results[kind]
        statuses = Counter(str(o) for o, *_ in done)
        times = sorted(t for _, t, *_ in done)
        q = statistics.quantiles(times, n=100, method="inclusive") if len(times) > 1 else times * 99
        print(
            f"  {kind}: {len(done):,}; "
            + ", ".join(f"{s} x{n}" for s, n in sorted(statuses.items()))
            + f"; ms p50 {q[49] * 1e3:,.1f} p95 {q[94] * 1e3:,.1f} p99 {q[98] * 1e3:,.1f}"
        )
        errors += [(kind, o, path) for o, _, ok, path in done if not ok]
    print(f"errors (5xx, failed connections, or a status not expected): {len(errors)}")
    for kind, outcome, path in errors[:20]:
        print(f"  {kind}: {outcome} {path}")


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f} on {os.cpu_count()} CPUs"


if __name__ == "__main__":
    sys.exit(main())
