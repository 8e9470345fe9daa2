"""The `kpmap` command: fetch, build, validate and describe the GeoJSON store."""

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from geo import paths
from geo.errors import KpmapError


def cmd_fetch(args: argparse.Namespace) -> int:
    from geo.build.sources import fetch_all

    for name, path in fetch_all().items():
        print(f"{name}: {path}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from geo.build.pipeline import build_store

    check_publish_url(args.publish)
    started = time.perf_counter()
    manifest = build_store(args.store)
    elapsed = time.perf_counter() - started
    counts = ", ".join(f"{n}: {e['count']}" for n, e in manifest["layers"].items())
    print(f"built {args.store} in {elapsed:.1f} s ({counts})")
    report_not_placed(manifest)
    return publish_built(args)


def check_publish_url(url: str | None) -> None:
    """A --publish or publish URL that is not a database URL is refused before any work."""
    from geo.errors import InvalidQuery
    from geo.store.postgis import is_database_url

    if url is not None and not is_database_url(url):
        raise InvalidQuery(
            f"{url!r} is not a database URL; use postgresql://user:password@host:port/dbname"
        )


def publish_built(args: argparse.Namespace) -> int:
    """After a build or an import that succeeded: publish the store to --publish's database,
    if given. Exit 1 if that fails (the store is built; the database is as it was)."""
    from geo.store.postgis import PublishError

    if args.publish is None:
        return 0
    try:
        report_published(args.store, args.publish, keep=2, validate=False)
    except PublishError as exc:
        print(
            f"kpmap {args.command}: the store at {args.store} is built, but {exc}", file=sys.stderr
        )
        print(f"  publish it later: kpmap publish --store {args.store} URL", file=sys.stderr)
        return 1
    return 0


def report_published(store: Path, url: str, keep: int, validate: bool) -> None:
    from geo.store.postgis import publish, redact

    result = publish(store, url, keep=keep, validate=validate)
    counts = ", ".join(f"{n}: {c}" for n, c in result.counts.items())
    if result.loaded:
        print(
            f"published {store} as version {result.version} ({result.schema}) to "
            f"{redact(url)} in {result.seconds:.1f} s ({counts}); it is current"
        )
    else:
        print(f"version {result.version} was in {redact(url)} already: made current again")
    for version in result.dropped:
        print(f"dropped version {version} (only the {keep} newest are kept)")


def report_not_placed(manifest: dict) -> None:
    """List the imported records the current boundaries place in no KP district (kept in the
    store's imported.jsonl, not drawn), so a rebuild never hides them."""
    for record in manifest["inputs"].get("not_placed", []):
        print(f"not placed: {record['id']}: {record['reason']} (kept in imported.jsonl)")


def cmd_validate(args: argparse.Namespace) -> int:
    from geo.store.schemas import validate_store

    problems = validate_store(args.store)
    for problem in problems:
        print(problem)
    print(f"{args.store}: {len(problems)} problem(s)" if problems else f"{args.store}: valid")
    return 1 if problems else 0


def cmd_info(args: argparse.Namespace) -> int:
    from geo.store import Store

    store = Store.open(args.store)
    manifest = store.manifest
    print(f"store {store.path} (built {manifest['built_at']}, {manifest['format']})")
    for name, entry in manifest["layers"].items():
        bounds = ", ".join(f"{v:.4f}" for v in entry["bounds"]) if entry["bounds"] else "-"
        time_range = " to ".join(entry["time_range"]) if entry.get("time_range") else "-"
        print(f"\n{name}: {entry['title']}")
        print(f"  features  {entry['count']}")
        print(f"  bounds    {bounds}")
        print(f"  time      {time_range}")
        for source in entry["sources"]:
            print(f"  source    {source['attribution']} [{source['licence']}]")
    if "durand_line" in store.layer_names:
        segments = store.query("durand_line")
        if segments:
            p = segments[0]["properties"]
            cited = p["reported_length_source"]
            parts = ", ".join(
                f"{s['properties']['province']} {s['properties']['measured_length_km']} km"
                for s in segments
            )
            print(
                f"\nDurand Line measured {p['measured_total_km']} km ({parts}); "
                f"reported {p['reported_length_km']} km ({cited['publication']}, {cited['date']})"
            )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Exit 0 when the file is imported, 1 when it is not (more than half its rows cannot be
    read, or none is taken: the store is unchanged), 2 for a usage error or a file that cannot be
    read as the format at all (KpmapError, handled by main)."""
    from geo.build.pipeline import build_store
    from geo.importers import ImportFailed, district_locator, read_file
    from geo.importers.report import summary, write_csv
    from geo.store import Store

    check_publish_url(args.publish)
    store = Store.open(args.store)
    try:
        result = read_file(args.format, args.file, district_locator(store))
    except ImportFailed as exc:
        print("\n".join(summary(exc.result)))
        if args.report:
            write_csv(exc.result, args.report)
        print(f"kpmap import: failed: {exc} (the store is unchanged)", file=sys.stderr)
        return 1
    print("\n".join(summary(result)))
    if args.report:
        write_csv(result, args.report)
        print(f"  report    every row's outcome in {args.report}")
    before = store.manifest["layers"]["attacks"]["count"]
    dataset_before = dataset_totals(args.store, result.dataset)
    manifest = build_store(args.store, added=result.records)
    report_not_placed(manifest)
    report_links(manifest, args.store)
    after = manifest["layers"]["attacks"]["count"]
    dataset_after = dataset_totals(args.store, result.dataset)
    print(
        f"{result.dataset} in the store: {dataset_before[0]} -> {dataset_after[0]} events, "
        f"{dataset_before[1]} -> {dataset_after[1]} killed (best)"
    )
    print(
        f"attacks in {args.store}: {before} -> {after} (records of different datasets that "
        "report one event are linked and count once)"
    )
    return publish_built(args)


def cmd_publish(args: argparse.Namespace) -> int:
    check_publish_url(args.url)
    report_published(args.store, args.url, keep=args.keep, validate=args.validate)
    return 0


def dataset_totals(store: Path, dataset: str) -> tuple[int, int]:
    """(events, sum of killed_best) of one dataset's records in a store: what its provider's
    file gave, whatever the links (geo.build.links keeps every member's figures)."""
    from geo.build.datasets import dataset_of
    from geo.build.pipeline import read_imported

    records = [r for r in read_imported(Path(store)) if dataset_of(r) == dataset]
    return len(records), sum(r.get("killed_best") or 0 for r in records)


# Links printed one by one; the rest are in the store's links file.
LINKS_SHOWN = 10


def report_links(manifest: dict, store: Path) -> None:
    """What the import replaced (older releases of its dataset) and the links the build made."""
    for r in manifest["inputs"].get("replaced", []):
        release = r["release"] or "(unknown release)"
        what = f"{r['records']} record(s) of {r['dataset']} {release}"
        print(f"replaced: {what} by release {r['by_release']}")
    links = manifest.get("links", {})
    print(
        f"linked: {links.get('count', 0)} attack(s) reported by more than one dataset, "
        f"{links.get('records', 0)} record(s) in all (rule: {links.get('rule', '')})"
    )
    if not links.get("count"):
        return
    listed = json.loads((store / links["file"]).read_text(encoding="utf-8"))["links"]
    for link in listed[:LINKS_SHOWN]:
        for member, reason in zip(link["members"][1:], link["reasons"], strict=True):
            print(f"  {member}: {reason}")
    if len(listed) > LINKS_SHOWN:
        print(f"  ... and {len(listed) - LINKS_SHOWN} more in {store / links['file']}")


def cmd_synth(args: argparse.Namespace) -> int:
    from geo.build.pipeline import build_store
    from geo.build.synth import synthetic_attacks
    from geo.errors import InvalidQuery
    from geo.store import Store

    if args.store.resolve() == paths.store_dir().resolve():
        raise InvalidQuery(
            f"refusing to put synthetic attacks into the default store {args.store}; "
            "pass --store DIR with a folder of its own"
        )
    if args.n < 1:
        raise InvalidQuery(f"N must be a positive number of attacks, not {args.n}")
    if not (args.store / "manifest.json").exists():
        build_store(args.store)
    districts = Store.open(args.store).query("districts")
    started = time.perf_counter()
    manifest = build_store(args.store, added=synthetic_attacks(args.n, districts, seed=args.seed))
    elapsed = time.perf_counter() - started
    count = manifest["layers"]["attacks"]["count"]
    print(f"{args.store}: {count} attacks ({args.n} synthetic) built in {elapsed:.1f} s")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kpmap",
        description="Build and inspect kpmap's GeoJSON store of KP districts, the Durand Line "
        "and attacks.",
        epilog="Environment: KPMAP_MIRROR (a folder or http(s) base URL holding the upstream "
        "files), KPMAP_CACHE (where fetched files are kept; default data/upstream), KPMAP_STORE "
        "(default store folder; default data/store).",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fetch", help="download the upstream files into the cache, checking hashes")
    p.set_defaults(run=cmd_fetch)

    p = sub.add_parser("build", help="build the store (atomically replacing the old one)")
    p.add_argument("--store", type=Path, default=paths.store_dir(), help="store folder")
    add_publish_option(p)
    p.set_defaults(run=cmd_build)

    p = sub.add_parser(
        "import",
        help="import events from a UCDP (GED or Candidate), ACLED or GTD file into the store",
        description="Prints the import report: the layout recognised, rows read, taken, refused "
        "and failed by reason (with their first lines), names that disagree with the points, "
        "actor names not in data/actors.toml, and the totals taken; records of other datasets "
        "reporting the same event are linked into one attack (geo.build.links), and a newer "
        "release of a dataset replaces the older. The store is rebuilt "
        "atomically. Exit 0: imported; 1: not imported (more than half the rows cannot be read, "
        "or none is taken; the store is unchanged); 2: usage error or a file that cannot be read.",
    )
    p.add_argument("format", choices=("acled", "gtd", "ucdp"))
    p.add_argument("file", type=Path)
    p.add_argument("--store", type=Path, default=paths.store_dir(), help="store folder")
    p.add_argument(
        "--report", type=Path, metavar="FILE", help="write every row's outcome to FILE as CSV"
    )
    add_publish_option(p)
    p.set_defaults(run=cmd_import)

    p = sub.add_parser(
        "publish",
        help="load a built store into a PostgreSQL/PostGIS database and make it the one served",
        description="Checks the store (its manifest, and every file against the hash its build "
        "recorded; --validate checks every feature too), loads it into a schema of its own "
        "(COPY, then GiST and "
        "B-tree indexes) and switches the database's current version to it in the same "
        "transaction: servers reading the database see the old store or the new one, never a "
        "mix, and a publish that fails changes nothing. Publishing a version the database "
        "holds already only makes it current again (a roll-back).",
    )
    p.add_argument("url", help="the database: postgresql://user:password@host:port/dbname")
    p.add_argument("--store", type=Path, default=paths.store_dir(), help="store folder")
    p.add_argument(
        "--keep",
        type=int,
        default=2,
        help="versions kept in the database, the current one included (default 2, at least 2)",
    )
    p.add_argument(
        "--validate",
        action="store_true",
        help="validate every feature first, as `kpmap validate` does (the build did; a minute "
        "for a million attacks)",
    )
    p.set_defaults(run=cmd_publish)

    p = sub.add_parser(
        "synth",
        help="add N synthetic attacks (for benchmarks) to a store that is not the default one",
    )
    p.add_argument("n", type=int, metavar="N")
    p.add_argument("--store", type=Path, required=True, help="store folder (not the default)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(run=cmd_synth)

    for name, run, help_text in (
        ("validate", cmd_validate, "list every problem in a store (schema, geometry, RFC 7946)"),
        ("info", cmd_info, "print each layer's count, bounds, time range and sources"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "store", nargs="?", type=Path, default=paths.store_dir(), help="store folder"
        )
        p.set_defaults(run=run)

    from geo.tiles import cli as tiles_cli

    tiles_cli.add_parser(sub)
    return top


def add_publish_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--publish",
        metavar="URL",
        help="then publish the store to this PostgreSQL/PostGIS database, as `kpmap publish` "
        "does (postgresql://...)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except KpmapError as exc:
        print(f"kpmap {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`kpmap info | head`): stop quietly, as other tools do. Output
        # still buffered would fail again at exit, so stdout goes to /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a killed pipeline member


if __name__ == "__main__":
    sys.exit(main())
