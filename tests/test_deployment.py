"""The deployment files, checked without a Docker engine: a real compose implementation
(docker-compose, installed by `make test`) validates and resolves docker-compose.yml; every spanlake
service runs a real command with settings spanlake accepts; the gateway starts with the compose
settings and passes its health check; the Collector writes what ingest reads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import typing
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from spanlake.broker import BrokerInfo, free_port
from spanlake.cli import cli
from spanlake.encoding import Encoding
from spanlake.ingest.producer import ensure_topic
from spanlake.jobs.monitor_rules import load_monitors
from spanlake.jobs.registry import load_registry
from spanlake.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COLLECTOR_CONFIG = ROOT / "examples" / "otel-collector.yaml"
SPANLAKE_IMAGE = "spanlake:0.1.0"


@pytest.fixture(scope="module")
def compose() -> dict:
    """docker-compose.yml as compose resolves it (anchors merged, `${VAR:-default}` filled in), with
    the local defaults: no S3 credentials in the environment."""
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose not found: `make test` installs it (Debian's docker-compose package)"
    env = {k: v for k, v in os.environ.items() if k not in ("S3_ACCESS_KEY", "S3_SECRET_KEY")}
    done = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config"],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def spanlake_services(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if s.get("image") == SPANLAKE_IMAGE}


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What a service's `spanlake` process builds from its environment (and nothing else)."""
    for key in [k for k in os.environ if k.startswith("SPANLAKE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    return Settings()


def test_compose_file_runs_the_whole_stack(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "kafka-init", "minio", "minio-init", "collector", "gateway", "ingest", "jobs",
                             "dashboard"}  # fmt: skip
    assert set(spanlake_services(compose)) == {"gateway", "ingest", "jobs", "dashboard"}
    assert services["ingest"]["deploy"]["replicas"] == 2 and "ports" not in services["ingest"]
    for name, service in services.items():
        image = service["image"]
        assert re.search(r":(RELEASE\.)?\d", image) and not image.endswith(":latest"), f"{name}: image {image} is not pinned"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in compose["volumes"] or Path(source).exists(), f"{name} mounts {source}, which is missing"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["collector"]["image"].startswith("otel/opentelemetry-collector-contrib:")
    for name in ("kafka", "minio", "gateway", "dashboard"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", f"{name} has no health check"
    ports = {name: [(p["published"], p["target"]) for p in s.get("ports", [])] for name, s in services.items()}
    host_ports = [host for published in ports.values() for host, _ in published]
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"
    assert (8501, 8501) in ports["dashboard"] and (4319, 4318) in ports["gateway"]
    assert {(4317, 4317), (4318, 4318)} <= set(ports["collector"])


def test_spanlake_services_run_real_commands_with_their_settings(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    known = {f"SPANLAKE_{name.upper()}" for name in Settings.model_fields}
    topic_env = services["kafka-init"]["environment"]
    bucket_env = services["minio-init"]["environment"]
    minio_env = services["minio"]["environment"]
    for name, service in spanlake_services(compose).items():
        command = service["command"]
        # --help after the flags: click rejects an unknown flag before it answers --help.
        result = CliRunner().invoke(cli, [*command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, (name, result.output)
        env = service["environment"]
        assert {k for k in env if k.startswith("SPANLAKE_")} <= known, f"{name} sets a setting spanlake lacks"
        settings = settings_from(env, monkeypatch)
        assert settings.bootstrap_servers.split(":")[0] in services, name
        assert settings.topic == topic_env["SPANLAKE_TOPIC"], f"{name} reads another topic than kafka-init creates"
        if "SPANLAKE_WAREHOUSE" not in env:
            continue
        bucket = re.fullmatch(r"s3://([^/]+)/.+", settings.warehouse)
        assert bucket and bucket[1] == bucket_env["BUCKET"], f"{name}: minio-init creates another bucket"
        options = settings.storage_options
        assert options["AWS_ENDPOINT_URL"] == "http://minio:9000" and options["aws_conditional_put"] == "etag"
        assert (options["AWS_ACCESS_KEY_ID"], options["AWS_SECRET_ACCESS_KEY"]) == (
            minio_env["MINIO_ROOT_USER"], minio_env["MINIO_ROOT_PASSWORD"]) == (
            bucket_env["S3_ACCESS_KEY"], bucket_env["S3_SECRET_KEY"])  # fmt: skip

    # The jobs' config is the mounted example: its scorers and monitors load.
    jobs = services["jobs"]
    mounts = {target: source for source, target, *_ in (v.split(":") for v in jobs["volumes"])}
    config = Path(jobs["environment"]["SPANLAKE_SCORERS_FILE"])
    local = Path(mounts[str(config.parent)]) / config.name
    assert load_registry(local) and load_monitors(local)


def test_gateway_starts_with_the_compose_settings(compose: dict, broker: BrokerInfo) -> None:
    """`spanlake gateway` as the compose file runs it, with Kafka at the test broker and a free
    loopback port in place of 0.0.0.0:4318; its own compose health check then passes."""
    gateway, kafka_init = compose["services"]["gateway"], compose["services"]["kafka-init"]
    env = {**os.environ, **gateway["environment"], "SPANLAKE_BOOTSTRAP_SERVERS": broker.bootstrap_servers}
    ensure_topic(broker.bootstrap_servers, env["SPANLAKE_TOPIC"], partitions=int(kafka_init["environment"]["PARTITIONS"]))
    port = str(free_port())
    args = [{"0.0.0.0": "127.0.0.1", "4318": port}.get(a, a) for a in gateway["command"]]
    assert args != gateway["command"] and "--port" in args and "--host" in args
    spanlake = Path(sys.executable).with_name("spanlake")
    process = subprocess.Popen([str(spanlake), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
                    assert answer.status == 200
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the gateway did not answer /health within 60 s"
                time.sleep(0.2)
        check = gateway["healthcheck"]["test"]
        assert check[:3] == ["CMD", "python", "-c"] and "localhost:4318/health" in check[3]
        probe = subprocess.run([sys.executable, "-c", check[3].replace("localhost:4318", f"127.0.0.1:{port}")],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
        assert probe.returncode == 0, probe.stderr
    finally:
        process.terminate()
        process.wait(timeout=30)


def resolve(value: str, env: dict[str, str]) -> str:
    """The Collector's `${env:NAME:-default}` expansion."""
    return re.sub(r"\$\{env:(\w+)(?::-([^}]*))?\}", lambda m: env.get(m[1]) or m[2] or "", value)


def test_the_collector_writes_what_ingest_reads(compose: dict) -> None:
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text())
    kafka = config["exporters"]["kafka"]
    assert config["service"]["pipelines"]["traces"] == {"receivers": ["otlp"], "processors": ["batch"],
                                                        "exporters": ["kafka"]}  # fmt: skip
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317") and protocols["http"]["endpoint"].endswith(":4318")
    assert kafka["partition_traces_by_id"] is True  # a trace stays on one partition, as KafkaSpanExporter keys it
    encoding = kafka["traces"]["encoding"]
    assert encoding in typing.get_args(Encoding) and encoding == Settings.model_fields["encoding"].default

    # Alone, the Collector's defaults are the consumer's defaults ...
    defaults = Settings.model_fields
    assert resolve(kafka["traces"]["topic"], {}) == defaults["topic"].default
    assert resolve(kafka["brokers"], {}) == defaults["bootstrap_servers"].default
    # ... and in the compose file it gets the consumer's environment.
    collector, ingest = compose["services"]["collector"], compose["services"]["ingest"]
    env = collector["environment"]
    assert resolve(kafka["traces"]["topic"], env) == ingest["environment"]["SPANLAKE_TOPIC"]
    assert resolve(kafka["brokers"], env) == ingest["environment"]["SPANLAKE_BOOTSTRAP_SERVERS"]
    config_path = collector["command"][0].removeprefix("--config=")
    assert f"{COLLECTOR_CONFIG}:{config_path}:ro" in collector["volumes"]

    readme = (ROOT / "README.md").read_text()
    assert f"topic `{defaults['topic'].default}`" in readme and f"encoding `{encoding}`" in readme


def test_dockerfile_builds_the_native_decoder_and_runs_unprivileged() -> None:
    stages = (ROOT / "Dockerfile").read_text().split("\nFROM ")
    build, final = stages[-2], stages[-1]
    assert "maturin build --release --manifest-path native/Cargo.toml" in build
    for stage in stages[1:]:
        image = stage.split()[0]
        assert re.search(r":\d+\.\d+\.\d+-slim-bookworm$", image), f"{image} is not a pinned slim release"
    assert final.startswith("python:3.11") and "rust" not in final and "apt-get" not in final  # no compilers
    user = [line.split()[1] for line in final.splitlines() if line.startswith("USER ")]
    assert user and user[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["spanlake"]' in final
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    assert {".venv", ".git", "native/target"} <= ignored


def test_dockerfile_copies_every_package_folder() -> None:
    from test_packaging import package_folders

    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = [(ROOT / line.split()[1]).resolve() for line in dockerfile.splitlines() if line.startswith("COPY ")]
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for name, folder in package_folders().items():  # at any depth: inside a copied folder
        assert any(folder == c or c in folder.parents for c in copied), f"the Dockerfile does not copy {name}"
        assert folder.relative_to(ROOT).parts[0] not in ignored, f".dockerignore leaves out {name}"
