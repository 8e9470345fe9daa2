"""`kpmap build`: upstream files + authored data -> the GeoJSON store, swapped in atomically.

The store is built in a temporary folder beside the target, validated, and only then renamed into
place; any failure removes the temporary folder and leaves the previous store exactly as it was.
"""

import hashlib
import json
import shutil
import tempfile
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import geopandas as gpd

from geo import border, geojson, paths
from geo.citations import cite, read_citations
from geo.districts import DISTRICTS_TOML, build_districts, read_district_table
from geo.errors import BuildError
from geo.schemas import LAYERS, validate_store
from geo.sources import Source, fetch_all, read_sources

DURAND_LINE_TOML = paths.DATA_DIR / "durand_line.toml"
AUTHORED_INPUTS = (DISTRICTS_TOML, DURAND_LINE_TOML, paths.DATA_DIR / "citations.toml")
# Versions that change what a build produces; recorded in the manifest.
PACKAGES = ("kpmap", "timezonefinder", "timezonefinder-data", "shapely", "geopandas", "pyproj")
OSM_ATTRIBUTION = "© OpenStreetMap contributors"
FORMAT = "kpmap-store/1"

LayerBuilder = Callable[["BuildContext"], list[dict[str, Any]]]


class BuildContext:
    """What the layer builders share: the upstream files (read once) and the authored tables."""

    def __init__(self, sources: dict[str, Source], files: dict[str, Path]):
        self.sources = sources
        self.files = files
        self.adm1 = gpd.read_file(files["adm1"])
        self.adm2 = gpd.read_file(files["adm2"])
        self.citations = read_citations()
        self.districts: gpd.GeoDataFrame | None = None
        self.border = None


def build_districts_layer(ctx: BuildContext) -> list[dict[str, Any]]:
    adm2 = ctx.sources["adm2"]
    source = f"{adm2.attribution} ({adm2.licence})"
    ctx.districts = build_districts(ctx.adm1, ctx.adm2, read_district_table(), source)
    return [
        geojson.feature(row["id"], row["geometry"], row.drop("geometry").to_dict())
        for _, row in ctx.districts.iterrows()
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
    line = border.derive_border()
    if line.geom_type != "LineString":
        raise BuildError(f"the derived border is a {line.geom_type}, expected one LineString")
    ctx.border = line
    total = round(border.geodesic_length_km(line), 1)
    provinces = ctx.adm1.set_index("shapeName").geometry
    missing = [p for p in border.BORDER_PROVINCES if p not in provinces.index]
    if missing:
        raise BuildError(f"ADM1 lacks the border provinces {missing}")
    segments = border.split_by_province(line, {p: provinces[p] for p in border.BORDER_PROVINCES})
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
                    "measured_length_km": round(border.geodesic_length_km(segment), 1),
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


LAYER_BUILDERS: dict[str, LayerBuilder] = {
    "districts": build_districts_layer,
    "durand_line": build_durand_line_layer,
}


def build_store(
    store: Path | None = None,
    cache: Path | None = None,
    mirror: str | None = None,
) -> dict[str, Any]:
    """Fetch the upstream files, build every layer, validate, and swap the result into `store`.

    Returns the manifest. Raises BuildError (or FetchError) and leaves any existing store untouched.
    """
    store = Path(store or paths.store_dir())
    store.parent.mkdir(parents=True, exist_ok=True)
    sources = read_sources()
    files = fetch_all(sources, cache=cache, mirror=mirror)
    work = Path(tempfile.mkdtemp(prefix=f".store-{store.name}-", dir=store.parent))
    work.chmod(0o755)  # mkdtemp makes it private; the store is meant to be served and shared
    try:
        manifest = _build_into(work, sources, files)
        problems = validate_store(work)
        if problems:
            raise BuildError("the built store is invalid:\n  " + "\n  ".join(problems))
        _swap_in(work, store)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def _build_into(work: Path, sources: dict[str, Source], files: dict[str, Path]) -> dict[str, Any]:
    ctx = BuildContext(sources, files)
    layers = {}
    for name, builder in LAYER_BUILDERS.items():
        features = builder(ctx)
        path = work / f"{name}.geojson"
        geojson.write_feature_collection(path, features)
        layers[name] = _layer_entry(name, path, features, ctx)
    manifest = {
        "format": FORMAT,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "inputs": {
            "upstream": {
                name: {
                    "file": s.file,
                    "url": s.url,
                    "sha256": s.sha256,
                    "licence": s.licence,
                    "attribution": s.attribution,
                }
                for name, s in sources.items()
            },
            "authored": {str(p.relative_to(paths.ROOT)): _sha256(p) for p in AUTHORED_INPUTS},
        },
        "packages": {name: version(name) for name in PACKAGES},
        "layers": layers,
    }
    (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _layer_entry(
    name: str, path: Path, features: list[dict[str, Any]], ctx: BuildContext
) -> dict[str, Any]:
    gdf = gpd.GeoDataFrame.from_features(features, crs="EPSG:4326")
    licences = {
        "districts": [
            {
                "name": "geoBoundaries",
                "licence": ctx.sources["adm2"].licence,
                "attribution": ctx.sources["adm2"].attribution,
            }
        ],
        "durand_line": [
            {"name": "OpenStreetMap", "licence": "ODbL 1.0", "attribution": OSM_ATTRIBUTION}
        ],
    }
    return {
        "file": path.name,
        "title": LAYERS[name].title,
        "count": len(features),
        "bounds": [round(v, 6) for v in gdf.total_bounds] if len(gdf) else None,
        "geometry_types": sorted(set(gdf.geom_type)),
        "time_range": None,
        "sha256": _sha256(path),
        "sources": licences.get(name, []),
    }


def _swap_in(work: Path, store: Path) -> None:
    """Replace `store` by `work` with two renames; on failure put the old store back."""
    if not store.exists():
        work.rename(store)
        return
    old = Path(tempfile.mkdtemp(prefix=f".store-{store.name}-old-", dir=store.parent))
    old.rmdir()
    store.rename(old)
    try:
        work.rename(store)
    except OSError:
        old.rename(store)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
