"""Helpers the tests share (imported by test modules and by conftest; never the reverse).

Every record made here is SYNTHETIC: a stand-in with the real schema, never a real event.
"""

from pathlib import Path

from geo import paths
from geo.build.pipeline import build_store
from geo.vocab import MILITANT_ATTACK, event_fields


def offline_mirror() -> str:
    """Where tests fetch from: $KPMAP_MIRROR, else the fetch cache itself (never the network)."""
    return paths.mirror() or str(paths.cache_dir())


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


def build_with_imports(store: Path, cache: Path, *imports: list[dict]) -> dict:
    """Build `store` afresh, then import each batch of records in turn; the last manifest."""
    manifest = {}
    for records in imports:
        manifest = build_store(store, cache=cache, mirror=offline_mirror(), added=records)
    return manifest
