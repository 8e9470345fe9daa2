"""A throwaway PostgreSQL + PostGIS server for tests and benchmarks: initdb and pg_ctl in a
temporary folder, reachable only through a Unix socket in that folder (no TCP port, so several
test runs on one machine never collide), torn down with the folder.

    with PgServer.start() as server:
        url = server.create_database("kpmap")   # postgresql://...  with postgis installed

Debian's `postgresql` and `postgis` packages provide the binaries (.ci/run installs them).
initdb and postgres refuse to run as root: run as root, the server runs as the `postgres` system
user (the folder is handed to it), and as the current user otherwise.
"""

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

SUPERUSER = "kpmap"


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin folder holding initdb and pg_ctl, or None."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True
    )
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def missing_reason() -> str | None:
    """Why no PostGIS server can be started here (None when one can)."""
    bindir = find_bindir()
    if bindir is None:
        return "PostgreSQL is not installed: apt-get install -y postgresql postgis"
    sharedir = subprocess.run(
        [bindir / "pg_config", "--sharedir"], capture_output=True, text=True
    ).stdout.strip() or str(Path("/usr/share/postgresql") / bindir.parent.name)
    if not (Path(sharedir) / "extension" / "postgis.control").exists():
        version = bindir.parent.name
        return f"PostGIS is not installed for PostgreSQL {version}: apt-get install -y postgis"
    if os.getuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no `postgres` user to run the server as"
    return None


class PgServer:
    """A running server in its own folder; `stop()` (or leaving the `with`) removes it all."""

    def __init__(self, folder: Path, bindir: Path, run_as: dict[str, Any]):
        self.folder = folder
        self.bindir = bindir
        self._run_as = run_as
        self.data = folder / "data"
        self.socket_dir = folder
        self.port = 5432  # the socket's name carries it: .s.PGSQL.<port>

    @classmethod
    def start(cls, settings: dict[str, str] | None = None) -> "PgServer":
        """initdb and start a server; `settings` are postgres -c options (e.g. fsync=off)."""
        reason = missing_reason()
        if reason:
            raise RuntimeError(reason)
        bindir = find_bindir()
        # A short path: a Unix socket's path is limited to ~107 bytes.
        folder = Path(tempfile.mkdtemp(prefix="kpmap-pg-"))
        run_as: dict[str, Any] = {}
        if os.getuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(folder, user.pw_uid, user.pw_gid)
            run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        server = cls(folder, bindir, run_as)
        try:
            server._run(
                "initdb", "-D", server.data, "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                "--locale=C.UTF-8", "--no-sync",
            )  # fmt: skip
            options = {
                "listen_addresses": "''",
                "unix_socket_directories": f"'{folder}'",
                # A test server: losing it in a crash loses nothing, so skip the flushes.
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                **(settings or {}),
            }
            server.port = int(options.get("port", 5432))
            flags = " ".join(f"-c {k}={v}" for k, v in options.items())
            server._run(
                "pg_ctl", "start", "-w", "-t", "60", "-D", server.data, "-l",
                folder / "server.log", "-o", flags,
            )  # fmt: skip
        except BaseException:
            server._remove()
            raise
        return server

    def start_standby(self) -> "PgServer":
        """A hot standby of this server (pg_basebackup -R: it streams this server's WAL and
        answers read-only queries), in a folder of its own: a read replica, as a deployment
        has one."""
        folder = Path(tempfile.mkdtemp(prefix="kpmap-pg-"))
        if self._run_as:
            os.chown(folder, self._run_as["user"], self._run_as["group"])
        standby = PgServer(folder, self.bindir, self._run_as)
        try:
            standby._run(
                "pg_basebackup", "-D", standby.data, "-h", self.socket_dir, "-p", self.port,
                "-U", SUPERUSER, "-R", "-X", "stream", "--no-sync", "--checkpoint=fast",
            )  # fmt: skip
            standby.port = self.port  # another socket folder: no clash
            options = {
                "listen_addresses": "''",
                "unix_socket_directories": f"'{folder}'",
                "port": str(self.port),
                "hot_standby": "on",
                "fsync": "off",
            }
            flags = " ".join(f"-c {k}={v}" for k, v in options.items())
            standby._run(
                "pg_ctl", "start", "-w", "-t", "60", "-D", standby.data, "-l",
                folder / "server.log", "-o", flags,
            )  # fmt: skip
        except BaseException:
            standby._remove()
            raise
        return standby

    def _run(self, program: str, *args: Any) -> None:
        done = subprocess.run(
            [self.bindir / program, *map(str, args)],
            capture_output=True,
            text=True,
            cwd=self.folder,
            **self._run_as,
        )
        if done.returncode:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr}\n{tail}")

    def url(self, dbname: str = "postgres") -> str:
        """A libpq URL for a database of this server (over its Unix socket)."""
        host = quote(str(self.socket_dir), safe="")
        return f"postgresql://{SUPERUSER}@/{dbname}?host={host}&port={self.port}"

    def create_database(self, name: str) -> str:
        """A new database with the postgis extension; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(self.url(name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        return self.url(name)

    def stop(self) -> None:
        try:
            # immediate: a test server's clients may still hold pooled connections
            self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", self.data)
        finally:
            self._remove()

    def _remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "PgServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
