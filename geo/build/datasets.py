"""Which dataset and release an imported record comes from, and how a new import of a dataset
combines with the records a store keeps.

Importers set "dataset" (e.g. "ucdp-ged", "ucdp-candidate", "acled", "gtd") and "release"
(text that sorts in release order, e.g. "24.1" < "25.1" or "2025-03-01") on every record. A record
without them (kept from an older store, or from an importer that does not set them yet) belongs to
its origin's default dataset at the oldest, unknown release "".

A dataset's release is one whole edition of it: a newer release replaces every record of the
older one (events the provider dropped or re-coded go with it), never mixes with it.
"""

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from geo.errors import OlderRelease

# The dataset of a record that does not say: what its origin's importer has always read.
DEFAULT_DATASET = {
    "acled": "acled",
    "gtd": "gtd",
    "ucdp": "ucdp-ged",
    "authored": "authored",
    "synthetic": "synthetic",
}
UNKNOWN_RELEASE = ""


def dataset_of(record: dict[str, Any]) -> str:
    """The record's dataset, or its origin's default one ("ucdp" -> "ucdp-ged")."""
    return named_dataset(record.get("dataset"), record["origin"])


def named_dataset(dataset: str | None, origin: str) -> str:
    """dataset_of a record that names `dataset` (or None) and comes from `origin`."""
    return dataset or DEFAULT_DATASET.get(origin, origin)


def release_of(record: dict[str, Any]) -> str:
    """The record's release; "" (older than any release) when it does not say."""
    return record.get("release") or UNKNOWN_RELEASE


def combine_imports(
    kept: list[dict[str, Any]], added: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The records a store keeps after importing `added`, and what the import replaced.

    Per dataset, the newest release wins, whatever the order of imports:
    - `added` records of a newer release than the store's drop every kept record of that dataset
      (listed in the result's second part: dataset, release, by_release, records);
    - of the same release (or both unknown), they join the kept records, replacing any with the
      same id (re-importing a file, or importing a second file of one release);
    - of an older release they are refused: OlderRelease, and nothing changes.
    Within `added`, only the newest release of each dataset is taken (the older rows are listed
    as replaced too). Records come back sorted by id, so the store does not depend on the order
    of imports.
    """
    order, report = combined_positions(
        ((r["id"], dataset_of(r), release_of(r)) for r in kept),
        ((r["id"], dataset_of(r), release_of(r)) for r in added),
    )
    both = [*kept, *added]
    return [both[p] for p in order], report


Key = tuple[str, str, str]  # a record's (id, dataset, release)


def combined_positions(
    kept: Iterable[Key], added: Iterable[Key]
) -> tuple[list[int], list[dict[str, Any]]]:
    """combine_imports on the records' (id, dataset, release) alone: the positions (into the kept
    records followed by the added ones) of the records kept, sorted by id, and what was
    replaced. For a build that holds its records as lines (geo.build.records)."""
    # One pass over each list, into batches by (dataset, release): a store may keep a million
    # records, and there are only a few batches to decide on.
    kept_batches = _batches(kept, 0)
    added_batches = _batches(added, sum(len(b) for b in kept_batches.values()))
    newest_kept = _newest(kept_batches)
    newest_added = _newest(added_batches)
    older = {d: (r, newest_kept[d]) for d, r in newest_added.items() if r < newest_kept.get(d, r)}
    if older:
        raise OlderRelease(
            "; ".join(
                f"{dataset} release {_shown(release)} is older than the release {_shown(held)} "
                "the store holds"
                for dataset, (release, held) in sorted(older.items())
            )
            + ": nothing was imported (a newer release replaces an older one, never the reverse)"
        )
    newest = {**newest_kept, **newest_added}
    replaced: Counter[tuple[str, str]] = Counter()
    by_id: dict[str, int] = {}
    # added last: a re-imported id replaces the kept record
    for batches in (kept_batches, added_batches):
        for (dataset, release), records in batches.items():
            if release != newest[dataset]:
                replaced[dataset, release] += len(records)
                continue
            by_id.update(records)
    report = [
        {"dataset": d, "release": r, "by_release": newest[d], "records": n}
        for (d, r), n in sorted(replaced.items())
    ]
    return [by_id[i] for i in sorted(by_id)], report


def _batches(keys: Iterable[Key], first: int) -> dict[tuple[str, str], list[tuple[str, int]]]:
    """(id, position) of each record by (dataset, release); positions count from `first`."""
    batches: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for position, (record_id, dataset, release) in enumerate(keys, first):
        batches[dataset, release].append((record_id, position))
    return batches


def _newest(batches: dict[tuple[str, str], list[Any]]) -> dict[str, str]:
    newest: dict[str, str] = {}
    for dataset, release in batches:
        newest[dataset] = max(newest.get(dataset, release), release)
    return newest


def _shown(release: str) -> str:
    return repr(release) if release else "(unknown)"
