"""Benchmark of the PostGIS store (issue 13) on a SYNTHETIC 1,000,000-attack store, side by side
with tipg over the same tables and with kpmap's own file store.

    python -m benchmarks.bench_postgis [STORE] [--tipg PYTHON] [--url URL] [--parts items,mvt,...]

Without STORE, builds one with `kpmap synth 1000000` in a temporary folder (about a minute and
a half; needs KPMAP_MIRROR or a filled fetch cache). Starts a throwaway PostgreSQL + PostGIS
(tests/pg.py; durable settings: fsync on), publishes the store, and serves it three ways over
HTTP on 127.0.0.1: kpmap on the files and kpmap on the database (gunicorn, 2 gthread workers
of 4 threads, as `make run`), and tipg (uvicorn, 2 workers) when PYTHON (a virtualenv's python
with tipg and uvicorn installed; tipg is not a kpmap dependency) is given. The servers take
turns (rounds of each measurement), so a change in the machine's other load falls on all alike;
each figure is printed with the load averages. With --url, the store is published at URL
already: no throwaway server, no publish. --parts picks among items, mvt and download. Items
are timed twice: each request's first answer (a database reads its pages for the first time:
right after a publish, from the system's cache) and the same requests again. Prints
figures; asserts nothing.
"""

import argparse
import http.client
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import mercantile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.net import free_port  # noqa: E402
from geo.store import Store  # noqa: E402
from geo.store.postgis import close_pools, publish  # noqa: E402
from tests.pg import PgServer  # noqa: E402

KP = (69.3, 31.2, 74.0, 36.9)
ITEMS = 150
CLIENTS = 8
THROUGHPUT_SECONDS = 12
TILES_PER_ZOOM = 15


def get(conn: http.client.HTTPConnection, path: str) -> tuple[int, int]:
    """The status and the body's size, the body read into one reused buffer (a download of
    the whole layer is ~1 GB: the client must cost little beside the server)."""
    conn.request("GET", path, headers={"Accept-Encoding": "identity"})
    response = conn.getresponse()
    size, buffer = 0, memoryview(bytearray(1 << 20))
    while read := response.readinto(buffer):
        size += read
    return response.status, size


class Server:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], ready: str):
        self.name, self.port = name, int(env["PORT"])
        log = open(Path(tempfile.gettempdir()) / f"bench-postgis-{name}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            cmd, env={**os.environ, **env}, cwd=ROOT, stdout=log, stderr=log
        )
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                if get(self.conn(), ready)[0] == 200:
                    return
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited; see {log.name}")
            time.sleep(0.5)
        raise RuntimeError(f"{name} did not start")

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)

    def worker_rss_mb(self) -> float:
        """Resident memory of the server's worker processes (its children), MB."""
        total = 0
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        for pid in children.read_text().split():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except FileNotFoundError:
                pass
        return total / 1024

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def items_paths(prefix: str, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    paths = []
    for _ in range(n):
        x, y = rng.uniform(KP[0], KP[2] - 1), rng.uniform(KP[1], KP[3] - 1)
        year = rng.randint(2015, 2025)
        paths.append(
            f"{prefix}/items?bbox={x:.3f},{y:.3f},{x + 1:.3f},{y + 1:.3f}"
            f"&datetime={year}-01-01T00:00:00Z/{year}-12-31T23:59:59Z&limit=1000"
        )
    return paths


def latencies(server: Server, paths: list[str]) -> list[float]:
    conn, out = server.conn(), []
    for path in paths:
        started = time.perf_counter()
        status, _ = get(conn, path)
        out.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"{server.name}: {path} answered {status}")
    return out


def throughput(server: Server, paths: list[str], seconds: float) -> tuple[int, float]:
    """Requests answered by CLIENTS clients in `seconds`, and the seconds it took."""
    done = [0] * CLIENTS
    stop = time.perf_counter() + seconds

    def client(k: int) -> None:
        conn = server.conn()
        i = k
        while time.perf_counter() < stop:
            get(conn, paths[i % len(paths)])
            done[k] += 1
            i += CLIENTS

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done), time.perf_counter() - started


def load() -> str:
    """The machine's load averages (1, 5, 15 minutes): the figures depend on them."""
    return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] * 1000


