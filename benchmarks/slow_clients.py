"""Slow clients against the server as `make run` starts it: does /ogc still answer quickly?

    python -m benchmarks.slow_clients [--store DIR] [-n 200] [--seconds 20]
    python -m benchmarks.slow_clients --gunicorn "--preload -w 2 -k gthread --threads 4"

Starts gunicorn with the command of the Makefile's `run` target (read with `make -n run`, so it
is the same command; `--gunicorn` replaces its options, e.g. to compare with another worker
class) on a free local port, then opens N slow readers (each reads a large download at
`--rate` bytes/s, 20 KB/s like `curl --limit-rate 20k`, and starts it again when it ends) and
N slowloris connections (each sends a request's headers one byte every 2 s, and reconnects
when dropped). While they are all open it asks for /ogc over new connections, one after
another for `--seconds`, and prints the latency p50/p95/p99 and the errors (a timeout is
`--timeout` s). With `--tiles K`, K clients also ask for PNG tiles that miss every cache (CPU-bound
rendering) meanwhile, and one client reads the whole download at full speed, to show whether
the computing and the streaming hold the others back. It prints figures and asserts nothing.
"""

import argparse
import asyncio
import os
import random
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks.net import free_port

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="the store to serve (default: KPMAP_STORE or data/store)")
    parser.add_argument("-n", type=int, default=200, help="slow readers, and as many slowloris")
    parser.add_argument("--readers", type=int, help="slow readers (default: n)")
    parser.add_argument("--slowloris", type=int, help="slowloris connections (default: n)")
    parser.add_argument("--seconds", type=float, default=20, help="how long to measure /ogc")
    parser.add_argument("--rate", type=int, default=20_000, help="each reader's bytes/s")
    parser.add_argument("--download", default="/download/attacks.csv", help="what readers read")
    parser.add_argument("--tiles", type=int, default=0, help="clients rendering uncached tiles")
    parser.add_argument("--timeout", type=float, default=30, help="seconds before /ogc fails")
    parser.add_argument("--gunicorn", help="gunicorn options instead of the Makefile's")
    parser.add_argument(
        "--server", help="another server's command instead, {port} for its port (a comparison)"
    )
    args = parser.parse_args(argv)
    readers = args.n if args.readers is None else args.readers
    slowloris = args.n if args.slowloris is None else args.slowloris

    port = free_port()
    command = server_command(port, args.gunicorn)
    if args.server:
        command = shlex.split(args.server.format(port=port))
    env = server_env(args.store)
    print(f"server: {shlex.join(command)}")
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, start_new_session=True, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/ogc", server)
        size = None
        if args.tiles:  # the full-speed read is checked against it
            size = download_size(base + args.download)
            print(f"download {args.download}: {size / 1e6:,.1f} MB")
        quiet = measure(port, min(args.seconds, 5), args.timeout)
        report("/ogc, nothing else open", quiet)
        figures = asyncio.run(under_load(port, readers, slowloris, args, size))
        report(f"/ogc, {readers} slow readers + {slowloris} slowloris open", figures["ogc"])
        for line in figures["notes"]:
            print(f"  {line}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    return 0


def server_command(port: int, options: str | None) -> list[str]:
    """The gunicorn command of `make run`, bound to `port` (or with `options` instead)."""
    dry = subprocess.run(
        ["make", "-s", "-n", "run", f"BIND=127.0.0.1:{port}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in dry.splitlines() if "bin/gunicorn" in x)
    command = shlex.split(line)
    if options is not None:
        app = command[-1]
        command = [command[0], *shlex.split(options), "--bind", f"127.0.0.1:{port}", app]
    return command


def server_env(store: str | None) -> dict[str, str]:
    """This process's environment, with KPMAP_STORE naming `store` when one is given."""
    env = dict(os.environ)
    if store:
        env["KPMAP_STORE"] = str(Path(store).resolve())
    return env


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the server exited before answering")
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the server did not answer {url} within {timeout} s")


def download_size(url: str) -> int:
    request = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(request, timeout=600) as response:
        length = response.headers.get("Content-Length")
    if length:
        return int(length)
    with urllib.request.urlopen(url, timeout=600) as response:
        return sum(len(chunk) for chunk in iter(lambda: response.read(1 << 20), b""))


def measure(port: int, seconds: float, timeout: float, stop: threading.Event | None = None):
    """Latencies (s) of /ogc over new connections, one after another; failures as None."""
    out: list[float | None] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (stop and stop.is_set()):
        start = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
                s.sendall(b"GET /ogc HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            ok = data.startswith(b"HTTP/1.1 200")
            out.append(time.monotonic() - start if ok else None)
        except OSError:
            out.append(None)
        time.sleep(0.05)
    return out


def report(what: str, latencies: list[float | None]) -> None:
    ok = sorted(x for x in latencies if x is not None)
    errors = len(latencies) - len(ok)
    if len(ok) < 2:
        print(f"{what}: {len(latencies)} requests, {errors} errors (no latencies)")
        return
    q = statistics.quantiles(ok, n=100, method="inclusive")
    print(
        f"{what}: {len(latencies)} requests, {errors} errors; latency ms "
        f"p50 {q[49] * 1000:,.1f}  p95 {q[94] * 1000:,.1f}  p99 {q[98] * 1000:,.1f}  "
        f"max {ok[-1] * 1000:,.1f}"
    )


async def under_load(port: int, readers: int, slowloris: int, args, full_size: int | None):
    counts = {"reader_bytes": 0, "reader_restarts": 0, "loris_drops": 0, "loris_open": 0}
    stop = asyncio.Event()
    tasks = [asyncio.create_task(slow_reader(port, args, counts, stop)) for _ in range(readers)]
    tasks += [asyncio.create_task(loris(port, counts, stop)) for _ in range(slowloris)]
    await asyncio.sleep(5)  # every connection open and stalled
    notes = []
    halt = threading.Event()
    background = []
    if args.tiles:
        tile_counts = {"tiles": 0, "tile_errors": 0, "tile_seconds": 0.0}
        for _ in range(args.tiles):
            t = threading.Thread(target=render_tiles, args=(port, tile_counts, halt), daemon=True)
            t.start()
            background.append(t)
        fast: dict = {}
        t = threading.Thread(target=read_fast, args=(port, args.download, fast), daemon=True)
        t.start()
        background.append(t)
    before = dict(counts)
    started = time.monotonic()
    ogc = await asyncio.to_thread(measure, port, args.seconds, args.timeout)
    elapsed = time.monotonic() - started
    halt.set()
    stop.set()
    for t in background:
        t.join(timeout=args.timeout + 5)
    rate = (counts["reader_bytes"] - before["reader_bytes"]) / elapsed / max(readers, 1)
    notes.append(
        f"slow readers: {rate / 1000:,.1f} KB/s each on average (asked {args.rate / 1000:g}), "
        f"{counts['reader_restarts']} restarted"
    )
    notes.append(
        f"slowloris: {counts['loris_open']} connections opened in all, "
        f"{counts['loris_drops']} dropped by the server (and reopened)"
    )
    if args.tiles:
        n = tile_counts["tiles"]
        mean = tile_counts["tile_seconds"] / n * 1000 if n else float("nan")
        notes.append(
            f"{args.tiles} tile clients: {n} uncached PNG tiles, {tile_counts['tile_errors']} "
            f"errors, {mean:,.0f} ms each on average"
        )
        if "seconds" in fast:
            mb = fast["bytes"] / 1e6
            notes.append(
                f"one full-speed read of {args.download}: {mb:,.1f} MB "
                f"({'complete' if fast['bytes'] == full_size else 'INCOMPLETE'}) "
                f"in {fast['seconds']:,.1f} s"
            )
        else:
            notes.append(f"one full-speed read of {args.download}: {fast.get('error')}")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"ogc": ogc, "notes": notes}


async def slow_reader(port: int, args, counts: dict, stop: asyncio.Event) -> None:
    request = f"GET {args.download} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
    step = max(args.rate // 10, 1)
    while not stop.is_set():
        sock = socket.socket()
        # A small receive window, as a slow link has: the server's writes block soon.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=step)
            writer.write(request.encode())
            while not stop.is_set():
                chunk = await reader.read(step)
                if not chunk:
                    break
                counts["reader_bytes"] += len(chunk)
                await asyncio.sleep(0.1)
            writer.close()
        except OSError:
            sock.close()
            await asyncio.sleep(0.5)
        counts["reader_restarts"] += 0 if stop.is_set() else 1


async def loris(port: int, counts: dict, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            counts["loris_open"] += 1
            writer.write(b"GET /ogc HTTP/1.1\r\nHost: probe\r\n")
            header = b"X-Slow: " + b"a" * 10_000
            for byte in header:
                await asyncio.sleep(2 + random.random() * 0.1)
                writer.write(bytes([byte]))
                await writer.drain()
                if reader.at_eof():
                    break
            writer.close()
        except OSError:
            await asyncio.sleep(0.5)
        counts["loris_drops"] += 0 if stop.is_set() else 1


def render_tiles(port: int, counts: dict, halt: threading.Event) -> None:
    """Uncached PNG tiles: a random day in `to` makes each URL new to every cache."""
    while not halt.is_set():
        z = random.randint(7, 10)
        n = 2**z
        # KP spans longitudes 69-74 E and latitudes 31-37 N.
        x = int((random.uniform(69.5, 73.5) + 180) / 360 * n)
        y = int(n * random.uniform(0.389, 0.41))
        day = f"2025-{random.randint(1, 12):02d}-{random.randint(1, 28):02d}"
        url = f"http://127.0.0.1:{port}/tiles/attacks/{z}/{x}/{y}.png?to={day}"
        start = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                response.read()
            counts["tiles"] += 1
            counts["tile_seconds"] += time.monotonic() - start
        except OSError:
            counts["tile_errors"] += 1


def read_fast(port: int, path: str, out: dict) -> None:
    start = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=600) as response:
            out["bytes"] = sum(len(c) for c in iter(lambda: response.read(1 << 20), b""))
        out["seconds"] = time.monotonic() - start
    except OSError as exc:
        out["error"] = str(exc)


if __name__ == "__main__":
    sys.exit(main())
