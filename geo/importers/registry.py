"""What every importer declares, so that reading a file (geo.importers.read_file) is the same
for every provider and a new provider is one module: its NAME, ORIGIN, LAYOUTS, ID_COLUMN and
ID_PREFIX, and its convert, dataset_of, release_key and release_of functions (`Importer.of`).

A provider's licence and attribution are data, not code: they are its entry in
data/datasets.toml under the importer's `origin` (geo.licences), which `terms()` reads.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from geo.importers.layouts import Layout
from geo.importers.places import Unplaced
from geo.licences import Dataset, read_datasets


@dataclass(frozen=True)
class Importer:
    name: str  # the provider's dataset as its users name it ("UCDP GED")
    origin: str  # the records' origin, the command's FORMAT and the key of its terms
    layouts: tuple[Layout, ...]  # the file layouts it recognises (geo.importers.layouts)
    id_column: str  # the provider's event id column, and the prefix kpmap's ids get
    id_prefix: str
    convert: Callable[[dict[str, str], str], Unplaced]  # one row -> a record to place
    dataset_of: Callable[[Path], str]  # which dataset a file is ("ucdp-candidate-2025-09")
    release_key: Callable[[dict[str, str]], str | None]  # a row's hint of the release
    release_of: Callable[[Path, str | None], str | None]  # the file's release

    @classmethod
    def of(cls, module: ModuleType) -> "Importer":
        """The importer a provider's module declares (AttributeError names what it lacks)."""
        return cls(
            name=module.NAME,
            origin=module.ORIGIN,
            layouts=module.LAYOUTS,
            id_column=module.ID_COLUMN,
            id_prefix=module.ID_PREFIX,
            convert=module.convert,
            dataset_of=module.dataset_of,
            release_key=module.release_key,
            release_of=module.release_of,
        )

    def terms(self) -> Dataset:
        """The provider's licence, attribution and terms (data/datasets.toml)."""
        return read_datasets()[self.origin]

    def row_id(self, row: dict[str, str]) -> str | None:
        value = row.get(self.id_column, "").strip()
        return f"{self.id_prefix}-{value}" if value else None
