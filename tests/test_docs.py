"""The documentation says what the code does: the command-line table in docs/cli.md lists every
`kpmap` command with every option it takes, and no command that does not exist; every link
between the docs lands on a heading."""

import argparse
import re
from pathlib import Path

from geo import cli
from geo.tiles import TILE_LAYERS
from geo.tiles import cli as tiles_cli

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands(parser: argparse.ArgumentParser, prefix: str) -> dict[str, list[str]]:
    """Every leaf command ("kpmap tiles seed") and its long options."""
    found: dict[str, list[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _commands(sub, f"{prefix} {name}")
            return found
    options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    found[prefix] = [o for o in options if o != "--help"]
    return found


def _cli_rows() -> dict[str, str]:
    """docs/cli.md's rows: the command's words (up to its first argument) -> the row."""
    rows = {}
    for line in (ROOT / "docs" / "cli.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `(kpmap(?: [a-z]+)+)", line)
        if match:
            rows[match.group(1)] = line
    return rows


def test_the_cli_table_lists_every_command_and_option():
    commands = _commands(cli.parser(), "kpmap")
    rows = _cli_rows()

    def row_of(command: str) -> str | None:
        # the row's leading words may run into the first argument ("kpmap import FORMAT")
        return next((r for words, r in rows.items() if words.startswith(command)), None)

    missing = [c for c in commands if row_of(c) is None]
    assert missing == []
    for command, options in commands.items():
        usage = row_of(command).split("|")[1]
        assert [o for o in options if o not in usage] == [], command
    invented = [w for w in rows if not any(w.startswith(c) for c in commands)]
    assert invented == []


def test_the_tiles_command_names_the_tile_layers():
    assert tiles_cli.LAYERS.replace(" or ", ", ").split(", ") == list(TILE_LAYERS)


def test_every_link_between_the_docs_lands_on_a_heading():
    def slug(heading: str) -> str:
        return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

    anchors = {
        path.resolve(): {slug(h) for h in re.findall(r"^#+ (.*)$", path.read_text(), re.M)}
        for path in DOCS
    }
    broken = []
    for path in DOCS:
        for target, anchor in re.findall(r"\]\(([\w./-]*?\.md)?(?:#([\w-]+))?\)", path.read_text()):
            file = (path.parent / target).resolve() if target else path.resolve()
            if file not in anchors or (anchor and anchor not in anchors[file]):
                broken.append(f"{path.name}: {target}#{anchor}")
    assert broken == []
