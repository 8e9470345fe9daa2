"""Helper processes of the build: work run on another core beside the build's own (reading the
imported records, preparing the downloads)."""

import subprocess
import sys
import tempfile
from contextlib import suppress
from typing import Self

from geo.errors import BuildError


class HelperProcess:
    """A helper of the build in a process of its own (the environment, licence settings
    included, with it): a fresh interpreter running `code` with `args`, not multiprocessing's
    spawn, which would run the caller's script again, nor a fork of a process that runs threads.
    `wait` raises BuildError with its last message if it failed; leaving the context without
    waiting (the build failed) stops it."""

    def __init__(
        self,
        code: str,
        *args: str,
        stdout: int | None = subprocess.DEVNULL,
        pass_fds: tuple[int, ...] = (),
    ):
        # Without the cyclic garbage collector, as the build runs: a helper parses millions of
        # features, and the collector would rescan them again and again (2.5x the time of a
        # batch); reference counting frees them all.
        self.command = [sys.executable, "-c", "import gc; gc.disable(); " + code, *args]
        self.stdout = stdout
        self.pass_fds = pass_fds

    def __enter__(self) -> Self:
        self.errors = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=self.stdout,
            stderr=self.errors,
            pass_fds=self.pass_fds,
        )
        return self

    def wait(self, what: str) -> None:
        if self.process.stdin and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass  # it stopped early: its exit code and message say why
        if self.process.wait():
            self.errors.seek(0)
            said = self.errors.read().decode("utf-8", "replace").strip().splitlines()
            raise BuildError(
                f"{what} failed (exit {self.process.returncode}): "
                + (said[-1] if said else "no message")
            )

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with suppress(OSError):  # a broken pipe: the process is gone already
                    pipe.close()
        self.errors.close()
