"""Helpers the tests share (imported by test modules and by conftest; never the reverse).

Every record made here is SYNTHETIC: a stand-in with the real schema, never a real event.
"""

import argparse
import csv
import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from geo import paths
from geo.build.attacks import feature_record
from geo.build.pipeline import build_store
from geo.store import Store
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


# --- files -----------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "importers"
# The importers' sample files (written from each provider's codebook; SYNTHETIC rows).
SAMPLES = {fmt: FIXTURES / f"{fmt}_sample.csv" for fmt in ("acled", "gtd", "ucdp")}


def write_ucdp_csv(path, rows):
    """A UCDP GED CSV in the fixture's layout, each row SYNTHETIC ({column: value} overrides)."""
    header = SAMPLES["ucdp"].read_text(encoding="utf-8").splitlines()[0].split(",")
    base = {
        "year": "2018", "active_year": "1", "code_status": "Clear", "type_of_violence": "1",
        "side_a": "Government of Pakistan", "side_b": "TTP", "number_of_sources": "1",
        "source_article": "Synthetic wire", "source_headline": "Synthetic test row, not an event",
        "where_prec": "1", "where_coordinates": "Synthetic place",
        "adm_1": "Khyber Pakhtunkhwa province", "country": "Pakistan", "country_id": "770",
        "region": "Asia", "event_clarity": "1", "date_prec": "1", "deaths_a": "0",
        "deaths_b": "0", "deaths_civilians": "0", "deaths_unknown": "0", "gwnoa": "770",
    }  # fmt: skip
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, header, restval="")
        writer.writeheader()
        for row in rows:
            day = row.pop("day")
            writer.writerow({**base, "date_start": day, "date_end": day, **row})


# --- a store with hostile text (tests/test_maps.py, tests/test_browser.py) -------------------

PAYLOAD = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
SCRIPT_URL = "javascript:alert(3)"
WEB_URL = "https://example.org/report?a=1&b=2"
# A quiet corner of Chitral, far from the authored attacks, so the marker stands alone.
HOSTILE_AT = (71.79, 35.85)


def hostile_record() -> dict:
    """An attack whose every text is markup, as a careless or hostile source might send it."""
    return {
        "id": "synthetic-hostile-1",
        "date": "2024-03-05",
        "date_precision": "day",
        "date_end": None,
        "location": PAYLOAD,
        "district": "chitral",
        "geo_precision": 1,
        "actor": "TTP",
        "claimed": None,
        "event_type": "armed assault",
        "target": "civilians",
        "killed_low": None,
        "killed_best": 3,
        "killed_high": None,
        "injured_low": None,
        "injured_high": None,
        "description": PAYLOAD + " <script>alert(2)</script>",
        "sources": [
            {"publication": PAYLOAD, "title": "<b>bold</b>", "date": "2024-03", "url": SCRIPT_URL},
            {
                "publication": "Example Daily",
                "title": "A report",
                "date": "2024-03-06",
                "url": WEB_URL,
            },
        ],
        "origin": "synthetic",
        "lon": HOSTILE_AT[0],
        "lat": HOSTILE_AT[1],
    }


# A state-based clash as UCDP reports one: the government against a group, nobody named as the
# attacker, deaths by side (synthetic: shaped like an import, not a real event).
CLASH_AT = (70.2, 32.9)


def clash_record() -> dict:
    return {
        **hostile_record(),
        "id": "synthetic-clash-1",
        "location": "Synthetic village",
        "description": "Synthetic clash for tests.",
        "actor": None,
        "event_type": "unknown",
        "target": "unknown",
        "category": "armed clash",
        "parties": [
            {"name": "Government of Pakistan", "group": None, "side": "a"},
            {"name": PAYLOAD, "group": "TTP", "side": "b"},
        ],
        "deaths": {"side_a": 0, "side_b": 4, "civilians": 0, "unknown": 0},
        "district_reported": "North Waziristan agency",
        "flags": ["low 5, best 4, high 6 were out of order: low widened to 4"],
        "killed_low": 4,
        "killed_best": 4,
        "killed_high": 6,
        "sources": [{"publication": "UCDP GED", "title": "", "date": "2024-03-05", "url": ""}],
        "lon": CLASH_AT[0],
        "lat": CLASH_AT[1],
    }


