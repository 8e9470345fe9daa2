"""Shared fixtures: the real store, built once per session from the upstream files.

Tests never reach the internet: the upstream files come from KPMAP_MIRROR when it is set (CI sets
it to ../shared/data/upstream) or else from the fetch cache that `make test` fills first. With
neither, the build fails with a FetchError that says to run `kpmap fetch` or set KPMAP_MIRROR.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from geo import paths
from geo.build.pipeline import build_store
from geo.store import Store
from geo.vocab import MILITANT_ATTACK, event_fields


def offline_mirror() -> str:
    """Where tests fetch from: $KPMAP_MIRROR, else the fetch cache itself (never the network)."""
    return paths.mirror() or str(paths.cache_dir())


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


# --- a store with linked records -------------------------------------------------------------

# Two places in KP far from every authored attack: Peshawar's centre and Miranshah.
PESHAWAR = (71.5785, 34.0151)
MIRANSHAH = (70.0730, 33.0010)
KM_LAT = 1 / 111.0  # about one km of latitude, in degrees


def attack_record(**overrides) -> dict:
    """A SYNTHETIC canonical attack record (properties + lon/lat); overrides replace any key."""
    lon, lat = overrides.pop("point", PESHAWAR)
    origin = overrides.get("origin", "synthetic")
    rec = {
        "id": "synthetic-1",
        "date": "2018-05-10",
        "date_precision": "day",
        "date_end": None,
        "location": "Synthetic place",
        "district": None,
        "geo_precision": 1,
        "actor": "TTP",
        "claimed": None,
        "event_type": "unknown",
        "target": "unknown",
        "killed_low": None,
        "killed_best": 3,
        "killed_high": None,
        "injured_low": None,
        "injured_high": None,
        "description": "Synthetic test record, not a real event.",
        "sources": [{"publication": origin, "title": "synthetic", "date": "", "url": ""}],
        "origin": origin,
        **event_fields(MILITANT_ATTACK),
        "lon": lon,
        "lat": lat,
    }
    rec.update(overrides)
    return rec


def acled_records() -> list[dict]:
    """An ACLED report of a TTP attack in Peshawar (linked to ucdp-t1 in LINKED_STORE)."""
    return [attack_record(id="acled-T1", origin="acled", dataset="acled", release="2025-01-01")]


def ucdp_records() -> list[dict]:
    """UCDP's report of the same clash (a range, no perpetrator, the parties), and two distinct
    same-actor events on consecutive days at one point (both kept, never merged)."""
    parties = [
        {"name": "Government of Pakistan", "group": "unknown", "side": "a"},
        {"name": "TTP", "group": "TTP", "side": "b"},
    ]
    return [
        attack_record(
            id="ucdp-t1",
            origin="ucdp",
            actor="unknown",
            date="2018-05-09",
            date_precision="range",
            date_end="2018-05-11",
            geo_precision=2,
            point=(PESHAWAR[0], PESHAWAR[1] + 0.5 * KM_LAT),
            killed_low=2,
            killed_best=4,
            killed_high=6,
            **event_fields("armed clash", parties=parties),
        ),
        attack_record(
            id="ucdp-t2", origin="ucdp", date="2018-06-01", point=MIRANSHAH, killed_best=5
        ),
        attack_record(
            id="ucdp-t3", origin="ucdp", date="2018-06-02", point=MIRANSHAH, killed_best=7
        ),
    ]


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("links-cache")


def build_with_imports(store: Path, cache: Path, *imports: list[dict]) -> dict:
    """Build `store` afresh, then import each batch of records in turn; the last manifest."""
    manifest = {}
    for records in imports:
        manifest = build_store(store, cache=cache, mirror=offline_mirror(), added=records)
    return manifest


@pytest.fixture(scope="session")
def linked_store_dir(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Path:
    """A store that imported ACLED's records, then UCDP's (acled-T1 and ucdp-t1 linked)."""
    store = tmp_path_factory.mktemp("linked") / "store"
    build_with_imports(store, build_cache, acled_records(), ucdp_records())
    return store
