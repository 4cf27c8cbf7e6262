"""docker-compose.yml cannot run here (no Docker engine), so its shape is checked instead:
every spanlake service runs a real subcommand with settings spanlake knows."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from spanlake.cli import cli
from spanlake.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_compose_services_use_real_commands_and_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    spanlake_services = {n: s for n, s in compose["services"].items() if s.get("build") == "."}
    assert spanlake_services, "compose file runs no spanlake service"
    for name, service in spanlake_services.items():
        assert CliRunner().invoke(cli, [*service["command"], "--help"]).exit_code == 0, name
        for dep in service.get("depends_on", []):
            assert dep in compose["services"], f"{name} depends on unknown service {dep}"
        env = service["environment"]
        fields = {f"SPANLAKE_{f.upper()}" for f in Settings.model_fields}
        assert set(k for k in env if k.startswith("SPANLAKE_")) <= fields, name
        settings = Settings(**{k.removeprefix("SPANLAKE_").lower(): v for k, v in env.items()} | {
            "storage_options": json.loads(env.get("SPANLAKE_STORAGE_OPTIONS", "{}"))
        })
        assert settings.warehouse.startswith("s3://")
        assert settings.bootstrap_servers.split(":")[0] in compose["services"]


def test_dockerfile_copies_every_package_folder() -> None:
    from test_packaging import package_folders

    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = [(ROOT / line.split()[1]).resolve() for line in dockerfile.splitlines() if line.startswith("COPY ")]
    for name, folder in package_folders().items():  # at any depth: inside a copied folder
        assert any(folder == c or c in folder.parents for c in copied), f"the Dockerfile does not copy {name}"