def build_hostile_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real store plus the hostile attack and a clash, built by the real pipeline."""
    store = tmp_path_factory.mktemp("hostile") / "store"
    cache = tmp_path_factory.mktemp("hostile-cache")
    records = [hostile_record(), clash_record()]
    build_store(store, cache=cache, mirror=offline_mirror(), added=records)
    return store


# --- a store with restricted rows (tests/test_licences.py, tests/test_browser.py) ------------

# Written into every stand-in record's text, so a response that leaks one is easy to spot.
MARKER = "LICENCE-TEST-ROW"
ACLED_RELEASE = "2025-03-10"
UCDP_RELEASE = "25.1"
# (id, origin, publication, point, geo_precision, date): places far apart, on days no authored
# attack has, so no two records merge.
STAND_INS = [
    ("acled-PAK1001", "acled", "ACLED", (71.5785, 34.0151), 1, "2016-02-03"),  # Peshawar
    ("acled-PAK1002", "acled", "ACLED", (71.4400, 33.5800), 3, "2016-05-06"),  # Kohat, district
    ("gtd-201701010001", "gtd", "GTD", (72.3600, 34.7717), 1, "2017-01-01"),  # Mingora
    ("ucdp-900001", "ucdp", "UCDP GED", (70.6040, 32.9889), 1, "2018-07-08"),  # Bannu
]
RESTRICTED_IDS = {"acled-PAK1001", "acled-PAK1002", "gtd-201701010001"}


def stand_in(template: dict, fid: str, origin: str, publication: str, point, precision, day):
    """A record shaped like geo.importers.common.record() output, marked as a test stand-in."""
    record = {
        **template,
        "id": fid,
        "origin": origin,
        "date": day,
        "date_precision": "day",
        "date_end": None,
        "geo_precision": precision,
        "actor": "TTP",
        "killed_low": None,
        "killed_best": 2,
        "killed_high": None,
        "location": f"{MARKER} place",
        "description": f"{MARKER}: a stand-in for a {publication} row, not a real event.",
        "sources": [{"publication": publication, "title": MARKER, "date": day, "url": ""}],
        "lon": point[0],
        "lat": point[1],
    }
    release = {"acled": ACLED_RELEASE, "ucdp": UCDP_RELEASE}.get(origin)
    if release:
        record["release"] = release
    return record


def build_licence_store(tmp_path_factory: pytest.TempPathFactory, store: Store) -> Path:
    """The real store plus the ACLED, GTD and UCDP stand-ins, built by the real pipeline."""
    template = feature_record(store.query("attacks")[0])
    folder = tmp_path_factory.mktemp("licences") / "store"
    build_store(
        folder,
        cache=tmp_path_factory.mktemp("licences-cache"),
        mirror=offline_mirror(),
        added=[stand_in(template, *row) for row in STAND_INS],
    )
    return folder


# --- the map page (tests/test_maps.py, tests/test_map_detail.py, tests/test_licences.py) -------


CARRIED = r'<script type="application/json" data-kpmap-feed="([^"]+)">(.*?)</script>'


def carried_feeds(html: str) -> dict[str, Any]:
    """The feeds a map page carries (<script type="application/json" data-kpmap-feed="url">),
    by URL, parsed as the page's script parses them."""
    found = re.findall(CARRIED, html, re.S)
    return {url: json.loads(body) for url, body in found}


def without_carried_feeds(html: str) -> str:
    """A map page without the feeds it carries: the markup and scripts around the data."""
    return re.sub(CARRIED, "", html, flags=re.S)


def preloaded_feeds(html: str) -> list[str]:
    """The feeds a map page preloads (<link rel="preload">)."""
    return re.findall(r"""<link rel="preload" href="([^"]+)\"""", html)


# --- the browser tests (tests/test_browser.py, tests/test_map_detail.py) --------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
]
READY = "() => window.kpmapReady === true"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: pip install -e '.[test]'"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing: apt-get install -y chromium"
    return None


class Server:
    """A WSGI app on 127.0.0.1 in a thread; `url` is its base URL."""

    def __init__(self, wsgi_app):
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
        self.host = f"127.0.0.1:{self._server.server_port}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join()


def run_cli(argv: list[str]) -> int:
    """`kpmap tiles ...` in this process."""
    from geo.tiles import cli as tiles_cli

    top = argparse.ArgumentParser(prog="kpmap")
    sub = top.add_subparsers(dest="command", required=True)
    tiles_cli.add_parser(sub)
    args = top.parse_args(argv)
    return args.run(args)
