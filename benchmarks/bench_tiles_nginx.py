"""kpmap against nginx on the same warm tiles, side by side in one run.

    python -m benchmarks.bench_tiles_nginx [STORE_DIR] [--zoom 0-12] [--duration 10] [--rounds 3]
        [--granian DIR]

Without STORE_DIR it builds one with `kpmap synth 1000000 --store /tmp/kpmap-bench-tiles`
(about 2.5 minutes; kept for the next run). Needs wrk and nginx (`apt-get install wrk nginx`);
prints figures and asserts nothing.

1. `kpmap tiles seed attacks --format mvt` into a fresh cache folder, as an operator runs it.
2. gunicorn as `make run` starts it (gunicorn_conf.py: gevent workers, --preload, `wsgi:app`),
   with KPMAP_TILE_CACHE_DIR on that folder; and, apart, the same with one worker, asked for
   tiles no cache holds as soon as it answers: what a fresh worker's first tiles take.
3. nginx with the snippet of docs/tiles.md ("Serving the tile cache with nginx") as it is
   written there, its folder and ports put in: /tiles/ from the seeded cache with
   gzip_static, misses and filtered tiles passed to the app.
4. The same warm tiles (up to --tiles of the seeded files) with `Accept-Encoding: gzip`, from
   kpmap directly, from nginx, and from a WSGI app that answers a fixed tile-sized body under
   the same gunicorn (what gunicorn's gevent worker costs per request: the floor under any
   Flask view), --rounds times in turn, wrk with 2 threads and 8 connections; then kpmap and
   nginx without Accept-Encoding. With --granian DIR the app and the fixed body under granian's
   WSGI server too, and with --before DIR another checkout's code (the figures before a
   change). The medians of the rounds are printed, with the load
   average before each run (the machine's 2 cores are shared by the servers, wrk and whatever
   else runs) and each server's CPU time per answer (its processes' user + system time over the
   run, divided by the answers: steadier than tiles/s on a busy machine).
"""

import argparse
import contextlib
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
from pathlib import Path

from benchmarks.net import free_port

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
    parser.add_argument(
        "--before",
        type=Path,
        metavar="DIR",
        help="also serve the code of another checkout (its wsgi:app), e.g. the main branch",
    )
    parser.add_argument(
        "--granian",
        metavar="DIR",
        help="also serve the app with granian's WSGI server, importable from DIR (e.g. "
        "`pip install --target DIR granian`): what another server would change",
    )
    parser.add_argument(
        "--own-sessions",
        action="store_true",
        help="start each server in a session of its own (its own share of the cores, apart "
        "from wrk's; see Server)",
    )
    args = parser.parse_args()
    Server.own_session = args.own_sessions

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

    env = {
        **os.environ,
        "KPMAP_STORE": str(args.store),
        "KPMAP_TILE_CACHE_DIR": str(cache),
        "KPMAP_STORE_CHECK_INTERVAL": "3600",
    }
    app_port, nginx_port = free_port(), free_port()
    fixed = "benchmarks.bench_tiles_nginx:fixed_tile"
    with contextlib.ExitStack() as stack:
        started_at = time.monotonic()
        servers = {"kpmap": stack.enter_context(Gunicorn(app_port, "wsgi:app", env, work))}
        app = servers["kpmap"].url
        up = wait_until_up(app + "/ogc") - started_at
        print(f"\ngunicorn as `make run` (wsgi:app, gunicorn_conf.py): up in {up:.1f} s")
        first_tiles(ROOT, env, work, files, 0)
        if args.before:
            # Another checkout's code (e.g. `git archive main | tar -x -C DIR`) on the same store
            # and cache: the figures before a change, in the same run.
            started_at = time.monotonic()
            before = Gunicorn(free_port(), "wsgi:app", env, work, root=args.before)
            servers["before"] = stack.enter_context(before)
            up = wait_until_up(before.url + "/ogc") - started_at
            print(f"the code in {args.before}, as `make run` serves it: up in {up:.1f} s")
            first_tiles(args.before, env, work, files, 1)
        servers["nginx"] = stack.enter_context(Nginx(nginx_port, app_port, cache, work / "nginx"))
        check_same(app, servers["nginx"].url, paths)
        # What gunicorn's gevent worker costs by itself: the same config, fixed bytes.
        servers["gevent, fixed body"] = stack.enter_context(Gunicorn(free_port(), fixed, env, work))
        if args.granian:
            # The same app under another server, for comparison (not how `make run` serves).
            for name, target in (("granian kpmap", "wsgi:app"), ("granian, fixed body", fixed)):
                server = Granian(free_port(), target, {**env, "PYTHONPATH": args.granian}, work)
                servers[name] = stack.enter_context(server)
        for server in servers.values():
            wait_until_up(server.url + "/tiles/attacks/0/0/0.mvt")
        print(
            f"\nwarm tiles: {len(paths)} seeded attack MVTs, wrk -t2 -c{args.connections} "
            f"-d{args.duration}s, {args.rounds} rounds in turn (medians; load = 1-min average; "
            "CPU = the server's processes' CPU time per answer)"
        )
        script_gz = write_script(work / "gzip.lua", paths, {"Accept-Encoding": "gzip"})
        script_id = write_script(work / "identity.lua", paths, {})
        for server in servers.values():  # every worker's memory cache, the page cache
            wrk_run(wrk, server, script_gz, 3, args.connections)
        results: dict[str, list[dict]] = {}
        for _ in range(args.rounds):
            for name, server in servers.items():
                results.setdefault(f"{name} gzip", []).append(
                    wrk_run(wrk, server, script_gz, args.duration, args.connections)
                )
        for name in ("kpmap", "nginx"):
            results[f"{name} identity"] = [
                wrk_run(wrk, servers[name], script_id, args.duration, args.connections)
            ]
    report(results)


