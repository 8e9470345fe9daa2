"""A store that changes while it is served: the store at a path, re-opened when a build or an
import puts a new one there.

    live = LiveStore("data/store", check_every=1.0)
    store = live.current()            # take it once per request, and use only it
    tiler = live.derived("tiler", store, lambda s: Tiler(s, policy))

`current()` looks at the store's version (geo.store.current_version: one small file read) at
most once every `check_every` seconds. When the version changed, one thread (a background thread
started by the request that noticed) opens the new store while every request goes on with the
old one; once it is open (and warmed, see `warm`), later calls get the new one. A request that
already holds the old store keeps it: it is released when the last such request ends, so for a
moment both are in memory (a million-attack store is ~1.8 GB: plan for twice that while
switching).

A new store that fails to open (half written, corrupt, of another format) is logged in one line
and the old one served on; that version is not tried again, a later one is.

Everything made from a store (tilers, tile caches, tables) belongs to one version: `derived`
keeps it for the store being served (and the one being opened) and forgets it at the switch, so
nothing made from one version is served for another and the old store's memory can be freed.
"""

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from geo.store import current_version, is_database_url, open_store
from geo.store.files import Store

log = logging.getLogger(__name__)

T = TypeVar("T")


class LiveStore:
    """The store at `path`, switched for a new version between requests (thread-safe)."""

    def __init__(
        self,
        path: str | Path,
        check_every: float = 1.0,
        warm: Iterable[Callable[[Store], Any]] = (),
        freeze: bool = False,
        opener: Callable[[str | Path], Store] | None = None,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
    ):
        """Open the store now (StoreNotFound and any open error propagate: a server that
        cannot open its store at start should not start).

        `warm` functions run on a new store before it is served (e.g. building its tables), so
        the first requests on it do not pay for them; one that raises counts as a failed open.
        `freeze` moves each new store out of the cyclic collector's sight (gc.freeze, as the app
        does at start): a million attacks otherwise make every collection a 100-200 ms pause.
        """
        # A folder, or a postgresql:// URL (geo.store.open_store: a URL is not a path).
        self.path: str | Path = path if is_database_url(path) else Path(path)
        self.check_every = check_every
        # Functions run on each new store before it is served (a list: blueprints add theirs).
        self.warm = list(warm)
        self.background = background
        self._freeze = freeze
        self._open = opener or open_store
        self._clock = clock
        self._switch = threading.Lock()  # held by the one thread checking or opening
        self._derive = threading.Lock()  # guards _derived and _making
        self._derived: dict[tuple[str, str], Any] = {}
        self._making: dict[tuple[str, str], threading.Lock] = {}
        self._opening: str | None = None  # the version being opened, whose derived are kept
        self._failed: str | None = None  # a version that failed to open: not tried again
        self._store: Store | None = None
        # The first store is the process's to freeze (wsgi.py does, once the app is made).
        self._store = self._prepare(self._open(self.path), freeze=False)
        self._checked = clock()

    @property
    def version(self) -> str:
        """The version of the store being served now."""
        return self._served().version

    def _served(self) -> Store:
        assert self._store is not None  # set by __init__
        return self._store

    def serves(self, store: Store) -> bool:
        """Whether `store` is the version served now, or the one being opened to be served."""
        return self._kept(store.version)

    def _kept(self, version: str) -> bool:
        """Whether objects made from this version are kept: it is served, or being opened."""
        served = self._store.version if self._store is not None else None
        return version in (served, self._opening)

    def current(self) -> Store:
        """The store to answer a request with. Cheap: a clock read, and at most once per
        `check_every` a small file read. A new version is opened in a thread of its own
        (`background`, the default) while every request goes on with the old store, so no
        request waits for the switch; without `background` the thread that saw it opens it."""
        store = self._served()
        if self._clock() - self._checked < self.check_every:
            return store
        if not self._switch.acquire(blocking=False):
            return store  # another thread is checking, or opening the new store: serve on
        self._checked = self._clock()
        if current_version(self.path) in (None, store.version, self._failed):
            self._switch.release()
            return store
        if not self.background:
            try:
                return self._check()
            finally:
                self._switch.release()
        try:
            threading.Thread(target=self._open_new, name="kpmap-store-open", daemon=True).start()
        except BaseException:
            self._switch.release()
            raise
        return store

    def _open_new(self) -> None:
        try:
            self._check()
        finally:
            self._switch.release()  # taken by current() in the request's thread

    def check(self) -> Store:
        """Look for a new version now (whatever the interval) and switch to it, in this thread;
        the store served afterwards. Waits for a check or an opening already begun."""
        with self._switch:
            self._checked = self._clock()
            return self._check()

    def _check(self) -> Store:
        version = current_version(self.path)
        old = self._served()
        if version is None or version == old.version or version == self._failed:
            return old  # no store there right now (mid-swap), the same one, or a known bad one
        self._opening = version
        try:
            started = time.perf_counter()
            new = self._prepare(self._open(self.path))
        except Exception as error:  # noqa: BLE001 - any failure: keep serving what works
            self._failed = version
            log.error(
                "kpmap: the new store at %s (version %s) could not be opened, still serving "
                "version %s: %s",
                self.path,
                version,
                old.version,
                f"{type(error).__name__}: {error}".splitlines()[0],
            )
            return old
        finally:
            self._opening = None
        with self._derive:
            # What was made from the old store is kept only by the requests still using it.
            self._derived = {k: v for k, v in self._derived.items() if k[0] == new.version}
            self._making = {k: v for k, v in self._making.items() if k[0] == new.version}
            self._store = new
        log.warning(
            "kpmap: switched to the store at %s version %s (was %s; opened in %.1f s)",
            self.path,
            new.version,
            old.version,
            time.perf_counter() - started,
        )
        return new

    def _prepare(self, store: Store, freeze: bool = True) -> Store:
        self._opening = store.version
        try:
            for warm in self.warm:
                warm(store)
        finally:
            self._opening = None
        if freeze and self._freeze:
            gc.freeze()
        return store

    def derived(self, name: str, store: Store, make: Callable[[Store], T]) -> T:
        """What `make(store)` returns, made once per store version and kept while that version is
        served; the store is the one a request took from `current()`.

        For a store no longer served (a request that began before a switch), the object is made
        for that request alone and not kept, so an old version's objects never outlive it.
        Concurrent first calls for one name wait for the one thread that makes it.
        """
        key = (store.version, name)
        with self._derive:
            if key in self._derived:
                return self._derived[key]
            making = self._making.setdefault(key, threading.Lock()) if self._kept(key[0]) else None
        if making is None:
            return make(store)
        with making:
            with self._derive:
                if key in self._derived:
                    return self._derived[key]
            value = make(store)
            with self._derive:
                if self._kept(store.version):
                    self._derived[key] = value
                self._making.pop(key, None)
            return value
