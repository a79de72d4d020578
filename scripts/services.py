#!/usr/bin/env python3
"""Local Apache Kafka (KRaft) and Redis for development, tests and benchmarks.

    scripts/services.py up | down | status | env

Kafka runs from the official Maven Central jars with Java 17, one combined
broker+controller on 127.0.0.1; Redis is Debian's redis-server, without persistence.
Both are started in the background, tracked by PID file and stopped by PID.
The broker also has a SASL_PLAINTEXT listener (mechanism PLAIN, user k2s, password
SASL_PASSWORD below) on port + 2, to try and test the bridge's SASL settings; it is a
local test broker on loopback, not a secret.

Settings (environment):
    K2S_SERVICES_DIR   state folder (data, logs, pid files)  default: <repo>/.k2s/<name>
    K2S_SERVICES_NAME  instance name, so tests and a demo never share a broker  default: dev
    K2S_LOCAL_KAFKA_PORT       default 19092 (controller: port + 1; SASL/PLAIN: port + 2)
    K2S_LOCAL_REDIS_PORT       default 16379
    K2S_KAFKA_VERSION          default 4.1.1

Standard library only: it runs before anything is pip-installed.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NAME = os.environ.get("K2S_SERVICES_NAME", "dev")
STATE = Path(os.environ.get("K2S_SERVICES_DIR", REPO / ".k2s" / NAME))
KAFKA_VERSION = os.environ.get("K2S_KAFKA_VERSION", "4.1.1")
KAFKA_LIBS = REPO / ".k2s" / "cache" / f"kafka-{KAFKA_VERSION}"
LOG4J_VERSION = "2.24.3"
KAFKA_READY_SECONDS = 90
REDIS_READY_SECONDS = 15
STOP_SECONDS = 30
SASL_USER, SASL_PASSWORD = "k2s", "k2s-local-sasl"


class ServiceError(Exception):
    """A service could not be prepared or started; the message says what to do."""


def _port(var: str, default: int) -> int:
    raw = os.environ.get(var, str(default))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ServiceError(f"{var}={raw!r} is not a TCP port (1-65535)")
    return int(raw)


def kafka_port() -> int:
    return _port("K2S_LOCAL_KAFKA_PORT", 19092)


def redis_port() -> int:
    return _port("K2S_LOCAL_REDIS_PORT", 16379)


# --- processes ---------------------------------------------------------------


def _pid_file(name: str) -> Path:
    return STATE / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not running; /proc tells them apart.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def running_pid(name: str) -> int | None:
    try:
        pid = int(_pid_file(name).read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _spawn(name: str, argv: list[str], log: Path) -> int:
    """Start argv detached (own session), output to log; record and return its PID."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=STATE,
        )
    _pid_file(name).write_text(str(proc.pid))
    return proc.pid


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(name: str) -> None:
    pid = running_pid(name)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            print(f"{name}: pid {pid} ignored SIGTERM for {STOP_SECONDS}s, sending SIGKILL")
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        print(f"{name}: stopped (pid {pid})")
    _pid_file(name).unlink(missing_ok=True)


# --- Redis ---------------------------------------------------------------------


def _redis_server() -> str:
    path = shutil.which("redis-server")
    if path:
        return path
    if shutil.which("apt-get") is None:
        raise ServiceError("redis-server is missing: install Debian's redis-server package")
    print("redis: installing Debian's redis-server")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return shutil.which("redis-server") or "/usr/bin/redis-server"


def redis_up() -> None:
    port = redis_port()
    if running_pid("redis"):
        return
    if _port_open(port):
        raise ServiceError(f"redis: 127.0.0.1:{port} is taken by another process; "
                           f"set K2S_LOCAL_REDIS_PORT to a free port")
    log = STATE / "redis.log"
    argv = [_redis_server(), "--bind", "127.0.0.1", "--port", str(port),
            "--save", "", "--appendonly", "no", "--dir", str(STATE),
            "--protected-mode", "yes", "--maxmemory-policy", "noeviction"]
    pid = _spawn("redis", argv, log)
    deadline = time.monotonic() + REDIS_READY_SECONDS
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    print(f"redis: up on 127.0.0.1:{port} (pid {pid})")
                    return
        except OSError:
            pass
        time.sleep(0.1)
    stop("redis")
    raise ServiceError(f"redis: did not answer PING within {REDIS_READY_SECONDS}s; "
                       f"log {log}:\n{_tail(log)}")


# --- Kafka ---------------------------------------------------------------------

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.kafka2sidekiq</groupId><artifactId>kafka-runtime</artifactId>
  <version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ServiceError(f"{tool} is missing: install {package} (apt-get install {package})")
    return path


