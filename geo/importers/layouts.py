"""The layouts a provider's files come in, and which one a file is, told from its header.

Each importer lists its layouts (UCDP GED's current names, its older `*_est` names, ...); a file
is read as the first layout whose required columns its header has, after that layout's renames.
The layout's name, with the optional columns the file has and lacks, is what the import report
says was read. A header no layout fits is refused with the columns found and the layouts known.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from geo.errors import SchemaError


@dataclass(frozen=True)
class Layout:
    """One way a provider lays out its columns.

    `required`: canonical column names a file must have (after `renames`, file name ->
    canonical name); `noted`: optional columns whose presence or absence names the variant
    (ACLED's timestamp, tags, ...); `headerless`: the columns of a file that comes without a
    header row (its first line is already an event), recognised by its width and a numeric id.
    """

    name: str
    required: tuple[str, ...]
    renames: Mapping[str, str] = field(default_factory=dict)
    noted: tuple[str, ...] = ()
    headerless: tuple[str, ...] = ()

    def columns(self, header: Sequence[str]) -> list[str]:
        """The header's names in canonical form (lower case, renamed)."""
        lowered = [name.strip().lower() for name in header]
        return [self.renames.get(name, name) for name in lowered]

    def missing(self, header: Sequence[str]) -> list[str]:
        present = set(self.columns(header))
        return [c for c in self.required if c not in present]


@dataclass(frozen=True)
class Recognised:
    """What recognise() found: the layout, the canonical column names, the description the
    report shows, and whether the file's first line is an event rather than a header."""

    layout: Layout
    columns: list[str]
    description: str
    header_is_data: bool = False


def recognise(
    header: Sequence[str], layouts: Sequence[Layout], provider: str, where: str
) -> Recognised:
    """The first of `layouts` the header fits; SchemaError naming the columns found and every
    layout known (with what each lacks) when none does.

    >>> ged = Layout("UCDP GED columns", ("id", "best"))
    >>> older = Layout("older UCDP GED columns", ("id", "best"), {"best_est": "best"})
    >>> recognise(["id", "best_est"], [ged, older], "UCDP", "f.csv").description
    'older UCDP GED columns'
    """
    for layout in layouts:
        if not layout.missing(header):
            columns = layout.columns(header)
            return Recognised(layout, columns, _describe(layout, columns))
    for layout in layouts:
        if _headerless(layout, header):
            columns = list(layout.headerless)
            description = f"{_describe(layout, columns)} (no header row)"
            return Recognised(layout, columns, description, header_is_data=True)
    found = ", ".join(name for name in header if name) or "(none)"
    known = "\n".join(
        f"  - {layout.name}: lacks the column(s) {', '.join(layout.missing(header))}"
        for layout in layouts
    )
    article = "an" if provider[:1] in "AEIOU" else "a"  # an ACLED file, a GTD file
    raise SchemaError(
        f"{where} is not {article} {provider} file in any layout kpmap knows.\n"
        f"Columns found ({len([h for h in header if h])}): {found}\n"
        f"Layouts known:\n{known}"
    )


def _describe(layout: Layout, columns: Sequence[str]) -> str:
    if not layout.noted:
        return layout.name
    present = set(columns)
    has = [c for c in layout.noted if c in present]
    lacks = [c for c in layout.noted if c not in present]
    parts = [f"with {', '.join(has)}"] if has else []
    parts += [f"without {', '.join(lacks)}"] if lacks else []
    return f"{layout.name} ({'; '.join(parts)})"


def _headerless(layout: Layout, header: Sequence[str]) -> bool:
    # UCDP has published monthly Candidate files whose first line is already an event: the same
    # columns, in the standard order, with no names. A numeric first cell (the event id) and the
    # exact width tell such a line from a header.
    width = len(layout.headerless)
    if not layout.headerless or len(header) not in (width, width + 1) or any(header[width:]):
        return False
    return header[0].isdigit()
