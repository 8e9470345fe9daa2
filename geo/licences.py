"""What each dataset's terms let kpmap hand out (data/datasets.toml), and the rule that withholds
rows.

    datasets = read_datasets()                       # origin -> Dataset
    policy = RowPolicy.from_setting("acled")         # the operator holds a licence for ACLED
    kept, withheld = policy.split(store.layer("attacks"), positions)
    withheld.count, withheld.by_dataset              # 3, {"gtd": 3}

A dataset whose terms forbid passing its rows on (`redistribute_rows = false`: ACLED, GTD) is
*restricted* unless the operator names it in the KPMAP_LICENSED_DATASETS setting. Restricted rows
are drawn and counted only as aggregates (district and tehsil totals, clusters, heat); every path
that would hand a row out (downloads, OGC items, point tiles, the map's feeds and popups) asks this
module which rows to leave out, and says how many it left out and why.

The rule is one function, `reveals_restricted`: a feature is withheld if any row it would reveal
comes from a restricted dataset. `withheld_mask` applies it once per distinct value of the layer's
origin column and spreads the answer over the column's codes, so a million attacks cost a few
milliseconds and no feature is parsed.
"""

import functools
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geo import paths
from geo.errors import RowWithheld

DATASETS_TOML = paths.DATA_DIR / "datasets.toml"
# The operator's statement that they may redistribute some restricted datasets' rows: dataset keys
# (the records' `origin`), comma-separated, e.g. KPMAP_LICENSED_DATASETS=acled,gtd. The web app
# reads it as its LICENSED_DATASETS setting (app/__init__.py); the tile commands from the
# environment (`setting_from_env`).
SETTING = "KPMAP_LICENSED_DATASETS"
# The attack property that names a record's dataset (geo.store.schemas: filterable, so it is a
# column).
ORIGIN = "origins"  # every dataset a feature holds rows of (geo.build.attacks.attack_features)
# Placeholders an attribution template may use (filled in by `dataset_source`).
TEMPLATE_KEYS = ("citation", "changes", "access_date", "release")
REQUIRED = ("name", "licence", "redistribute_rows", "citation", "attribution")


@dataclass(frozen=True)
class Dataset:
    """One dataset's entry in data/datasets.toml (see the comments there for each field)."""

    key: str
    name: str
    licence: str
    redistribute_rows: bool
    citation: str
    attribution: str
    credit: str = ""
    publication: str = ""
    terms_url: str = ""
    licence_url: str = ""
    changes: str = ""
    terms: str = ""
    read: str = ""


@functools.cache
def read_datasets(path: Path = DATASETS_TOML) -> dict[str, Dataset]:
    """Every dataset in data/datasets.toml by key; ValueError names a missing or unknown field."""
    with open(path, "rb") as f:
        table = tomllib.load(f)
    datasets = {}
    allowed = set(Dataset.__dataclass_fields__) - {"key"}
    for key, entry in table.items():
        missing = [k for k in REQUIRED if k not in entry]
        unknown = sorted(set(entry) - allowed)
        if missing or unknown:
            raise ValueError(f"{path.name} [{key}]: missing {missing}, unknown {unknown}")
        datasets[key] = Dataset(key=key, **entry)
    return datasets


def dataset_source(dataset: Dataset, releases: Iterable[str], built: str) -> dict[str, Any]:
    """The manifest's entry for a dataset present in a store: name, licence, terms, whether its
    rows may be passed on, and the attribution with its dates filled in.

    `releases` are the `release` values its records carry (the provider's release or access date,
    when the importer recorded one); `built` is the store's build day, the access date of last
    resort. E.g. for ACLED with no release recorded: "...; data accessed 2025-06-01. ..."
    """
    releases = sorted({str(r) for r in releases if r})
    values = {
        "citation": dataset.citation,
        "changes": dataset.changes,
        "access_date": ", ".join(releases) or built,
        "release": ", ".join(releases) or "not recorded",
    }
    source = {
        "name": dataset.name,
        "dataset": dataset.key,
        "licence": dataset.licence,
        "attribution": dataset.attribution.format(**values),
        "credit": (dataset.credit or dataset.name).format(**values),
        "redistribute_rows": dataset.redistribute_rows,
    }
    for key in ("terms_url", "licence_url", "changes"):
        if value := getattr(dataset, key):
            source[key] = value
    if releases:
        source["releases"] = releases
    return source


def reveals_restricted(origins: Iterable[str], restricted: Iterable[str]) -> bool:
    """The rule: a feature is withheld if any row it would reveal comes from a restricted dataset.

    A feature reveals its own row, and (once linked groups exist) every member row it lists, so
    one restricted member withholds the whole group: showing the others' ids and figures beside
    it would hand out that member's row too.

    >>> reveals_restricted(["ucdp", "acled"], {"acled"}), reveals_restricted(["ucdp"], {"acled"})
    (True, False)
    """
    restricted = set(restricted)
    return any(origin in restricted for origin in origins)


