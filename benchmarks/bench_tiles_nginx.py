"""kpmap against nginx on the same warm tiles, side by side in one run.

    python -m benchmarks.bench_tiles_nginx [STORE_DIR] [--zoom 0-12] [--duration 10] [--rounds 3]

Without STORE_DIR it builds one with `kpmap synth 1000000 --store /tmp/kpmap-bench-tiles`
(about 2.5 minutes; kept for the next run). Needs wrk and nginx (`apt-get install wrk nginx`);
prints figures and asserts nothing.

1. `kpmap tiles seed attacks --format mvt` into a fresh cache folder, as an operator runs it.
2. gunicorn as `make run` starts it (gunicorn_conf.py: gevent workers, --preload, `wsgi:app`),
   with KPMAP_TILE_CACHE_DIR on that folder. As soon as it answers, 16 connections at once ask
   for 16 different tiles no cache holds (zoom 13): the first tile of each fresh worker.
3. nginx with the snippet of docs/tiles.md ("Serving the tile cache with nginx") as it is
   written there, its folder and ports put in: /tiles/ from the seeded cache with
   gzip_static, misses and filtered tiles passed to the app.
4. The same warm tiles (up to --tiles of the seeded files) with `Accept-Encoding: gzip`, from
   kpmap directly and from nginx, --rounds times in turn (kpmap, nginx, kpmap, ...), wrk with
   2 threads and 8 connections; then the same without Accept-Encoding, and a WSGI app that
   answers a fixed tile-sized body under the same gunicorn (what gevent's server costs per
   request, the floor under any Flask view). The medians of the rounds are printed, with the
   load average before each run: the machine's 2 cores are shared by the server and wrk.
"""

