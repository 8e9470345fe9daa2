"""Downloads from kpmap under gunicorn (as `make run` starts it) beside nginx sending the same
bytes, in one run (issue 15). Prints figures; asserts nothing.

    python -m benchmarks.bench_downloads [STORE] [--rounds 3] [--gunicorn "OPTIONS"]

Without STORE, builds a synthetic 1,000,000-attack store in a temporary folder (a few minutes;
needs KPMAP_MIRROR or a filled fetch cache). The server starts with an empty download folder,
so the first GeoPackage request shows whether a user waits for it to be written.

Each kpmap download is first fetched once into a folder that nginx (started here with a config
of its own in a temporary prefix, on a free port: `sendfile on`, `gzip_static on`) serves, so
nginx sends exactly kpmap's bytes. Then each figure is measured `--rounds` times, kpmap and
nginx in turn, with curl writing to /dev/null (curl runs on the same machine and takes CPU
from both alike); medians are printed with the load average at that moment. "of GeoJSON"
(or CSV) is the uncompressed size over the time taken: what a client that unpacks gets.
"""

import argparse
import getpass
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.net import free_port

ROOT = Path(__file__).resolve().parent.parent
NGINX = "/usr/sbin/nginx"
MIB = 2**20

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes auto;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 5;
    types {{
        application/geo+json geojson;
        text/csv csv;
        application/geopackage+sqlite3 gpkg;
    }}
    server {{
        listen 127.0.0.1:{port};
        root {prefix}/www;
        location /static/ {{ gzip_static on; }}
        location /live/ {{
            alias {prefix}/www/static/;
            gzip on;
            gzip_comp_level 1;
            gzip_types application/geo+json text/csv;
        }}
    }}
}}
"""


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def wait_for(url: str, process: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not answer {url} within {timeout:.0f} s")


class Gunicorn:
    """kpmap as `make run` serves it (gunicorn_conf.py: gevent workers, preload) on a free port."""

    def __init__(self, store: Path, cache: Path, options: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        gunicorn = Path(sys.executable).parent / "gunicorn"
        env = dict(os.environ, KPMAP_STORE=str(store), KPMAP_DOWNLOAD_CACHE_DIR=str(cache))
        command = [str(gunicorn), *options, "--bind", f"127.0.0.1:{self.port}", "wsgi:app"]
        print("kpmap:", " ".join(command[1:]), flush=True)
        started = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        wait_for(self.url + "/ogc", self.process, "gunicorn")
        print(f"  answering after {time.perf_counter() - started:.1f} s ({load()})", flush=True)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


class Nginx:
    """nginx with a config of its own in `prefix` (never the system's), serving prefix/www."""

    def __init__(self, prefix: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.www = prefix / "www" / "static"
        self.www.mkdir(parents=True, exist_ok=True)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        # As root, nginx's workers would run as nobody, who may not read the files: as us.
        user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=prefix, port=self.port, user=user))
        self.process = subprocess.Popen(
            [NGINX, "-p", str(prefix), "-c", str(conf)], stderr=subprocess.DEVNULL
        )
        (self.www / "ping").write_text("ok")
        wait_for(self.url + "/static/ping", self.process, "nginx", timeout=30)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def curl(url: str, headers: dict[str, str] | None = None, out: str = "/dev/null") -> dict:
    """One GET with curl: status, bytes, seconds to the first byte and in all."""
    command = ["curl", "-s", "-o", out, "-w", "%{json}"]
    for key, value in (headers or {}).items():
        command += ["-H", f"{key}: {value}"]
    result = subprocess.run([*command, url], capture_output=True, check=True, text=True)
    info = json.loads(result.stdout)
    return {
        "status": info["http_code"],
        "bytes": info["size_download"],
        "first": info["time_starttransfer"],
        "total": info["time_total"],
    }


def side_by_side(
    label: str,
    ours: str,
    theirs: str,
    rounds: int,
    headers: dict[str, str] | None = None,
    unpacked: int = 0,
    kind: str = "GeoJSON",
) -> None:
    """Median rates of kpmap and nginx, fetched in turn."""
    results: dict[str, list[dict]] = {"kpmap": [], "nginx": []}
    for _ in range(rounds):
        for who, url in (("kpmap", ours), ("nginx", theirs)):
            got = curl(url, headers)
            if got["status"] not in (200, 206):
                raise SystemExit(f"{url}: HTTP {got['status']}")
            results[who].append(got)
    rates = {}
    line = [f"{label}:"]
    for who, runs in results.items():
        rate = statistics.median(r["bytes"] / r["total"] / MIB for r in runs)
        first = statistics.median(r["first"] for r in runs) * 1e3
        rates[who] = rate
        text = f"{who} {rate:,.0f} MiB/s"
        if unpacked:
            size = runs[0]["bytes"]
            text += f" on the wire ({size / MIB:,.0f} MiB, "
            text += f"{statistics.median(unpacked / r['total'] / MIB for r in runs):,.0f} MiB/s "
            text += f"of {kind})"
        text += f", first byte {first:.0f} ms"
        line.append(text)
    line.append(f"kpmap/nginx {rates['kpmap'] / rates['nginx']:.2f} ({load()})")
    print("\n  ".join(line), flush=True)


