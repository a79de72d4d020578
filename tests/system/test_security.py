"""Secured servers, configured the way a production install would have them: a Redis
that only speaks TLS (client certificates required) to an ACL user, and the local
broker's SASL/PLAIN listener. Certificates are generated here with openssl."""

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from helpers import REPO, Bridge, bridge_env, free_port, numbered_jobs, produce, settle, wait_for

sys.path.insert(0, str(REPO / "scripts"))
from services import SASL_PASSWORD, SASL_USER  # noqa: E402

PASSWORD = "s3cret-acl-pass"
WRONG = "not-the-password"
# exactly what the README tells operators: these commands, on these keys
ACL = "+@read +@write +@transaction +@connection +info +select ~queue:* ~queues ~schedule ~k2s:*"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def certificates(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    openssl("req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=k2s-test-ca", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=k2s-{name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext", cwd=d)


@pytest.fixture
def tls_redis(tmp_path):
    """(port, cert dir) of a redis-server with TLS only, client certificates required,
    the default user off and one ACL user with only the rights the README names."""
    certificates(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", "0", "--tls-port", str(port),
         "--tls-cert-file", "server.pem", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.pem",
         "--tls-auth-clients", "yes", "--save", "", "--appendonly", "no",
         "--user", "default", "off", "--user", "k2s", "on", f">{PASSWORD}", *ACL.split()],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port, username="k2s", password=PASSWORD, ssl=True,
                         ssl_ca_certs=str(tmp_path / "ca.pem"), ssl_certfile=str(tmp_path / "client.pem"),
                         ssl_keyfile=str(tmp_path / "client.key"))

    def answers():
        try:
            return client.ping()
        except redis.RedisError:
            return False
    try:
        wait_for(answers, 15, "the TLS redis-server to answer")
        yield port, tmp_path, client
    finally:
        client.close()
        proc.terminate()
        proc.wait(20)


def tls_env(bootstrap, port, certs, topic, password=PASSWORD, **settings):
    return bridge_env(bootstrap, f"rediss://k2s:{password}@127.0.0.1:{port}/0", topic,
                      redis_tls_ca=certs / "ca.pem", redis_tls_cert=certs / "client.pem",
                      redis_tls_key=certs / "client.key", **settings)


def kafka2sidekiq(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kafka2sidekiq", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def test_bridge_pushes_over_tls_as_an_acl_user(bootstrap, make_topic, tls_redis):
    port, certs, client = tls_redis
    topic = make_topic(4)
    make_topic(1, name=f"{topic}.dlq")
    jobs = numbered_jobs(2000, keys=20)
    produce(bootstrap, topic, jobs)
    env = tls_env(bootstrap, port, certs, topic, workers=1)

    check = kafka2sidekiq(env, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    version = client.info("server")["redis_version"]
    assert f"ok   redis: {version} at rediss://k2s:***@127.0.0.1:{port}/0" in check.stdout
    assert "warn sidekiq: this Redis user may not read Sidekiq's heartbeats" in check.stdout

    bridge = Bridge(env, "run")
    try:
        settle(client, "queue:default", len(jobs), 60)
        assert client.llen("queue:default") == len(jobs)
    finally:
        assert bridge.stop() == 0, bridge.output()[-3000:]
    assert PASSWORD not in bridge.output() + check.stdout + check.stderr


def test_a_wrong_redis_password_is_named_and_never_printed(bootstrap, make_topic, tls_redis):
    port, certs, _ = tls_redis
    topic = make_topic(1)
    env = tls_env(bootstrap, port, certs, topic, password=WRONG, workers=1, crash_budget=2)

    check = kafka2sidekiq(env, "check")
    assert check.returncode == 1
    assert f"FAIL redis: rediss://k2s:***@127.0.0.1:{port}/0 refused the credentials" in check.stdout

    run = kafka2sidekiq(env, "run")
    out = run.stdout + run.stderr
    assert run.returncode == 3, out[-3000:]  # could not boot: the cause is the settings, not an outage
    assert f"Redis at rediss://k2s:***@127.0.0.1:{port}/0 refused the credentials" in out.splitlines()[-1], out[-4000:]
    assert WRONG not in out + check.stdout + check.stderr


def test_bridge_consumes_through_the_sasl_listener(bootstrap, make_topic, redis_url, redis_client):
    topic = make_topic(4)
    jobs = numbered_jobs(1000, keys=10)
    produce(bootstrap, topic, jobs)
    host, port = bootstrap.rsplit(":", 1)
    sasl = f"{host}:{int(port) + 2}"
    env = bridge_env(sasl, redis_url, topic, workers=1, kafka_security_protocol="SASL_PLAINTEXT",
                     kafka_sasl_mechanism="PLAIN", kafka_sasl_username=SASL_USER, kafka_sasl_password=SASL_PASSWORD)
    bridge = Bridge(env, "run")
    try:
        settle(redis_client, "queue:default", len(jobs), 60)
        assert redis_client.llen("queue:default") == len(jobs)
    finally:
        assert bridge.stop() == 0, bridge.output()[-3000:]
    assert "SASL authentication" not in bridge.output() and SASL_PASSWORD not in bridge.output()

    env["K2S_KAFKA_SASL_PASSWORD"] = WRONG
    check = kafka2sidekiq(env, "check")
    assert check.returncode == 1, check.stdout
    assert f"FAIL kafka: {sasl} refused the credentials" in check.stdout, check.stdout
    assert WRONG not in check.stdout + check.stderr