# --- what is printed ------------------------------------------------------------------------


def report(results: dict[str, list[dict]]) -> None:
    print(
        f"\n{'':28} {'tiles/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'MiB/s':>7} {'CPU µs':>7}"
        "  errors  load"
    )
    medians = {}
    for name, runs in results.items():
        keys = ("rate", "p50", "p99", "mibs", "cpu")
        m = {k: statistics.median(r[k] for r in runs) for k in keys}
        medians[name] = m
        errors = sum(r["errors"] for r in runs)
        loads = ", ".join(r["load"] for r in runs)
        print(
            f"{name:28} {m['rate']:9,.0f} {m['p50']:7.2f} {m['p99']:7.2f} {m['mibs']:7.1f} "
            f"{m['cpu']:7.0f}  {errors:6}  {loads}"
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
    nginx, kpmap = medians["nginx gzip"], medians["kpmap gzip"]
    for name in ("before", "gevent, fixed body", "granian kpmap", "granian, fixed body"):
        if f"{name} gzip" in medians:
            m = medians[f"{name} gzip"]
            print(
                f"{name}: {m['rate'] / nginx['rate']:.3f} of nginx's tiles/s, "
                f"{m['cpu'] / nginx['cpu']:.1f}x nginx's CPU per answer"
            )
    print(f"kpmap: {kpmap['cpu'] / nginx['cpu']:.1f}x nginx's CPU per answer")


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


# --- the servers ----------------------------------------------------------------------------


class Server:
    """A server started for the benchmark, its URL and its processes (for their CPU time).

    Each runs in the benchmark's own session, wrk's, in a process group of its own: Linux's
    autogroups give every session an equal share of the cores, so a server in a session of its
    own (nginx's daemon, or start_new_session) would wait for wrk's session's turns whenever
    it needs more than half the machine. That wait is the load generator's, not the server's
    (in use, clients are on other machines); it made most of kpmap's p99 at 8 connections
    (docs/tiles.md has the figures). --own-sessions gives each server a session of its own."""

    url: str
    own_session = False  # --own-sessions

    def session(self) -> dict:
        """subprocess.Popen's arguments that put the server in its session (see above)."""
        return {"start_new_session": True} if self.own_session else {"process_group": 0}

    def pids(self) -> list[int]:
        raise NotImplementedError


class Gunicorn(Server):
    """gunicorn as the Makefile's run target starts it, on `port`."""

    def __init__(self, port: int, target: str, env: dict, work: Path, root: Path = ROOT):
        self.command = [str(Path(sys.executable).with_name("gunicorn")), "--config"]
        self.command += ["gunicorn_conf.py", "--bind", f"127.0.0.1:{port}", target]
        self.env, self.log = env, work / f"gunicorn-{port}.log"
        self.url = f"http://127.0.0.1:{port}"
        self.root = root

    def __enter__(self) -> "Gunicorn":
        self.out = self.log.open("wb")
        self.server = subprocess.Popen(
            self.command,
            cwd=self.root,
            env=self.env,
            stdout=self.out,
            stderr=self.out,
            **self.session(),
        )
        return self

    def pids(self) -> list[int]:
        return [self.server.pid, *descendants(self.server.pid)]

    def __exit__(self, *exc) -> None:
        os.killpg(self.server.pid, signal.SIGTERM)
        self.server.wait(timeout=60)
        self.out.close()


class Granian(Gunicorn):
    """granian's WSGI server (2 workers, Rust I/O), given on PYTHONPATH: a comparison."""

    def __init__(self, port: int, target: str, env: dict, work: Path):
        super().__init__(port, target, env, work)
        self.command = [sys.executable, "-m", "granian", "--interface", "wsgi", "--workers"]
        self.command += ["2", "--blocking-threads", "1", "--host", "127.0.0.1"]
        self.command += ["--port", str(port), target]


class Nginx(Server):
    """nginx with the docs' snippet, its own prefix, pid file and temporary folders."""

    def __init__(self, port: int, app_port: int, cache: Path, prefix: Path):
        self.prefix, self.port = prefix, port
        self.url = f"http://127.0.0.1:{port}"
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
            f"""daemon off;
worker_processes auto;
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

    def __enter__(self) -> "Nginx":
        subprocess.run(
            [NGINX, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"), "-t", "-q"],
            check=True,
        )
        command = [NGINX, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf")]
        self.master = subprocess.Popen(command, **self.session())  # not daemonized: `daemon off`
        deadline = time.monotonic() + 10
        while True:  # listening once it accepts a connection
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.master.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"nginx did not start: {self.prefix}/error.log") from None
                time.sleep(0.02)

    def pids(self) -> list[int]:
        return [self.master.pid, *descendants(self.master.pid)]

    def __exit__(self, *exc) -> None:
        self.master.send_signal(signal.SIGQUIT)  # finish what is being answered, then stop
        try:
            self.master.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.master.kill()
            self.master.wait()


def nginx_snippet() -> str:
    """The nginx configuration docs/tiles.md gives (its one ```nginx block)."""
    text = DOCS.read_text(encoding="utf-8")
    (block,) = re.findall(r"```nginx\n(.*?)```", text, flags=re.S)
    return block


def fixed_tile(environ, start_response):
    """A WSGI app answering a tile's worth of fixed bytes with a tile's headers: the least a
    Python server's request can cost, the floor under any view."""
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


_FIXED = random.Random(0).randbytes(13_000)  # a gzip-coded attack tile's mean size


def descendants(pid: int) -> list[int]:
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        found += [int(child), *descendants(int(child))]
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


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


def first_tiles(
    root: Path, env: dict, work: Path, seeded: list[Path], child: int, count: int = 8
) -> None:
    """The first tiles of a fresh worker: gunicorn as `make run` starts it but with one worker
    (every worker is forked from the same master, so one stands for all), asked as soon as it
    answers for `count` tiles no cache holds, one after the other: zoom 13 children of seeded
    zoom 12 tiles, so they hold attacks and need the attack index. With every index built
    before the worker forks, the first takes as long as the others; built on a first tile, it
    pays for the index. `child` (0-3) picks which child, so that servers sharing one disk
    cache each render their own."""
    twelve = [f for f in seeded if f.parent.parent.name == "12"]
    parents = random.Random(1).sample(twelve, min(count, len(twelve)))
    env = {**env, "WEB_CONCURRENCY": "1"}
    with Gunicorn(free_port(), "wsgi:app", env, work, root=root) as server:
        wait_until_up(server.url + "/ogc")
        times = []
        for f in parents:
            x, y = 2 * int(f.parent.name) + child % 2, 2 * int(f.stem) + child // 2
            started = time.perf_counter()
            with urllib.request.urlopen(f"{server.url}/tiles/attacks/13/{x}/{y}.mvt") as r:
                r.read()
            times.append(time.perf_counter() - started)
    print(
        f"  a fresh worker's first {len(times)} uncached z13 attack tiles, one after the other: "
        f"the first {times[0] * 1000:.0f} ms, then median {statistics.median(times[1:]) * 1000:.0f}"
        f" ms, max {max(times[1:]) * 1000:.0f} ms (load {load()})"
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


def wrk_run(wrk: str, server: Server, script: Path, duration: int, connections: int) -> dict:
    before = load()
    pids = server.pids()
    cpu = cpu_seconds(pids)
    out = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{duration}s", "-s", str(script), server.url + "/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = cpu_seconds(pids) - cpu
    requests, micros, size, p50, p99, errors = map(int, re.search(r"RESULT (.*)", out)[1].split())
    seconds = micros / 1e6
    return {
        "rate": requests / seconds,
        "p50": p50 / 1000,
        "p99": p99 / 1000,
        "mibs": size / seconds / 2**20,
        "cpu": cpu / max(requests, 1) * 1e6,
        "errors": errors,
        "load": before.split()[0],
    }


if __name__ == "__main__":
    sys.exit(main())