def build_store(folder: Path) -> Path:
    store = folder / "store"
    python = sys.executable
    for command in (
        [python, "-m", "geo.cli", "build", "--store", str(store)],
        [python, "-m", "geo.cli", "synth", "1000000", "--store", str(store)],
    ):
        print("building:", " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True, cwd=ROOT)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_downloads")
    parser.add_argument("store", nargs="?", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--gunicorn",
        default="--config gunicorn_conf.py",
        help="gunicorn options (default: those of `make run`, %(default)s)",
    )
    args = parser.parse_args()
    if not Path(NGINX).exists():
        raise SystemExit(f"{NGINX} is missing: apt-get install -y nginx")
    with tempfile.TemporaryDirectory(prefix="kpmap-bench-downloads-") as tmp:
        work = Path(tmp)
        store = args.store or build_store(work)
        print(f"store {store}; {os.cpu_count()} cores; {load()} at start", flush=True)
        nginx = Nginx(work / "nginx")
        cache = work / "downloads"
        server = Gunicorn(store, cache, args.gunicorn.split())
        try:
            run(server.url, nginx, args.rounds)
        finally:
            server.close()
            nginx.close()
        print(f"{load()} at end")


def run(kpmap: str, nginx: Nginx, rounds: int) -> None:
    www = nginx.www
    gzip = {"Accept-Encoding": "gzip"}

    # The first GeoPackage of this store (the download folder starts empty).
    got = curl(kpmap + "/download/kpmap.gpkg", out=str(www / "kpmap.gpkg"))
    print(
        f"first GeoPackage of the store: first byte after {got['first']:.2f} s, "
        f"{got['bytes'] / MIB:,.0f} MiB in {got['total']:.2f} s ({load()})",
        flush=True,
    )
    # Every other download once, saved where nginx serves it (and timed: the first request).
    saved = {}
    for name, url, headers in (
        ("attacks.geojson", "/download/attacks.geojson", None),
        ("attacks.geojson.gz", "/download/attacks.geojson", gzip),
        ("attacks.csv", "/download/attacks.csv", None),
        ("attacks.csv.gz", "/download/attacks.csv", gzip),
    ):
        got = curl(kpmap + url, headers, out=str(www / name))
        saved[name] = got["bytes"]
        print(
            f"first {url}{' (gzip)' if headers else ''}: {got['bytes'] / MIB:,.0f} MiB in "
            f"{got['total']:.2f} s, first byte after {got['first'] * 1e3:.0f} ms ({load()})",
            flush=True,
        )
    for name in ("attacks.geojson", "attacks.csv"):
        unpacked = subprocess.run(
            ["gzip", "-dc", str(www / f"{name}.gz")], capture_output=True, check=True
        ).stdout
        same = _timeless(unpacked) == _timeless((www / name).read_bytes())
        print(f"  {name}.gz unpacks to the identity download: {same}")
    print()
    side_by_side(
        "full attacks GeoJSON",
        kpmap + "/download/attacks.geojson",
        nginx.url + "/static/attacks.geojson",
        rounds,
    )
    side_by_side(
        "same, gzip",
        kpmap + "/download/attacks.geojson",
        nginx.url + "/static/attacks.geojson",
        rounds,
        headers=gzip,
        unpacked=saved["attacks.geojson"],
    )
    side_by_side(
        "same, gzip; nginx compressing level 1 as it sends",
        kpmap + "/download/attacks.geojson",
        nginx.url + "/live/attacks.geojson",
        rounds,
        headers=gzip,
        unpacked=saved["attacks.geojson"],
    )
    side_by_side(
        "attacks CSV",
        kpmap + "/download/attacks.csv",
        nginx.url + "/static/attacks.csv",
        rounds,
    )
    side_by_side(
        "same, gzip",
        kpmap + "/download/attacks.csv",
        nginx.url + "/static/attacks.csv",
        rounds,
        headers=gzip,
        unpacked=saved["attacks.csv"],
        kind="CSV",
    )
    side_by_side(
        "GeoPackage (kept)",
        kpmap + "/download/kpmap.gpkg",
        nginx.url + "/static/kpmap.gpkg",
        rounds,
    )
    half = saved["attacks.geojson"] // 2
    side_by_side(
        f"GeoJSON resumed from byte {half:,} (Range)",
        kpmap + "/download/attacks.geojson",
        nginx.url + "/static/attacks.geojson",
        rounds,
        headers={"Range": f"bytes={half}-"},
    )
    got = curl(kpmap + "/download/attacks.geojson?bbox=71,34,72,35&from=2020&to=2021")
    print(
        f"filtered GeoJSON (1°x1°, 2 years): {got['bytes'] / MIB:,.0f} MiB in "
        f"{got['total']:.2f} s = {got['bytes'] / got['total'] / MIB:,.0f} MiB/s ({load()})"
    )
    shutil.rmtree(www, ignore_errors=True)


def _timeless(body: bytes) -> bytes:
    """A download without its `generated_at` time (the one part two writes may differ in)."""
    return re.sub(rb'"generated_at":"[^"]*"', b"", body[:65536], count=1) + body[65536:]


if __name__ == "__main__":
    main()