def tiles(seed: int) -> list[tuple[int, int, int]]:
    rng = random.Random(seed)
    out = []
    for z in range(6, 15):
        for _ in range(TILES_PER_ZOOM):
            t = mercantile.tile(rng.uniform(70.0, 73.0), rng.uniform(32.0, 35.5), z)
            out.append((t.z, t.x, t.y))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store", nargs="?", type=Path)
    parser.add_argument("--tipg", help="python of a virtualenv with tipg and uvicorn")
    parser.add_argument(
        "--url",
        help="a database where STORE is published already: no throwaway server, no publish",
    )
    parser.add_argument(
        "--parts", default="items,mvt,download", help="what to measure (comma-separated)"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    folder = Path(tempfile.mkdtemp(prefix="bench-postgis-"))
    store_dir = args.store
    if store_dir is None:
        store_dir = folder / "store"
        cmd = [sys.executable, "-m", "geo.cli", "synth", "1000000", "--store", str(store_dir)]
        subprocess.run(cmd, check=True)
    version = Store.open(store_dir).version
    print(f"store {store_dir} version {version}; {load()}")
    if args.url:
        serve(args, store_dir, version, args.url, parts)
        return
    port = free_port()
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "fsync": "on",
        "synchronous_commit": "on",
        "full_page_writes": "on",
        "shared_buffers": "1GB",
        "maintenance_work_mem": "512MB",
        "max_wal_size": "8GB",
        "max_connections": "200",
    }
    with PgServer.start(settings) as pg:
        pg.create_database("bench")
        url = f"postgresql://kpmap@127.0.0.1:{port}/bench"
        published = publish(store_dir, url)
        close_pools()
        attacks = published.counts["attacks"]
        print(
            f"publish of {attacks:,} attacks: {published.seconds:.1f} s (store checks included); "
            + load()
        )
        started = time.perf_counter()
        publish(store_dir, url)
        again = time.perf_counter() - started
        print(f"publish of the same version again (made current): {again:.2f} s; {load()}")
        serve(args, store_dir, version, url, parts)


def serve(args: argparse.Namespace, store_dir: Path, version: str, url: str, parts: set) -> None:
    """Serve the store three ways and measure each, taking turns (ROUNDS rounds), so that a
    change in the machine's other load falls on all of them alike."""
    gunicorn = [
        sys.executable, "-m", "gunicorn", "--preload", "--workers", "2",
        "--worker-class", "gthread", "--threads", "4", "--timeout", "600",
    ]  # fmt: skip
    servers: list[Server] = []
    try:
        for name, store in (("kpmap-files", str(store_dir)), ("kpmap-postgis", url)):
            port_ = str(free_port())
            servers.append(
                Server(
                    name,
                    [*gunicorn, "--bind", f"127.0.0.1:{port_}", "app:create_app()"],
                    {"PORT": port_, "KPMAP_STORE": store},
                    "/ogc/collections",
                )
            )
        if args.tipg:
            port_ = str(free_port())
            servers.append(
                Server(
                    "tipg",
                    [
                        args.tipg,
                        "-m",
                        "uvicorn",
                        "tipg.main:app",
                        "--port",
                        port_,
                        "--workers",
                        "2",
                        "--log-level",
                        "warning",
                    ],  # fmt: skip
                    {
                        "PORT": port_,
                        "DATABASE_URL": url,
                        "TIPG_DB_SCHEMAS": f'["kpmap_{version}"]',
                        "TIPG_DB_TABLES": f'["kpmap_{version}.attacks"]',
                    },
                    "/collections",
                )
            )
        if "items" in parts:
            measure_items(servers, version)
        if "mvt" in parts:
            measure_tiles(servers, version)
        if "download" in parts:
            measure_downloads(servers)
    finally:
        for server in servers:
            server.stop()


ROUNDS = 3


