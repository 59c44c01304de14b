"""The packages import in one direction: pipeline -> features, ensemble -> core (README, "Architecture")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: which project packages each package may import
ALLOWED = {
    "core": set(),
    "features": {"core"},
    "ensemble": {"core"},
    "pipeline": {"core", "features", "ensemble"},
}


def _imports(path: Path) -> set[str]:
    """Top-level project packages imported anywhere in a module (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_layers_below_it(package: str) -> None:
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules
    wrong = {str(m.relative_to(ROOT)): sorted(_imports(m) - ALLOWED[package] - {package}) for m in modules}
    assert {m: w for m, w in wrong.items() if w} == {}


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from pipeline.io import atomic_path\n    import ensemble.metrics\n")
    assert _imports(module) == {"pipeline", "ensemble"}
