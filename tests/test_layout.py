"""The package's shape: each module imports only its own layer or the ones below, with no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "src" / "linreg"
# Lower first. A module may import its own layer and the layers before it, never a later one.
LAYERS = (
    {"errors", "files", "formats", "batches", "execution", "runs", "cli", "console"},
    {"config"},
    {"data", "models"},
    {"diagnostics"},
    {"serve"},
    {"run"},
    {"sweep", "bench", "convergence", "scale", "trial", "workloads"},
)


def layer_of(module: str) -> int:
    top = module.split(".")[1]
    return next(index for index, names in enumerate(LAYERS) if top in names)


def imports_of(path: Path) -> set[str]:
    """Every `linreg.*` module the file imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("linreg"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("linreg.")}
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(name for name in MODULES if name != "linreg"))
def test_a_module_imports_no_higher_layer(module: str) -> None:
    higher = sorted(i for i in MODULES[module] if i != "linreg" and layer_of(i) > layer_of(module))
    assert not higher, f"{module} (layer {layer_of(module)}) imports {higher}"


def test_the_package_has_no_import_cycles() -> None:
    def visit(module: str, trail: tuple[str, ...]) -> None:
        assert module not in trail, " -> ".join([*trail, module])
        for imported in MODULES.get(module, ()):
            visit(imported, (*trail, module))

    for module in MODULES:
        visit(module, ())
