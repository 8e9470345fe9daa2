"""geo/settings.py: every KPMAP_* setting declared once, and documented."""

import re
from pathlib import Path

from app import create_app
from geo.settings import SETTINGS

ROOT = Path(__file__).parent.parent


def test_the_docs_list_every_setting_in_their_table():
    readme = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `KPMAP_([A-Z_]+)` \|", readme, flags=re.M))
    assert listed == {s.name for s in SETTINGS}


def test_the_code_reads_no_setting_the_table_lacks():
    used = set()
    for path in [*ROOT.glob("geo/**/*.py"), *ROOT.glob("app/**/*.py"), ROOT / "Makefile"]:
        used |= set(re.findall(r"KPMAP_([A-Z][A-Z_]*[A-Z])", path.read_text(encoding="utf-8")))
    assert used <= {s.name for s in SETTINGS}, used - {s.name for s in SETTINGS}


def test_the_app_takes_its_defaults_from_the_table(store_dir, monkeypatch):
    for setting in SETTINGS:  # the session sets some (a private download folder)
        monkeypatch.delenv(f"KPMAP_{setting.name}", raising=False)
    config = create_app({"STORE": str(store_dir)}).config
    for setting in SETTINGS:
        if setting.app and setting.name != "STORE":
            assert config[setting.name] == setting.default, setting.name