def origins_of(value: str) -> list[str]:
    """The datasets one value of the origin column stands for: "acled" -> ["acled"]. A linked
    group's value may list its members' datasets, comma-separated ("acled,ucdp")."""
    return [part.strip() for part in value.split(",") if part.strip()]


@dataclass(frozen=True)
class Withheld:
    """The rows of a selection that were left out, by dataset, and why."""

    count: int = 0
    by_dataset: dict[str, int] = field(default_factory=dict)

    def notice(self, datasets: Mapping[str, Dataset]) -> dict[str, Any]:
        """The statement downloads and OGC responses carry (also when nothing was withheld, so
        clients can rely on it): how many rows, from which datasets, why, and the setting."""
        notice: dict[str, Any] = {"count": self.count, "by_dataset": self.by_dataset}
        if self.count:
            notice["reason"] = withheld_reason(self.by_dataset, datasets)
            notice["setting"] = SETTING
        return notice


def withheld_reason(keys: Iterable[str], datasets: Mapping[str, Dataset]) -> str:
    """Why rows of these datasets are not handed out, naming each one's terms and the setting.

    >>> withheld_reason(["gtd"], read_datasets())[:40]
    'Rows from GTD (Global Terrorism Database'
    """
    keys = sorted(keys)
    named = "; ".join(
        f"{datasets[k].name} ({datasets[k].licence}, {datasets[k].terms_url})"
        if k in datasets
        else k
        for k in keys
    )
    return (
        f"Rows from {named} are not handed out: their terms do not let kpmap pass the rows on. "
        "They are still drawn and counted as aggregates (district and tehsil totals, clusters, "
        f"heat map). An operator licensed to redistribute them sets {SETTING}={','.join(keys)}."
    )


class RowPolicy:
    """Which datasets' rows this service withholds: those whose terms forbid redistribution and
    that the operator has not named as licensed."""

    def __init__(self, datasets: Mapping[str, Dataset], licensed: Iterable[str] = ()):
        self.datasets = dict(datasets)
        self.licensed = frozenset(licensed)
        unknown = sorted(self.licensed - set(self.datasets))
        if unknown:
            raise ValueError(
                f"{SETTING} names {', '.join(unknown)}, which data/datasets.toml does not list; "
                f"the datasets are: {', '.join(self.datasets)}"
            )
        self.restricted = frozenset(
            k for k, d in self.datasets.items() if not d.redistribute_rows and k not in licensed
        )

    @classmethod
    def from_setting(cls, value: str | Iterable[str] | None) -> "RowPolicy":
        """The policy for a KPMAP_LICENSED_DATASETS value: "acled,gtd", a list, or empty."""
        if isinstance(value, str):
            value = value.split(",")
        names = [v.strip().lower() for v in value or () if v and v.strip()]
        return cls(read_datasets(), names)

    @property
    def key(self) -> str:
        """What responses and caches depend on: the restricted datasets ("" when none is)."""
        return ",".join(sorted(self.restricted))

    def withheld_mask(self, layer: Any) -> np.ndarray | None:
        """True for each feature of an attacks layer (geo.store.Layer) that is withheld; None
        when nothing is (no dataset restricted, or no such rows), so callers skip the work."""
        if not self.restricted:
            return None
        codes, values = layer.column(ORIGIN)
        hidden = np.array(
            [reveals_restricted(origins_of(v), self.restricted) for v in values.tolist()],
            dtype=bool,
        )
        if not hidden.any():
            return None
        return hidden[codes]

    def split(self, layer: Any, positions: np.ndarray) -> tuple[np.ndarray, Withheld]:
        """The positions that may be handed out, and what was withheld of the others."""
        mask = self.withheld_mask(layer)
        if mask is None:
            return positions, Withheld()
        hidden = mask[positions]
        if not hidden.any():
            return positions, Withheld()
        codes, values = layer.column(ORIGIN)
        counts = np.bincount(codes[positions[hidden]], minlength=len(values))
        by_dataset = {str(values[i]): int(c) for i, c in enumerate(counts) if c}
        return positions[~hidden], Withheld(int(hidden.sum()), by_dataset)

    def check(self, layer: Any, position: int, feature_id: str) -> None:
        """RowWithheld (403) if the feature at `position` may not be handed out."""
        mask = self.withheld_mask(layer)
        if mask is None or not mask[position]:
            return
        codes, values = layer.column(ORIGIN)
        keys = origins_of(str(values[codes[position]]))
        raise RowWithheld(
            f"attack {feature_id} is counted on the map but its record is not handed out. "
            + withheld_reason([k for k in keys if k in self.restricted], self.datasets)
        )

    def present(self, layer: Any, positions: np.ndarray | None = None) -> list[str]:
        """The datasets the features at `positions` (all when None) come from, sorted."""
        codes, values = layer.column(ORIGIN)
        chosen = codes if positions is None else codes[positions]
        used = np.flatnonzero(np.bincount(chosen, minlength=len(values))).tolist()
        return sorted({o for i in used for o in origins_of(str(values[i]))})


def setting_from_env() -> str:
    """KPMAP_LICENSED_DATASETS for commands that run without the web app (kpmap tiles)."""
    return os.environ.get(SETTING, "")
