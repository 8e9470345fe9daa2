"""Benchmark of the PostGIS store (issue 13) on a SYNTHETIC 1,000,000-attack store, side by side
with tipg over the same tables and with kpmap's own file store.

    python -m benchmarks.bench_postgis [STORE] [--tipg PYTHON]

Without STORE, builds one with `kpmap synth 1000000` in a temporary folder (about a minute and
a half; needs KPMAP_MIRROR or a filled fetch cache). Starts a throwaway PostgreSQL + PostGIS
(tests/pg.py; durable settings: fsync on), publishes the store, and serves it three ways over
HTTP on 127.0.0.1: kpmap on the files and kpmap on the database (gunicorn, 2 gthread workers
of 4 threads, as `make run`), and tipg (uvicorn, 2 workers) when PYTHON (a virtualenv's python
with tipg and uvicorn installed; tipg is not a kpmap dependency) is given. Prints figures;
asserts nothing.
"""

import argparse
import http.client
import os
import random
import socket
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

from geo.store import Store  # noqa: E402
from geo.store.postgis import close_pools, publish  # noqa: E402
from tests.pg import PgServer  # noqa: E402

KP = (69.3, 31.2, 74.0, 36.9)
ITEMS = 150
CLIENTS = 8
THROUGHPUT_SECONDS = 12
TILES_PER_ZOOM = 15


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(conn: http.client.HTTPConnection, path: str) -> tuple[int, int]:
    conn.request("GET", path, headers={"Accept-Encoding": "identity"})
    response = conn.getresponse()
    body = response.read()
    return response.status, len(body)


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


def throughput(server: Server, paths: list[str]) -> float:
    done = [0] * CLIENTS
    stop = time.perf_counter() + THROUGHPUT_SECONDS

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
    return sum(done) / (time.perf_counter() - started)


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
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-postgis-"))
    store_dir = args.store
    if store_dir is None:
        store_dir = folder / "store"
        cmd = [sys.executable, "-m", "geo.cli", "synth", "1000000", "--store", str(store_dir)]
        subprocess.run(cmd, check=True)
    version = Store.open(store_dir).version
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
    servers: list[Server] = []
    with PgServer.start(settings) as pg:
        pg.create_database("bench")
        url = f"postgresql://kpmap@127.0.0.1:{port}/bench"
        published = publish(store_dir, url)
        close_pools()
        attacks = published.counts["attacks"]
        print(f"publish of {attacks:,} attacks: {published.seconds:.1f} s (validation included)")
        started = time.perf_counter()
        publish(store_dir, url)
        again = time.perf_counter() - started
        print(f"publish of the same version again (made current): {again:.2f} s")
        gunicorn = [
            sys.executable, "-m", "gunicorn", "--preload", "--workers", "2",
            "--worker-class", "gthread", "--threads", "4", "--timeout", "600",
        ]  # fmt: skip
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
            for server in servers:
                prefix = (
                    f"/collections/kpmap_{version}.attacks"
                    if server.name == "tipg"
                    else "/ogc/collections/attacks"
                )
                latencies(server, items_paths(prefix, 20, seed=99))  # warm up
                lat = latencies(server, items_paths(prefix, ITEMS, seed=1))
                rate = throughput(server, items_paths(prefix, 400, seed=2))
                print(
                    f"{server.name:14} items (1°×1° bbox, 1 year, limit=1000): p95 "
                    f"{p95(lat):.0f} ms (median {statistics.median(lat) * 1000:.0f} ms, "
                    "one client); "
                    f"{rate:.1f} req/s with {CLIENTS} clients"
                )
            for server in servers:
                conn, lat = server.conn(), []
                for z, x, y in tiles(seed=3):
                    if server.name == "tipg":
                        path = (
                            f"/collections/kpmap_{version}.attacks/tiles/WebMercatorQuad/"
                            f"{z}/{x}/{y}"
                        )
                    else:
                        path = f"/tiles/attacks/{z}/{x}/{y}.mvt"
                    started = time.perf_counter()
                    get(conn, path)
                    lat.append(time.perf_counter() - started)
                print(f"{server.name:14} cold MVT z6-z14: p95 {p95(lat):.0f} ms")
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
                print(
                    f"{server.name:14} full GeoJSON download: {size / 2**20:.0f} MB in "
                    f"{seconds:.1f} s = {size / 2**20 / seconds:.0f} MB/s; workers' memory "
                    f"{before:.0f} MB before, peak {peak[0]:.0f} MB"
                )
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    main()
