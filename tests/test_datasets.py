"""geo/build/datasets.py: a newer release of a dataset replaces the older, whatever the import
order."""

import pytest

from geo.build.datasets import combine_imports, dataset_of, release_of
from geo.errors import OlderRelease
from tests.helpers import attack_record


def ucdp(record_id: str, release: str | None = None, **overrides) -> dict:
    """A SYNTHETIC UCDP GED record of the given release (None: the record does not say)."""
    extra = {"dataset": "ucdp-ged", "release": release} if release is not None else {}
    return attack_record(id=record_id, origin="ucdp", **{**extra, **overrides})


def test_a_record_that_does_not_say_is_its_origins_dataset_at_the_oldest_release():
    record = attack_record(id="ucdp-1", origin="ucdp")
    assert (dataset_of(record), release_of(record)) == ("ucdp-ged", "")
    assert dataset_of(attack_record(origin="acled", dataset="acled")) == "acled"


def test_a_newer_release_replaces_every_record_of_the_older():
    kept = [
        ucdp("ucdp-1", "23.1"),
        ucdp("ucdp-2", "23.1"),
        attack_record(id="acled-1", origin="acled"),
    ]
    added = [ucdp("ucdp-1", "24.1", killed_best=9), ucdp("ucdp-3", "24.1")]
    records, replaced = combine_imports(kept, added)
    assert [r["id"] for r in records] == ["acled-1", "ucdp-1", "ucdp-3"]
    assert records[1]["killed_best"] == 9
    assert replaced == [
        {"dataset": "ucdp-ged", "release": "23.1", "by_release": "24.1", "records": 2}
    ]


def test_records_that_do_not_say_their_release_are_replaced_by_any_release():
    records, replaced = combine_imports([ucdp("ucdp-1"), ucdp("ucdp-2")], [ucdp("ucdp-3", "24.1")])
    assert [r["id"] for r in records] == ["ucdp-3"]
    assert replaced[0]["release"] == "" and replaced[0]["records"] == 2


def test_the_same_release_again_joins_the_kept_records_by_id():
    kept = [ucdp("ucdp-1", "24.1"), ucdp("ucdp-2", "24.1")]
    records, replaced = combine_imports(kept, [ucdp("ucdp-2", "24.1", killed_best=8)])
    assert [(r["id"], r["killed_best"]) for r in records] == [("ucdp-1", 3), ("ucdp-2", 8)]
    assert replaced == []


def test_an_older_release_is_refused():
    with pytest.raises(OlderRelease, match=r"ucdp-ged release '23.1' is older than .*'24.1'"):
        combine_imports([ucdp("ucdp-1", "24.1")], [ucdp("ucdp-2", "23.1")])


def test_the_newest_release_wins_whatever_the_order_of_imports():
    old, new = [ucdp("ucdp-1", "23.1"), ucdp("ucdp-2", "23.1")], [ucdp("ucdp-1", "24.1")]
    forward, _ = combine_imports(old, new)
    with pytest.raises(OlderRelease):
        combine_imports(new, old)
    # in one batch, too, only the newest release is taken
    together, replaced = combine_imports([], [*new, *old])
    assert together == forward == new
    assert replaced[0]["records"] == 2


def test_other_datasets_are_untouched():
    kept = [attack_record(id="gtd-1", origin="gtd"), ucdp("ucdp-1", "23.1")]
    records, _ = combine_imports(kept, [ucdp("ucdp-2", "24.1", dataset="ucdp-candidate")])
    assert [r["id"] for r in records] == ["gtd-1", "ucdp-1", "ucdp-2"]


def test_records_rebuilt_with_nothing_added_are_combined_as_any_others():
    """A rebuild (nothing imported) skips combining when the records are as combining leaves
    them; otherwise they are combined as always."""
    from geo.build.datasets import combined_positions
    from geo.build.pipeline import combine_records
    from geo.build.records import Records

    cases = {
        "as a store keeps them": [ucdp("ucdp-1", "24.1"), ucdp("ucdp-2", "24.1")],
        "out of order": [ucdp("ucdp-2", "24.1"), ucdp("ucdp-1", "24.1")],
        "an id twice": [ucdp("ucdp-1", "24.1"), ucdp("ucdp-1", "24.1", killed_best=9)],
        "two releases": [ucdp("ucdp-1", "23.1"), ucdp("ucdp-2", "24.1")],
        "one that does not say": [ucdp("ucdp-1"), ucdp("ucdp-2", "24.1")],
    }
    for name, kept in cases.items():
        records = Records.from_dicts(kept)
        order, replaced = combined_positions(
            zip(records.ids, records.datasets, records.releases, strict=True), []
        )
        combined, reported = combine_records(records, Records())
        assert [combined.record(i) for i in range(len(combined))] == [kept[i] for i in order]
        assert reported == replaced, name
    assert combine_records(records, Records())[0] is not records
    as_kept = Records.from_dicts(cases["as a store keeps them"])
    assert combine_records(as_kept, Records()) == (as_kept, [])
