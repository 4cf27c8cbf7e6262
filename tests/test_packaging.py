"""The package layout: the fixed top-level folders are subpackages of one `spanlake`."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from spanlake.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_mapped_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = {Path(d).resolve() for d in config["package-dir"].values()}
    folders = {p.parent.resolve() for p in ROOT.glob("*/__init__.py")}
    assert folders == mapped, "a folder with __init__.py is missing from [tool.setuptools.package-dir]"
    assert set(config["packages"]) == set(config["package-dir"])


@pytest.mark.parametrize("bare", ["tables", "ingest", "jobs", "dashboard", "query"])
def test_no_bare_top_level_module_is_installed(bare: str) -> None:
    spec = importlib.util.find_spec(bare)
    assert spec is None or ROOT not in Path(spec.origin or "").resolve().parents


def _commands(group, path=()):
    for name, command in group.commands.items():
        yield (*path, name)
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))


@pytest.mark.parametrize("path", sorted(_commands(cli)), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "--help" in result.output


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["produce", str(tmp_path / "missing.pb")])
    assert result.exit_code == 2 and "does not exist" in result.output
    bad = tmp_path / "spans.txt"
    bad.write_text("hello")
    result = CliRunner().invoke(cli, ["produce", "--bootstrap-servers", "127.0.0.1:1", str(bad)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("spanlake: error:") and "Traceback" not in result.output
    assert "spans.txt: unknown extension '.txt'" in lines[-1]


def test_readme_documents_every_column() -> None:
    from spanlake.tables.schemas import TABLES

    readme = (ROOT / "README.md").read_text()
    for name, spec in TABLES.items():
        section = readme.split(f"### `{name}`", 1)[1].split("###", 1)[0]
        missing = [c for c in spec.column_names if f"| `{c}` |" not in section]
        assert not missing, f"README's {name} section lacks {missing}"
