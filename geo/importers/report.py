"""The import report: what `kpmap import` prints, and every row's outcome as CSV (--report FILE).

The summary says what a user can act on: the layout recognised, the dataset and its release, rows
read, taken, refused (read, not for this map) and failed (cannot be read), each reason with its
count and its first lines, the rows whose names disagree with their point, the perpetrator names
data/actors.toml does not map, and the totals (events, killed best) of the rows taken.
"""

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

from geo.export import neutralise
from geo.importers.common import FAILED, REFUSED, TAKEN, ImportResult, Outcome, safe_text
from geo.importers.places import DISTRICT_DISAGREES, OTHER_PROVINCE

EXAMPLES = 3  # lines shown per reason
LISTED = 20  # notices shown per kind before "... and N more"
REPORT_COLUMNS = (
    "line", "outcome", "id", "reason", "detail", "district", "district_reported", "category",
    "actor", "killed_best", "flags",
)  # fmt: skip


def summary(result: ImportResult) -> list[str]:
    """The report's lines (see the module docstring)."""
    taken = [o for o in result.outcomes if o.status == TAKEN]
    refused = [o for o in result.outcomes if o.status == REFUSED]
    failed = [o for o in result.outcomes if o.status == FAILED]
    lines = [
        f"{result.path}",
        f"  layout    {result.layout}",
        f"  dataset   {result.dataset}, release {result.release or 'unknown'}",
        *(f"  note      {note}" for note in result.notes),
        f"  rows      {len(result.outcomes)} read: {len(taken)} taken, {len(refused)} refused "
        f"(not for this map), {len(failed)} failed (cannot be read)",
    ]
    for status, outcomes in (("refused", refused), ("failed", failed)):
        for reason, group in _by_reason(outcomes).items():
            lines.append(f"  {status:9s} {len(group):>6}  {reason}")
            lines += [f"{'':18}line {o.line}: {o.detail or o.reason}" for o in group[:EXAMPLES]]
    for kind, title in (
        (DISTRICT_DISAGREES, "districts named differently from the point's district"),
        (OTHER_PROVINCE, "rows whose province is not KP but whose point is in KP (taken)"),
    ):
        notices = [n for n in result.notices if n.kind == kind]
        if notices:
            lines.append(f"  {title}: {len(notices)}")
            lines += [f"{'':18}line {n.line}: {n.id}: {n.text}" for n in notices[:LISTED]]
            if len(notices) > LISTED:
                lines.append(f"{'':18}... and {len(notices) - LISTED} more (see --report)")
    if result.unmapped:
        listed = ", ".join(f"{name!r} ({n})" for name, n in result.unmapped.items())
        lines.append(f"  unmapped  actor names not in data/actors.toml: {listed}")
    killed = sum(r["killed_best"] or 0 for r in result.records)
    lines.append(f"  totals    {len(result.records)} events taken, {killed} killed (best)")
    return lines


def _by_reason(outcomes: list[Outcome]) -> dict[str, list[Outcome]]:
    """Outcomes grouped by reason, the most common reason first."""
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        groups[outcome.reason].append(outcome)
    return dict(sorted(groups.items(), key=lambda item: -len(item[1])))


def write_csv(result: ImportResult, path: Path) -> None:
    """Every row's outcome as CSV (REPORT_COLUMNS), one line per data row in file order; a
    taken row with its district, the provider's district, category, actor, killed_best and flags.
    Text is neutralised for spreadsheets (geo.export.neutralise)."""
    by_id = {r["id"]: r for r in result.records}
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(REPORT_COLUMNS)
        for outcome in result.outcomes:
            rec: dict[str, Any] = by_id.get(outcome.id, {}) if outcome.status == TAKEN else {}
            cells = (
                outcome.line,
                outcome.status,
                outcome.id or "",
                outcome.reason,
                outcome.detail,
                rec.get("district") or "",
                rec.get("district_reported") or "",
                rec.get("category", ""),
                rec.get("actor") or "",
                "" if rec.get("killed_best") is None else rec["killed_best"],
                "; ".join(rec.get("flags", ())),
            )
            writer.writerow([c if isinstance(c, int) else _cell(c) for c in cells])


def _cell(text: str) -> str:
    """A text cell of the report CSV, which opens in spreadsheets: formulas neutralised."""
    return neutralise(safe_text(text, limit=10_000)) if text else ""
