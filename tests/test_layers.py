"""The layer rule of docs/DESIGN.md, read off the import statements of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# layer -> its folder and the layers it may import. The base (settings, errors, the local
# broker, the wire encodings and the app-side Kafka exporter) is spanlake/'s own modules; the
# CLI (spanlake/cli/) is the roof and imports anything.
FOLDERS = {"tables": "tables", "ingest": "ingest", "query": "query", "jobs": "jobs", "dashboard": "dashboard"}
MAY_IMPORT = {
    "tables": set(),
    "ingest": {"tables"},
    "query": {"tables"},
    "jobs": {"tables", "query"},
    # The dashboard reads through query; it writes only human feedback, through the jobs layer's
    # human API (spanlake.jobs.assessments), with the registered scorers' names (jobs.registry).
    "dashboard": {"tables", "query", "jobs"},
}
BASE = {"spanlake.settings", "spanlake.errors", "spanlake.broker", "spanlake.encoding", "spanlake.exporter"}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "spanlake" or name.startswith("spanlake.")}


def _in_base(module: str) -> bool:
    return any(module == b or module.startswith(b + ".") for b in BASE)


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FOLDERS else None


@pytest.mark.parametrize("layer", sorted(FOLDERS))
def test_a_layer_imports_only_the_layers_below_it(layer: str) -> None:
    offenders = []
    for path in sorted((ROOT / FOLDERS[layer]).rglob("*.py")):
        for module in _imports(path):
            target = _layer_of(module)
            if target is None:
                # spanlake.cli or the package root (it re-exports the read layer): never from a layer
                ok = _in_base(module)
            else:
                ok = target == layer or target in MAY_IMPORT[layer]
            if not ok:
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_the_base_imports_no_layer() -> None:
    offenders = [
        f"{path.name} imports {module}"
        for path in sorted((ROOT / "spanlake").glob("*.py")) if path.name != "__init__.py"
        for module in _imports(path) if not _in_base(module)
    ]  # fmt: skip
    assert offenders == []