def kafka_libs() -> Path:
    """The broker's runtime classpath, resolved by Maven once and cached."""
    done = KAFKA_LIBS / ".complete"
    if done.exists():
        return KAFKA_LIBS
    mvn = _need("mvn", "maven")
    if KAFKA_VERSION.split(".")[0] not in ("4",):
        raise ServiceError(f"K2S_KAFKA_VERSION={KAFKA_VERSION}: only Kafka 4.x is supported here")
    print(f"kafka: resolving Apache Kafka {KAFKA_VERSION} jars with Maven (once)")
    KAFKA_LIBS.mkdir(parents=True, exist_ok=True)
    pom = KAFKA_LIBS / "pom.xml"
    pom.write_text(_POM.format(kafka=KAFKA_VERSION, log4j=LOG4J_VERSION))
    result = subprocess.run(
        [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={KAFKA_LIBS}"],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise ServiceError(f"kafka: Maven could not fetch the jars:\n{result.stdout[-3000:]}"
                           f"{result.stderr[-2000:]}")
    done.touch()
    return KAFKA_LIBS


def _java() -> str:
    java = _need("java", "openjdk-17-jre-headless")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    major = out.split('"')[1].split(".")[0] if '"' in out else "0"
    if not major.isdigit() or int(major) < 17:
        raise ServiceError(f"java is {major}, Kafka {KAFKA_VERSION} needs 17+: "
                           f"install openjdk-17-jre-headless")
    return java


def _server_properties(port: int, data: Path) -> str:
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{port + 1}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1},"
        f"SASL_PLAINTEXT://127.0.0.1:{port + 2}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{port + 2}",
        "sasl.enabled.mechanisms=PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config="
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{SASL_USER}" password="{SASL_PASSWORD}" user_{SASL_USER}="{SASL_PASSWORD}";',
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        f"log.dirs={data}",
        "num.partitions=8",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "group.min.session.timeout.ms=1000",
        "group.consumer.min.session.timeout.ms=1000",
        "group.consumer.session.timeout.ms=10000",
        "num.network.threads=2",
        "num.io.threads=4",
        "auto.create.topics.enable=false",
        "",
    ])


def kafka_up() -> None:
    port = kafka_port()
    if running_pid("kafka"):
        return
    for p in (port, port + 1, port + 2):
        if _port_open(p):
            raise ServiceError(f"kafka: 127.0.0.1:{p} is taken by another process; "
                               f"set K2S_LOCAL_KAFKA_PORT to a free port")
    java = _java()
    classpath = f"{kafka_libs()}/*"
    data = STATE / "kafka-data"
    props = STATE / "server.properties"
    props.write_text(_server_properties(port, data))
    log4j = STATE / "log4j2.properties"
    log4j.write_text(_LOG4J)
    log = STATE / "kafka.log"
    jvm = [java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true",
           f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
    if not (data / "meta.properties").exists():
        cluster_id = "-"
        while cluster_id.startswith("-"):  # one in 64 would read as an option: as Kafka's own Uuid does
            cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        fmt = subprocess.run(jvm + ["kafka.tools.StorageTool", "format", "-t", cluster_id,
                                    "-c", str(props)], capture_output=True, text=True)
        if fmt.returncode != 0:
            raise ServiceError(f"kafka: formatting storage failed:\n{fmt.stdout}{fmt.stderr}")
    offset = log.stat().st_size if log.exists() else 0
    pid = _spawn("kafka", jvm + ["kafka.Kafka", str(props)], log)
    deadline = time.monotonic() + KAFKA_READY_SECONDS
    while time.monotonic() < deadline and _alive(pid):
        with open(log, "rb") as f:
            f.seek(offset)
            if b"Kafka Server started" in f.read():
                print(f"kafka: up on 127.0.0.1:{port} (pid {pid}, Apache Kafka {KAFKA_VERSION})")
                return
        time.sleep(0.2)
    stop("kafka")
    raise ServiceError(f"kafka: not started within {KAFKA_READY_SECONDS}s; "
                       f"log {log}:\n{_tail(log)}")


# --- commands --------------------------------------------------------------------


def env_lines() -> list[str]:
    return [
        f"export K2S_BOOTSTRAP_SERVERS=127.0.0.1:{kafka_port()}",
        f"export K2S_REDIS_URL=redis://127.0.0.1:{redis_port()}/0",
    ]


def up(which: list[str]) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    if "redis" in which:
        redis_up()
    if "kafka" in which:
        kafka_up()


def status() -> int:
    code = 0
    for name, port in (("kafka", kafka_port()), ("redis", redis_port())):
        pid = running_pid(name)
        if pid:
            print(f"{name}: running, pid {pid}, 127.0.0.1:{port}")
        else:
            print(f"{name}: stopped")
            code = 3
    return code


def main(argv: list[str]) -> int:
    usage = "usage: scripts/services.py up [kafka|redis] | down | status | env"
    if not argv or argv[0] not in ("up", "down", "status", "env"):
        print(usage, file=sys.stderr)
        return 2
    which = argv[1:] or ["redis", "kafka"]
    if any(w not in ("redis", "kafka") for w in which):
        print(usage, file=sys.stderr)
        return 2
    try:
        if argv[0] == "up":
            up(which)
        elif argv[0] == "down":
            for name in ("kafka", "redis"):
                if name in which:
                    stop(name)
        elif argv[0] == "status":
            return status()
        else:
            print("\n".join(env_lines()))
    except ServiceError as exc:
        print(f"services: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
