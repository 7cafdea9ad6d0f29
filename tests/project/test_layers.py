"""The package's folders are layers, and imports flow one way between them
(``mnist_runner/__init__.py`` lists the layers). Every import counts, also
the ones inside functions."""

import ast
from pathlib import Path

import pytest

from mnist_runner.paths import PROJECT_ROOT

SRC = PROJECT_ROOT / "src"
BASE = {"errors", "signals", "redaction", "paths"}
# layer -> the layers it may import from (besides itself)
ALLOWED = {
    "base": {"base"},
    "datasets": {"base"},
    "config": {"base", "datasets"},
    "tracking": {"base", "config"},
    "pipeline": {"base", "config", "datasets", "tracking"},
    "sweeps": {"base", "config", "tracking"},
    "serving": {"base", "config", "datasets", "tracking"},
    "services": {"base", "config", "tracking"},
    "api": {"base", "config", "pipeline"},
    "package": {"api"},
    "search_plugin": {"base", "sweeps"},
}


def layer_of(module: str) -> str:
    """The layer of a module, or of a name imported from one."""
    parts = module.split(".")
    if parts[0] == "hydra_plugins":
        return "search_plugin"
    top = SRC / "mnist_runner" / parts[1] if len(parts) > 1 else None
    if top is None or not (top.is_dir() or top.with_suffix(".py").is_file()):
        return "package"  # mnist_runner itself, or a name it exports (``train``)
    return "base" if parts[1] in BASE else parts[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from mnist_runner import signals`` imports the module signals.
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in ("mnist_runner", "hydra_plugins")}


MODULES = sorted((SRC / "mnist_runner").rglob("*.py")) + sorted((SRC / "hydra_plugins").rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_flow_one_way(path):
    importer = layer_of(module_name(path))
    wrong = []
    for name in project_imports(path):
        imported = layer_of(name)
        if imported != importer and imported not in ALLOWED[importer]:
            wrong.append(f"{name} ({imported})")
    assert not wrong, f"{module_name(path)} ({importer}) imports from a layer above it: {wrong}"


def test_every_module_belongs_to_a_known_layer():
    assert {layer_of(module_name(path)) for path in MODULES} <= set(ALLOWED)


def test_the_package_keeps_few_top_level_modules():
    top_level = sorted(p.name for p in (SRC / "mnist_runner").glob("*.py"))
    assert len(top_level) <= 6, top_level


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The test above would notice a pipeline module importing the sweeps."""
    module = tmp_path / "experiment.py"
    module.write_text("def f():\n    from mnist_runner.sweeps.parent import SweepInfo\n")
    (imported,) = project_imports(module)
    assert layer_of(imported) == "sweeps" and "sweeps" not in ALLOWED["pipeline"]
