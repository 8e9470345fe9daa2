"""The house's plan, checked: the web app never loads the build, geo/ never imports a web
framework, no module imports its importer back, and the Makefile rebuilds the store exactly when
code that writes it changes."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


MODULES = {_module(p): p for d in ("geo", "app") for p in (ROOT / d).rglob("*.py")}


def _imports(module: str) -> set[str]:
    """The project modules `module` imports, at any depth of its code (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in MODULES and m != module}


def _reachable(starts: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_imports(module))
    return seen


def test_the_web_app_never_loads_the_build():
    """Serving needs the built store, not the code that builds it: importing every app module
    leaves geo.build out of the process."""
    script = (
        "import pkgutil, importlib, sys, app\n"
        "for m in pkgutil.walk_packages(app.__path__, 'app.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('geo.build'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json\n" + script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == []


def test_geo_never_imports_a_web_framework():
    for module, path in MODULES.items():
        if not module.startswith("geo"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("flask", "folium", "werkzeug"), (module, name)


def test_no_module_imports_its_importer_back():
    """No import cycles between project modules (a package's __init__ re-exporting its own
    submodules is not a cycle: it is the package's front door)."""
    graph = {m: {d for d in _imports(m) if not m.startswith(d + ".")} for m in MODULES}
    cycles = []
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep) :] + [dep] if dep in path else [module, dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_makefile_rebuilds_the_store_when_code_that_writes_it_changes():
    """Every module the build and the importers run is a prerequisite of the store, and no tile
    or web-app module is."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    rule = re.search(r"^STORE_INPUTS :=((?:.*\\\n)*.*)$", makefile, re.M)
    assert rule, "the Makefile has no STORE_INPUTS"
    patterns = rule.group(1).replace("\\\n", " ").replace("$(wildcard", " ").replace(")", " ")
    globs = patterns.split()

    def listed(path: Path) -> bool:
        relative = path.relative_to(ROOT)
        return any(relative.match(g) and len(relative.parts) == len(Path(g).parts) for g in globs)

    writers = _reachable(["geo.build.pipeline", "geo.importers"])
    assert writers, "found no build modules"
    missing = sorted(m for m in writers if not listed(MODULES[m]))
    assert missing == []
    servers = [m for m in MODULES if m.startswith(("geo.tiles", "geo.ogc", "app"))]
    assert not [m for m in servers if listed(MODULES[m])]


def test_tests_share_code_through_helpers_not_through_each_other():
    """A test module imports tests.helpers (and fixtures come from conftest.py), never another
    test module or conftest: importing one runs its module-level checks and collects its tests
    twice."""
    wrong = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                last = name.split(".")[-1]
                if name.startswith("tests.") and (last.startswith("test_") or last == "conftest"):
                    wrong.append(f"{path.name} imports {name}")
    assert not wrong, wrong
