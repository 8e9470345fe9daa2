"""Copy the web map's front-end assets from node_modules/ into app/static/vendor/ (git-ignored).

    npm ci --ignore-scripts && python -m app.install_assets

The packages and their exact versions are pinned in package.json / package-lock.json; this copies
only the files the pages load (plus each package's licence), keeping each file's path inside its
package so that relative references keep working (leaflet.css -> images/). app/assets.py points
folium at these copies. Nothing here is ever committed: see ../shared/DESIGN.md, "Front-end assets
are installed, never committed".
"""

import json
import shutil
import sys
from pathlib import Path

from geo.fsutil import replace_dir

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"
VENDOR = ROOT / "app" / "static" / "vendor"

# npm package -> files or folders inside it that the app serves, as /static/vendor/<dir>/<path>.
ASSETS: dict[str, list[str]] = {
    "leaflet": ["dist/leaflet.js", "dist/leaflet.css", "dist/images", "LICENSE"],
    "leaflet.markercluster": [
        "dist/leaflet.markercluster.js",
        "dist/MarkerCluster.css",
        "dist/MarkerCluster.Default.css",
        "MIT-LICENCE.txt",
    ],
    "leaflet.heat": ["dist/leaflet-heat.js", "LICENSE"],
}


def vendor_dir(package: str) -> str:
    """The folder a package's files go to: a scoped "@scope/name" goes to "name"."""
    return package.rsplit("/", 1)[-1]


def install(node_modules: Path = NODE_MODULES, vendor: Path = VENDOR) -> dict[str, str]:
    """Copy every listed file into a fresh `vendor` folder; return {package: version}.

    Stops with a message naming the package and what to run when node_modules lacks a file,
    rather than leaving a half-filled folder that would break the page later.
    """
    missing = [
        f"{package}/{path}"
        for package, paths in ASSETS.items()
        for path in paths
        if not (node_modules / package / path).exists()
    ]
    if missing:
        raise SystemExit(
            f"not in {node_modules}: {', '.join(missing)}\n"
            "run `npm ci --ignore-scripts` first (package.json pins the versions)"
        )
    # Built beside the packages (git-ignored too) and moved into place once complete.
    work = node_modules / ".kpmap-vendor"
    shutil.rmtree(work, ignore_errors=True)
    versions = {}
    for package, paths in ASSETS.items():
        source = node_modules / package
        versions[package] = json.loads((source / "package.json").read_text("utf-8"))["version"]
        for path in paths:
            target = work / vendor_dir(package) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if (source / path).is_dir():
                shutil.copytree(source / path, target)
            else:
                shutil.copy2(source / path, target)
    (work / "VERSIONS.json").write_text(json.dumps(versions, indent=1) + "\n", "utf-8")
    # Swap in whole, so a failed copy never leaves the app serving a mix of old and new files.
    replace_dir(work, vendor)
    return versions


def main() -> None:
    versions = install()
    listed = ", ".join(f"{name} {version}" for name, version in versions.items())
    print(f"copied into {VENDOR.relative_to(ROOT)}: {listed}", file=sys.stderr)


if __name__ == "__main__":
    main()
