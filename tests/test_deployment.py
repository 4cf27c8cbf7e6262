"""The deployment files, checked without a Docker engine: a real compose implementation
(docker-compose, installed by `make test`) validates and resolves docker-compose.yml; every spanlake
service runs a real command with settings spanlake accepts, and gateway, ingest replicas, jobs and
dashboard run here with their compose commands and settings (a trace goes gateway -> Kafka -> the
tables; health checks pass; SIGTERM stops each in its grace period); the Collector writes what
ingest reads; the Dockerfile builds the native decoder and runs unprivileged."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import typing
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import yaml
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

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


class LocalService:
    """One spanlake service of the compose file, run here as compose would run it, but with Kafka at
    the test broker, the warehouse in a local folder (the S3 path has tests of its own), mounted
    files at their host paths, and free loopback ports in place of 0.0.0.0 and the container ports."""

    def __init__(self, compose: dict, name: str, broker: BrokerInfo, warehouse: Path, log: Path) -> None:
        service = compose["services"][name]
        self.name, self.service, self.log = name, service, log
        self.ports = {str(p["target"]): str(free_port()) for p in service.get("ports", [])}
        mounts = {target: source for source, target, *_ in (v.split(":") for v in service.get("volumes", []))}
        env = {k: str(v) for k, v in service["environment"].items() if k != "SPANLAKE_STORAGE_OPTIONS"}
        env["SPANLAKE_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
        if "SPANLAKE_WAREHOUSE" in env:
            env["SPANLAKE_WAREHOUSE"] = str(warehouse)
        for key, value in env.items():
            for target, source in mounts.items():
                if value.startswith(target + "/") and Path(source).is_dir():
                    env[key] = source + value.removeprefix(target)
        self.args = [{"0.0.0.0": "127.0.0.1", **self.ports}.get(a, a) for a in service["command"]]
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("spanlake")), *self.args], env={**os.environ, **env},
            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def healthy(self) -> bool:
        """The service's own compose health check, pointed at its local port."""
        assert self.process.poll() is None, f"{self.name} exited: {self.log.read_text()}"
        check = self.service["healthcheck"]["test"]
        assert check[:3] == ["CMD", "python", "-c"], check
        script = check[3]
        for target, port in self.ports.items():
            script = script.replace(f"localhost:{target}", f"127.0.0.1:{port}")
        return subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30).returncode == 0

    def stop(self) -> tuple[bool, int | None]:
        """SIGTERM, as `docker compose stop` sends it: whether the service and every process it
        started ended within its stop_grace_period (10 s unless set), and its exit code."""
        grace = float(str(self.service.get("stop_grace_period", "10s")).removesuffix("s"))
        deadline = time.monotonic() + grace
        self.process.terminate()
        try:
            code = self.process.wait(timeout=grace)
            while time.monotonic() < deadline:
                os.killpg(self.process.pid, 0)  # ProcessLookupError once none of the group is left
                time.sleep(0.1)
            return False, code
        except ProcessLookupError:
            return True, code
        except subprocess.TimeoutExpired:
            return False, None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # whatever outlived its grace period
            self.process.wait()


def wait_until(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {seconds:g} s"
        time.sleep(0.5)


def test_the_spanlake_services_start_and_work_with_the_compose_settings(
    compose: dict, broker: BrokerInfo, tmp_path: Path
) -> None:
    """Gateway, the ingest replicas, jobs and dashboard, each with its compose command and settings:
    a trace sent to the gateway reaches the warehouse, the health checks pass, SIGTERM stops each."""
    services = compose["services"]
    kafka_init = services["kafka-init"]["environment"]
    ensure_topic(broker.bootstrap_servers, kafka_init["SPANLAKE_TOPIC"], partitions=int(kafka_init["PARTITIONS"]))
    warehouse = tmp_path / "warehouse"
    replicas = {"ingest": services["ingest"]["deploy"]["replicas"]}
    running = [
        LocalService(compose, name, broker, warehouse, tmp_path / f"{name}-{i}.log")
        for name in ("gateway", "ingest", "jobs", "dashboard") for i in range(replicas.get(name, 1))
    ]  # fmt: skip
    by_name = {s.name: s for s in running}
    try:
        gateway, dashboard, jobs = by_name["gateway"], by_name["dashboard"], by_name["jobs"]
        wait_until(gateway.healthy, 60, "the gateway's health check passes")

        finished = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": "compose-check"}))
        provider.add_span_processor(SimpleSpanProcessor(finished))
        with provider.get_tracer("deployment").start_as_current_span("compose-check"):
            pass
        provider.shutdown()
        spans = finished.get_finished_spans()
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{gateway.ports['4318']}/v1/traces")
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        trace_id = format(spans[0].context.trace_id, "032x")

        def landed() -> bool:
            if not (warehouse / "trace_info" / "_delta_log").exists():
                return False
            return pl.read_delta(str(warehouse / "trace_info")).filter(pl.col("trace_id") == trace_id).height == 1

        wait_until(landed, 60, "the trace sent to the gateway is in trace_info")
        wait_until(dashboard.healthy, 90, "the dashboard's health check passes")
        wait_until(lambda: jobs.log.stat().st_size > 0, 60, "the jobs finish their first pass")
    finally:
        stopped = {s.log.name: s.stop() for s in running}
    # Exit 0, or killed by the SIGTERM it re-raises after shutting down (uvicorn does: 143 in Docker).
    assert all(in_time and code in (0, -signal.SIGTERM) for in_time, code in stopped.values()), stopped


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
