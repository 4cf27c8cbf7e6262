"""The local Apache Kafka broker: fetch its jars, start, probe and stop it.

Owns everything about the one-node KRaft broker (broker + controller in one JVM) that
development, tests and demos run: the jar cache (fetched from Maven Central by `mvn`
with spanlake/kafka-pom.xml), the files in a broker's data dir (server.properties,
log4j2.properties, logs/, broker.log, broker.json) and the JVM's lifetime. Brokers with
different ports and data dirs run side by side. Needs `java` (17+) and `mvn` on PATH.
Callers pass every path; nothing here reads the environment.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from spanlake.errors import BrokerError

KAFKA_VERSION = "4.3.1"  # keep in step with kafka.version in kafka-pom.xml
HOST = "127.0.0.1"
POM = Path(__file__).parent / "kafka-pom.xml"
STATE_FILE = "broker.json"
_MARKER = ".complete"
_JVM_HEAP = ["-Xms256m", "-Xmx768m"]
# To stdout (broker.log). No shutdown hook: log4j2's own would stop logging before
# Kafka's shutdown hook has said anything. The config dump (1200 lines) is dropped;
# server.properties sits next to broker.log.
_LOG4J2 = """\
shutdownHook = disable
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.requests.name = kafka.request.logger
logger.requests.level = warn
logger.configs.name = org.apache.kafka.common.config.AbstractConfig
logger.configs.level = warn
"""

# Popen handles of brokers this process started: polling them reaps the child, whereas
# os.kill(pid, 0) keeps succeeding on an unreaped (zombie) child.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class BrokerInfo:
    """One local broker: where its data lives, how to reach it, whether it runs."""

    data_dir: Path
    port: int
    pid: int | None
    running: bool

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def ensure_kafka_jars(cache_dir: Path) -> Path:
    """The directory of Kafka's runtime jars, fetched by Maven on first use only.

    The jars land in cache_dir/kafka-<version>; its marker file is written last, so a
    directory without it (an interrupted fetch) is fetched again.
    """
    jar_dir = cache_dir / f"kafka-{KAFKA_VERSION}"
    if (jar_dir / _MARKER).exists():
        return jar_dir
    _require_tool("mvn", "Maven (mvn) fetches Kafka's jars from Maven Central")
    _require_tool("java", "Java 17+ runs the Kafka broker")
    # Fetch into a private sibling and rename it into place, so two processes fetching
    # at once never see (or delete) each other's half-copied jars.
    staging = cache_dir / f".kafka-{KAFKA_VERSION}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    cmd = ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={staging}"]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        raise BrokerError(f"Maven could not fetch Kafka {KAFKA_VERSION} jars "
                          f"(exit {done.returncode}):\n{_tail(done.stdout, 12)}")
    (staging / _MARKER).write_text(f"kafka {KAFKA_VERSION}\n")
    if not (jar_dir / _MARKER).exists():
        shutil.rmtree(jar_dir, ignore_errors=True)  # a fetch interrupted before the marker
        try:
            staging.rename(jar_dir)
        except OSError:  # another process renamed its complete copy in first
            pass
    shutil.rmtree(staging, ignore_errors=True)
    return jar_dir


def start_broker(*, port: int, data_dir: Path, cache_dir: Path, timeout: float = 90) -> BrokerInfo:
    """Start a broker on 127.0.0.1:port keeping its data in data_dir; wait until it answers.

    Idempotent: if the broker of this data_dir already runs on this port, its info is
    returned instead of an error (on another port: BrokerError). Raises BrokerError if
    the port is taken, the jars cannot be fetched, or the broker dies or stays silent
    for `timeout` seconds (then it is killed; broker.log keeps the details).
    """
    data_dir = data_dir.resolve()
    current = broker_status(data_dir=data_dir)
    if current is not None and current.running:
        if current.port != port:
            raise BrokerError(f"the broker of {data_dir} already runs on port {current.port}, not {port}")
        return current
    if not _port_is_free(port):
        raise BrokerError(f"port {port} on {HOST} is already in use; choose another port")
    jars = ensure_kafka_jars(cache_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    config = _write_config(data_dir, port)
    _format_storage(jars, config, data_dir)
    proc = _launch(jars, config, data_dir)
    (data_dir / STATE_FILE).write_text(json.dumps({"pid": proc.pid, "port": port}))
    try:
        _wait_until_ready(proc, port, data_dir, timeout)
    except BrokerError:
        stop_broker(data_dir=data_dir, timeout=10)
        raise
    return BrokerInfo(data_dir=data_dir, port=port, pid=proc.pid, running=True)


def stop_broker(*, data_dir: Path, timeout: float = 30) -> bool:
    """Stop the broker of data_dir: SIGTERM (a clean shutdown), SIGKILL after `timeout`.

    Returns False if it was not running. Either way its state file is removed.
    """
    info = broker_status(data_dir=data_dir)
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    if info is None or not info.running or info.pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):  # it may exit on its own meanwhile
        os.kill(info.pid, signal.SIGTERM)
        if not _wait_for_exit(info.pid, info.data_dir, timeout):
            os.kill(info.pid, signal.SIGKILL)
            _wait_for_exit(info.pid, info.data_dir, 10)
    _children.pop(info.pid, None)
    return True


def broker_status(*, data_dir: Path) -> BrokerInfo | None:
    """The broker of data_dir: None if none was started (or it was stopped), else its
    info, with running=False if it died without stop_broker."""
    data_dir = data_dir.resolve()
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    pid, port = int(state["pid"]), int(state["port"])
    return BrokerInfo(data_dir=data_dir, port=port, pid=pid, running=_is_our_broker(pid, data_dir))


def _require_tool(name: str, why: str) -> None:
    if shutil.which(name) is None:
        raise BrokerError(f"`{name}` is not on PATH: {why}; install it and retry")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # SO_REUSEADDR: a port left in TIME_WAIT by a stopped broker is free to Kafka too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _write_config(data_dir: Path, port: int) -> Path:
    # The controller port is picked anew at each start: with a static voter set
    # (controller.quorum.voters) it lives only in this file, not in the metadata log.
    cport = free_port()
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{cport}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{cport}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir / "logs"),
        "num.partitions": "1",
        # One node: internal topics cannot have more than one replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",  # tests join groups often; no 3 s wait
        # OTLP requests with large prompts exceed Kafka's 1 MB default; allow 16 MB messages.
        "message.max.bytes": str(16 * 1024 * 1024),
        "replica.fetch.max.bytes": str(16 * 1024 * 1024),
    }
    config = data_dir / "server.properties"
    config.write_text("".join(f"{key}={value}\n" for key, value in props.items()))
    (data_dir / "log4j2.properties").write_text(_LOG4J2)
    return config


def _java(jars: Path, data_dir: Path, main: str, *args: str) -> list[str]:
    # '<dir>/*' is expanded by java itself (no shell involved).
    return ["java", *_JVM_HEAP, "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={data_dir / 'log4j2.properties'}",
            "-cp", f"{jars}/*", main, *args]


def _format_storage(jars: Path, config: Path, data_dir: Path) -> None:
    if (data_dir / "logs" / "meta.properties").exists():
        return  # formatted by an earlier start; formatting again would need the same id
    cmd = _java(jars, data_dir, "kafka.tools.StorageTool", "format", "--config", str(config),
                "--cluster-id", _cluster_id(), "--ignore-formatted")
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if done.returncode != 0:
        raise BrokerError(f"could not format Kafka storage in {data_dir / 'logs'}:\n{_tail(done.stdout, 10)}")


def _cluster_id() -> str:
    # Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding. Like
    # Kafka's own generator, avoid a leading '-' (the CLI would read it as a flag).
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _launch(jars: Path, config: Path, data_dir: Path) -> subprocess.Popen[bytes]:
    log = data_dir / "broker.log"
    if log.exists():
        log.replace(data_dir / "broker.log.1")  # keep the previous run's log, once
    with log.open("wb") as out:
        # A new session: the broker outlives the CLI that started it and ignores its Ctrl-C.
        proc = subprocess.Popen(_java(jars, data_dir, "kafka.Kafka", str(config)), cwd=data_dir,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    _children[proc.pid] = proc
    return proc


def _wait_until_ready(proc: subprocess.Popen[bytes], port: int, data_dir: Path, timeout: float) -> None:
    from kafka import KafkaAdminClient  # imported late: the CLI's other commands skip it

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(f"Kafka exited with code {proc.returncode} while starting; "
                              f"end of {data_dir / 'broker.log'}:\n{_log_tail(data_dir)}")
        # Cheap TCP probe first: a Kafka client built before the port opens only times out.
        try:
            socket.create_connection((HOST, port), timeout=1).close()
        except OSError:
            time.sleep(0.2)
            continue
        try:
            admin = KafkaAdminClient(bootstrap_servers=f"{HOST}:{port}", request_timeout_ms=5000,
                                     bootstrap_timeout_ms=5000)
            try:
                admin.describe_cluster()
                return
            finally:
                admin.close()
        except Exception:  # noqa: BLE001 - any failure here just means "not ready yet"
            time.sleep(0.5)
    raise BrokerError(f"Kafka on port {port} did not answer within {timeout:.0f} s; "
                      f"end of {data_dir / 'broker.log'}:\n{_log_tail(data_dir)}")


def _log_tail(data_dir: Path) -> str:
    try:
        return _tail((data_dir / "broker.log").read_text(errors="replace"), 20)
    except OSError:
        return "(no broker.log)"


def _tail(output: str, lines: int) -> str:
    # Maven colours its output even in batch mode; drop the escapes and blank "[ERROR]" lines.
    text = re.sub(r"\x1b\[[0-9;]*m", "", output)
    kept = [line for line in text.splitlines() if line.removeprefix("[ERROR]").strip()]
    return "\n".join(kept[-lines:]) or "(no output)"


def _is_our_broker(pid: int, data_dir: Path) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else; the cmdline check decides
    # A pid from a stale state file may have been reused: it must be Kafka with our config.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return not Path("/proc").is_dir()  # no procfs (not Linux): trust the pid
    return b"kafka.Kafka" in cmdline and str(data_dir / "server.properties").encode() in cmdline


def _wait_for_exit(pid: int, data_dir: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_our_broker(pid, data_dir):
            return True
        time.sleep(0.1)
    return False
