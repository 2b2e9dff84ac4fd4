"""The house rules that a tool can check (CONTRIBUTING.md "Layers"): the import-linter contract in
pyproject.toml (layers point down, no cycles, function-level imports included, the library never
imports the CLI), no module over 400 lines, and pyproject.toml declaring exactly what the code imports."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
CODE = [p for d in ("stages", "climd_cli") for p in (ROOT / d).rglob("*.py")]
MAX_LINES = 400


def test_the_layer_contract_holds():
    """In its own process: import-linter configures logging with dictConfig, which disables every
    existing logger (climd's too) in the process that calls it."""
    import subprocess

    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, "an import breaks the layer contract:\n" + done.stdout[-3000:]


def test_the_contract_sees_function_level_imports(tmp_path, monkeypatch):
    """The linter must count an import made inside a function (that is how the old cycles crept in)."""
    import grimp

    pkg = tmp_path / "demo_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from demo_pkg import high\n    return high\n")
    (pkg / "high.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("demo_pkg", cache_dir=None)
    assert graph.direct_import_exists(importer="demo_pkg.low", imported="demo_pkg.high")


def test_no_module_is_over_400_lines():
    long = {p.relative_to(ROOT).as_posix(): n for p in CODE if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"


def _imported_top_levels() -> set[str]:
    names = set()
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"stages", "climd_cli", "__future__"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_pyproject_declares_exactly_what_the_code_imports():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_canonical(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    optional = {_canonical(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0])
                for extra, deps in project["optional-dependencies"].items() if extra != "dev" for d in deps}
    dists = metadata.packages_distributions()
    imported = set()
    for top in _imported_top_levels():
        assert top in dists, f"{top} is imported by climd but no installed distribution provides it"
        imported |= {_canonical(d) for d in dists[top]}
    assert imported - declared - optional == set(), "imported but not declared in pyproject.toml"
    assert declared - imported == set(), "declared in pyproject.toml but never imported"