import argparse
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "tiles.md"
GOAL_SHARE, GOAL_P99_MS = 0.25, 5.0
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_tiles_nginx")
    parser.add_argument("store", nargs="?", type=Path, default=Path("/tmp/kpmap-bench-tiles"))
    parser.add_argument("--attacks", type=int, default=1_000_000)
    parser.add_argument("--zoom", default="0-12", help="zooms to seed (default 0-12)")
    parser.add_argument("--tiles", type=int, default=400, help="tile URLs loaded (default 400)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, in turn")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    wrk = shutil.which("wrk")
    if wrk is None or not Path(NGINX).exists():
        print("needs wrk and nginx: apt-get install -y wrk nginx-light")
        return 1
    from benchmarks.bench_tiles import ensure_store

    ensure_store(args.store, args.attacks)
    work = Path(tempfile.mkdtemp(prefix="kpmap-bench-nginx-"))
    work.chmod(0o755)  # nginx's workers run as another user (nobody, www-data) and read it
    try:
        run(args, wrk, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def run(args: argparse.Namespace, wrk: str, work: Path) -> None:
    cache = work / "tiles"
    print(f"load before: {load()}")
    started = time.perf_counter()
    seeded = subprocess.run(
        [sys.executable, "-m", "geo.cli", "tiles", "seed", "attacks", "--zoom", args.zoom]
        + ["--format", "mvt", "--cache-dir", str(cache), "--store", str(args.store)],
        cwd=ROOT,
        env={**os.environ, "TQDM_DISABLE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    print(f"kpmap tiles seed attacks --zoom {args.zoom}: {time.perf_counter() - started:.1f} s")
    print("  " + seeded.stdout.strip().splitlines()[-1])
    files = sorted((cache / "current" / "attacks").rglob("*.mvt"))
    gz = [f for f in files if f.with_name(f.name + ".gz").exists()]
    size = sum(f.stat().st_size for f in files)
    gz_size = sum(f.with_name(f.name + ".gz").stat().st_size for f in gz)
    print(
        f"  {len(files)} .mvt files ({size / 2**20:.1f} MiB), {len(gz)} with a .gz beside "
        f"them ({gz_size / 2**20:.1f} MiB)"
    )
    rng = random.Random(0)
    chosen = rng.sample(files, min(args.tiles, len(files)))
    paths = ["/tiles/" + str(f.relative_to(cache / "current")) for f in chosen]

    app_port, nginx_port, hello_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "KPMAP_STORE": str(args.store),
        "KPMAP_TILE_CACHE_DIR": str(cache),
        "KPMAP_STORE_CHECK_INTERVAL": "3600",
    }
    with (
        Gunicorn(app_port, "wsgi:app", env, work / "gunicorn.log") as started_at,
        Nginx(nginx_port, app_port, cache, work / "nginx"),
    ):
        app = f"http://127.0.0.1:{app_port}"
        ready = wait_until_up(app + "/ogc")
        up = ready - started_at
        print(f"\ngunicorn as `make run` (wsgi:app, gunicorn_conf.py): up in {up:.1f} s")
        first_tiles(app, files)
        front = f"http://127.0.0.1:{nginx_port}"
        check_same(app, front, paths)
        print(
            f"\nwarm tiles: {len(paths)} seeded attack MVTs, wrk -t2 -c{args.connections} "
            f"-d{args.duration}s, {args.rounds} rounds in turn (medians; load = 1-min average)"
        )
        script_gz = write_script(work / "gzip.lua", paths, {"Accept-Encoding": "gzip"})
        script_id = write_script(work / "identity.lua", paths, {})
        for url in (app, front):  # warm every worker's memory cache and the page cache
            wrk_run(wrk, url, script_gz, 3, args.connections)
        results: dict[str, list[dict]] = {}
        for _ in range(args.rounds):
            for name, url, script in (
                ("kpmap gzip", app, script_gz),
                ("nginx gzip", front, script_gz),
            ):
                results.setdefault(name, []).append(
                    wrk_run(wrk, url, script, args.duration, args.connections)
                )
        for name, url in (("kpmap identity", app), ("nginx identity", front)):
            results[name] = [wrk_run(wrk, url, script_id, args.duration, args.connections)]
    # gevent's own cost: the same gunicorn config, a WSGI app that only answers fixed bytes
    with Gunicorn(hello_port, "benchmarks.bench_tiles_nginx:fixed_tile", env, work / "hello.log"):
        hello = f"http://127.0.0.1:{hello_port}"
        wait_until_up(hello + "/")
        wrk_run(wrk, hello, script_gz, 2, args.connections)
        results["gunicorn gevent, fixed body"] = [
            wrk_run(wrk, hello, script_gz, args.duration, args.connections)
            for _ in range(args.rounds)
        ]
    report(results)


# --- what is printed ------------------------------------------------------------------------


def report(results: dict[str, list[dict]]) -> None:
    print(f"\n{'':28} {'tiles/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'MiB/s':>7}  errors  load")
    medians = {}
    for name, runs in results.items():
        m = {k: statistics.median(r[k] for r in runs) for k in ("rate", "p50", "p99", "mibs")}
        medians[name] = m
        errors = sum(r["errors"] for r in runs)
        loads = ", ".join(r["load"] for r in runs)
        print(
            f"{name:28} {m['rate']:9,.0f} {m['p50']:7.2f} {m['p99']:7.2f} {m['mibs']:7.1f}  "
            f"{errors:6}  {loads}"
        )
    for coding in ("gzip", "identity"):
        ours, theirs = medians[f"kpmap {coding}"], medians[f"nginx {coding}"]
        share = ours["rate"] / theirs["rate"]
        line = f"\nkpmap / nginx, {coding}: {share:.3f} of nginx's tiles/s"
        if coding == "gzip":
            met = share >= GOAL_SHARE and ours["p99"] <= GOAL_P99_MS
            line += (
                f" (goal >= {GOAL_SHARE:.0%}, p99 <= {GOAL_P99_MS:.0f} ms: "
                f"{'met' if met else 'NOT met'})"
            )
        print(line)
    floor = medians["gunicorn gevent, fixed body"]
    print(
        f"gunicorn's gevent worker answering fixed bytes: {floor['rate']:,.0f}/s = "
        f"{floor['rate'] / medians['nginx gzip']['rate']:.3f} of nginx; kpmap's tiles are "
        f"{medians['kpmap gzip']['rate'] / floor['rate']:.2f} of that ceiling"
    )


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


# --- the servers ----------------------------------------------------------------------------


class Gunicorn:
    """gunicorn as the Makefile's run target starts it, on `port`; yields its start time."""

    def __init__(self, port: int, target: str, env: dict, log: Path):
        self.command = [
            str(Path(sys.executable).with_name("gunicorn")),
            "--config",
            "gunicorn_conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            target,
        ]
        self.env, self.log = env, log

    def __enter__(self) -> float:
        self.out = self.log.open("wb")
        started = time.monotonic()
        self.server = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=self.out,
            stderr=self.out,
            start_new_session=True,
        )
        return started

    def __exit__(self, *exc) -> None:
        os.killpg(self.server.pid, signal.SIGTERM)
        self.server.wait(timeout=60)
        self.out.close()


class Nginx:
    """nginx with the docs' snippet, its own prefix, pid file and temporary folders."""

    def __init__(self, port: int, app_port: int, cache: Path, prefix: Path):
        self.prefix = prefix
        prefix.mkdir()
        snippet = nginx_snippet()
        snippet = snippet.replace("/var/cache/kpmap-tiles/", f"{cache}/")
        snippet = snippet.replace("127.0.0.1:8000", f"127.0.0.1:{app_port}")
        snippet = re.sub(r"listen\s+80;", f"listen 127.0.0.1:{port};", snippet)
        temps = "\n".join(
            f"    {kind}_temp_path {prefix}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (prefix / "nginx.conf").write_text(
            f"""worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
{temps}
{snippet}
}}
"""
        )

    def __enter__(self) -> None:
        subprocess.run(
            [NGINX, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"), "-t", "-q"],
            check=True,
        )
        subprocess.run(
            [NGINX, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf")], check=True
        )

    def __exit__(self, *exc) -> None:
        pid = int((self.prefix / "nginx.pid").read_text())
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (self.prefix / "nginx.pid").exists():
            time.sleep(0.1)


def nginx_snippet() -> str:
    """The nginx configuration docs/tiles.md gives (its one ```nginx block)."""
    text = DOCS.read_text(encoding="utf-8")
    (block,) = re.findall(r"```nginx\n(.*?)```", text, flags=re.S)
    return block


def fixed_tile(environ, start_response):
    """A WSGI app answering 8 KB of fixed bytes with a tile's headers: gevent's floor."""
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/vnd.mapbox-vector-tile"),
            ("Content-Length", str(len(_FIXED))),
            ("Content-Encoding", "gzip"),
            ("ETag", '"fixed-gzip"'),
            ("Cache-Control", "public, max-age=3600"),
            ("Vary", "Accept-Encoding"),
            ("Access-Control-Allow-Origin", "*"),
        ],
    )
    return [_FIXED]


_FIXED = random.Random(0).randbytes(8192)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return time.monotonic()
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no answer from {url} in {timeout} s")


# --- measures -------------------------------------------------------------------------------


def first_tiles(app: str, seeded: list[Path], count: int = 16) -> None:
    """`count` connections at once, each asking a different tile no cache holds: a zoom 13
    child of a seeded zoom 12 tile (so it holds attacks, and the index is needed)."""
    parents = [f for f in seeded if f.parent.parent.name == "12"]
    chosen = random.Random(1).sample(parents, min(count, len(parents)))
    urls = [
        f"{app}/tiles/attacks/13/{2 * int(f.parent.name)}/{2 * int(f.stem)}.mvt" for f in chosen
    ]

    def fetch(url: str) -> float:
        started = time.perf_counter()
        with urllib.request.urlopen(url) as r:
            r.read()
        return time.perf_counter() - started

    with ThreadPoolExecutor(count) as pool:
        times = sorted(pool.map(fetch, urls))
    print(
        f"  first tiles of fresh workers ({len(times)} uncached z13 attack tiles on as many "
        f"connections at once): median {statistics.median(times) * 1000:.0f} ms, "
        f"max {times[-1] * 1000:.0f} ms (load {load()})"
    )


def check_same(app: str, front: str, paths: list[str], sample: int = 20) -> None:
    """Both serve the same tile bytes; says who sends gzip when it is asked for and when it
    is refused (`gzip;q=0`)."""
    codings: dict[tuple[str, str], set] = {}
    for path in paths[:sample]:
        bodies = []
        for name, base in (("kpmap", app), ("nginx", front)):
            for header in ("gzip", "gzip;q=0"):
                request = urllib.request.Request(base + path, headers={"Accept-Encoding": header})
                with urllib.request.urlopen(request) as r:
                    coding = r.headers.get("Content-Encoding") or "identity"
                    body = r.read()
                codings.setdefault((name, header), set()).add(coding)
                if coding == "gzip":
                    body = zlib.decompress(body, 31)
                bodies.append(body)
        assert all(b == bodies[0] for b in bodies), f"different bytes for {path}"
    said = "; ".join(f"{n} {h!r} -> {', '.join(sorted(c))}" for (n, h), c in codings.items())
    print(f"  same tile bytes from both ({min(sample, len(paths))} tiles); {said}")


def write_script(path: Path, paths: list[str], headers: dict[str, str]) -> Path:
    quoted = ",\n".join(f'  "{p}"' for p in paths)
    header_table = ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items())
    path.write_text(
        f"""local paths = {{
{quoted}
}}
local headers = {{ {header_table} }}
local i = 0
function init(args)
  i = math.random(#paths)
end
function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], headers)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    summary.bytes, latency:percentile(50), latency:percentile(99),
    e.status + e.connect + e.read + e.write + e.timeout))
end
"""
    )
    return path


def wrk_run(wrk: str, base: str, script: Path, duration: int, connections: int) -> dict:
    before = load()
    out = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{duration}s", "-s", str(script), base + "/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests, micros, size, p50, p99, errors = map(int, re.search(r"RESULT (.*)", out)[1].split())
    seconds = micros / 1e6
    return {
        "rate": requests / seconds,
        "p50": p50 / 1000,
        "p99": p99 / 1000,
        "mibs": size / seconds / 2**20,
        "errors": errors,
        "load": before.split()[0],
    }


if __name__ == "__main__":
    sys.exit(main())