def measure_items(servers: list[Server], version: str) -> None:
    def prefix(server: Server) -> str:
        if server.name == "tipg":
            return f"/collections/kpmap_{version}.attacks"
        return "/ogc/collections/attacks"

    lat: dict[str, list[float]] = {s.name: [] for s in servers}
    done: dict[str, list[float]] = {s.name: [0, 0.0] for s in servers}
    for server in servers:
        latencies(server, items_paths(prefix(server), 20, seed=99))  # warm up
    per_round = ITEMS // ROUNDS
    for r in range(ROUNDS):
        for server in servers:
            paths = items_paths(prefix(server), ITEMS, seed=1)[r * per_round : (r + 1) * per_round]
            lat[server.name] += latencies(server, paths)
        for server in servers:
            count, seconds = throughput(
                server, items_paths(prefix(server), 400, seed=2 + r), THROUGHPUT_SECONDS / ROUNDS
            )
            done[server.name][0] += count
            done[server.name][1] += seconds
    # The same requests again: each box was asked once above, so a database answered them
    # from pages it read then (its own cache, not the system's), as a server that has run a
    # while does for the places people look at; the figures above are its first reads.
    again: dict[str, list[float]] = {s.name: [] for s in servers}
    for r in range(ROUNDS):
        for server in servers:
            paths = items_paths(prefix(server), ITEMS, seed=1)[r * per_round : (r + 1) * per_round]
            again[server.name] += latencies(server, paths)
    for server in servers:
        values, repeated = lat[server.name], again[server.name]
        count, seconds = done[server.name]
        print(
            f"{server.name:14} items (1°×1° bbox, 1 year, limit=1000): p95 "
            f"{p95(values):.0f} ms (median {statistics.median(values) * 1000:.0f} ms, "
            f"one client); {count / seconds:.1f} req/s with {CLIENTS} clients; the same "
            f"requests again: p95 {p95(repeated):.0f} ms (median "
            f"{statistics.median(repeated) * 1000:.0f} ms); {load()}"
        )


def measure_tiles(servers: list[Server], version: str) -> None:
    def path(server: Server, z: int, x: int, y: int) -> str:
        if server.name == "tipg":
            return f"/collections/kpmap_{version}.attacks/tiles/WebMercatorQuad/{z}/{x}/{y}"
        return f"/tiles/attacks/{z}/{x}/{y}.mvt"

    # Each tile asked once of each server (cold: no cache has it), the servers taking turns.
    lat: dict[str, dict[int, list[float]]] = {s.name: {} for s in servers}
    conns = {s.name: s.conn() for s in servers}
    for z, x, y in tiles(seed=3):
        for server in servers:
            started = time.perf_counter()
            get(conns[server.name], path(server, z, x, y))
            lat[server.name].setdefault(z, []).append(time.perf_counter() - started)
    for server in servers:
        every = [v for values in lat[server.name].values() for v in values]
        zooms = " ".join(
            f"z{z} {statistics.median(v) * 1000:.0f}/{p95(v):.0f}"
            for z, v in sorted(lat[server.name].items())
        )
        print(f"{server.name:14} cold MVT z6-z14: p95 {p95(every):.0f} ms; {load()}")
        print(f"{'':14}   per zoom, median/p95 ms: {zooms}")


def measure_downloads(servers: list[Server]) -> None:
    """The whole attacks layer as GeoJSON, ROUNDS times from each server in turn: the median
    rate, and the workers' memory before the first and at its highest."""
    rates: dict[str, list[float]] = {}
    memory: dict[str, list[float]] = {}
    size = 0
    for _ in range(ROUNDS):
        for server in servers:
            if server.name == "tipg":
                continue
            before = server.worker_rss_mb()
            peak = [before]
            stop = threading.Event()

            def sample(server=server, peak=peak, stop=stop) -> None:
                while not stop.wait(0.05):
                    peak[0] = max(peak[0], server.worker_rss_mb())

            sampler = threading.Thread(target=sample)
            sampler.start()
            started = time.perf_counter()
            status, size = get(server.conn(), "/download/attacks.geojson")
            seconds = time.perf_counter() - started
            stop.set()
            sampler.join()
            rates.setdefault(server.name, []).append(size / 2**20 / seconds)
            seen = memory.setdefault(server.name, [before, before])
            seen[1] = max(seen[1], peak[0])
    for name, values in rates.items():
        before, peak = memory[name]
        print(
            f"{name:14} full GeoJSON download ({size / 2**20:.0f} MB): "
            f"{statistics.median(values):.0f} MB/s (median of {len(values)}: "
            + ", ".join(f"{v:.0f}" for v in values)
            + f"); workers' memory {before:.0f} MB before, peak {peak:.0f} MB; {load()}"
        )


if __name__ == "__main__":
    main()
