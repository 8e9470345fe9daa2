"""Shared fixtures: the real store, built once per session from the upstream files.

Tests never reach the internet: the upstream files come from KPMAP_MIRROR when it is set (CI sets
it to ../shared/data/upstream) or else from the fetch cache that `make test` fills first. With
neither, the build fails with a FetchError that says to run `kpmap fetch` or set KPMAP_MIRROR.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from geo.build.pipeline import build_store
from geo.store import Store
from tests.helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    acled_records,
    browser_missing,
    build_with_imports,
    offline_mirror,
    ucdp_records,
)


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("built") / "store"
    cache = tmp_path_factory.mktemp("cache")
    build_store(store, cache=cache, mirror=offline_mirror())
    return store


@pytest.fixture(scope="session")
def store(store_dir: Path) -> Store:
    return Store.open(store_dir)


@pytest.fixture(scope="session", autouse=True)
def download_cache(tmp_path_factory) -> Iterator[Path]:
    """Every app in the tests keeps its downloads in a folder of the session's, not in /tmp."""
    folder = tmp_path_factory.mktemp("downloads")
    before = os.environ.get("KPMAP_DOWNLOAD_CACHE_DIR")
    os.environ["KPMAP_DOWNLOAD_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        del os.environ["KPMAP_DOWNLOAD_CACHE_DIR"]
    else:
        os.environ["KPMAP_DOWNLOAD_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def app(store_dir: Path):
    """The web app over the session's store (create_app with a test mapping)."""
    from app import create_app

    return create_app({"STORE": str(store_dir), "TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("links-cache")


@pytest.fixture(scope="session")
def linked_store_dir(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Path:
    """A store that imported ACLED's records, then UCDP's (acled-T1 and ucdp-t1 linked)."""
    store = tmp_path_factory.mktemp("linked") / "store"
    build_with_imports(store, build_cache, acled_records(), ucdp_records())
    return store


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's, driven by playwright). A missing browser fails the tests in
    CI (.ci/run installs it) and skips them elsewhere."""
    missing = browser_missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing, pytrace=False)
        pytest.skip(missing)
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
