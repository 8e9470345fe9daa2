"""The hardening run (`make hardening`): schemathesis over the OGC API, then the slow clients.

    python -m benchmarks.hardening [--store DIR] [--examples 120] [--seed 1] [-n 200]

Starts the server as `make run` does (benchmarks.slow_clients.server_command) on a free port,
runs schemathesis against its /ogc/api with every check, every phase (coverage, fuzzing, and
stateful sequences that follow the document's links) and the hooks of
benchmarks.schemathesis_hooks, and prints the requests made by status, the 5xx count, the
failures by check and the errors; then runs benchmarks.slow_clients with N slow readers and N
slowloris connections. It prints figures and asserts nothing (its exit status is 0).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import slow_clients

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="the store to serve (default: KPMAP_STORE or data/store)")
    parser.add_argument("--examples", type=int, default=120, help="test cases per operation")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("-n", type=int, default=200, help="slow readers, and as many slowloris")
    parser.add_argument("--skip-slow-clients", action="store_true")
    args = parser.parse_args(argv)
    env = slow_clients.server_env(args.store)

    port = slow_clients.free_port()
    command = slow_clients.server_command(port, None)
    print(f"server: {' '.join(command)}", flush=True)
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, start_new_session=True, stderr=subprocess.DEVNULL
    )
    try:
        slow_clients.wait_until_up(f"http://127.0.0.1:{port}/ogc", server)
        fuzz(f"http://127.0.0.1:{port}/ogc/api", args, env)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    if not args.skip_slow_clients:
        print("\nslow clients:", flush=True)
        extra = ["--store", args.store] if args.store else []
        # The tehsils' GeoJSON (3 MB) outlasts the socket buffers at 20 KB/s in any store.
        download = ["--download", "/download/tehsils.geojson"]
        slow_clients.main([*extra, *download, "-n", str(args.n), "--seconds", "30"])
    return 0


def fuzz(url: str, args, env: dict[str, str]) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    with tempfile.TemporaryDirectory(prefix="kpmap-hardening-") as folder:
        counts = Path(folder) / "statuses.json"
        command = [
            str(schemathesis), "--config-file", str(ROOT / "benchmarks" / "schemathesis.toml"),
            "run", url,
            "--checks", "all",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", str(args.examples),
            "--seed", str(args.seed),
            "--workers", "2",
            "--request-timeout", "120",
            "--report", "json",
            "--report-dir", folder,
            "--output-truncate", "true",
        ]  # fmt: skip
        run_env = {
            **env,
            "SCHEMATHESIS_HOOKS": "benchmarks.schemathesis_hooks",
            "HARDENING_COUNTS": str(counts),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        }
        print(f"schemathesis: {' '.join(command[1:])}", flush=True)
        done = subprocess.run(command, cwd=ROOT, env=run_env, capture_output=True, text=True)
        log = Path(tempfile.gettempdir()) / "kpmap-hardening-schemathesis.log"
        log.write_text(done.stdout + done.stderr)
        reports = list(Path(folder).glob("json-*.json"))
        if not reports:
            print(f"schemathesis wrote no report (exit {done.returncode}); see {log}")
            return
        report = json.loads(reports[0].read_text())
        statuses = json.loads(counts.read_text()) if counts.exists() else {}
    requests = sum(statuses.values())
    server_errors = sum(n for s, n in statuses.items() if s.startswith("5"))
    by_class: dict[str, int] = {}
    for status, n in statuses.items():
        by_class[f"{status[0]}xx"] = by_class.get(f"{status[0]}xx", 0) + n
    cases = report["test_cases"]
    print(f"  requests made: {requests:,} ({', '.join(f'{k} {v:,}' for k, v in by_class.items())})")
    print(f"  5xx answers: {server_errors}")
    print(
        f"  test cases: {cases['generated']:,} generated, {cases['with_failures']} with failures; "
        f"{report['running_time']:,.0f} s; phases: "
        + ", ".join(f"{k} {v['status']}" for k, v in report["phases"].items())
    )
    failures = report.get("failures", [])
    print(f"  conformance failures: {sum(f['count'] for f in failures)}")
    for failure in failures:
        print(f"    {failure['code']} {failure['title']}: {failure['count']}")
        for operation in failure["operations"][:5]:
            print(f"      {operation}")
        if len(failure["operations"]) > 5:
            print(f"      ... and {len(failure['operations']) - 5} more operations")
    errors = report.get("errors", [])
    print(f"  errors (of schemathesis, not answers): {len(errors)}")
    for error in errors[:5]:
        print(f"    {json.dumps(error)[:200]}")
    print(f"  schemathesis's own output: {log}")


if __name__ == "__main__":
    sys.exit(main())
