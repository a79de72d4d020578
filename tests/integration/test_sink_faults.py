"""The Redis faults the README promises the bridge rides out, each caused for real on a
redis-server of the test's own: READONLY after a failover, a reset connection, a timeout
whose transaction may still apply, LOADING while Redis reads its data at start. Each is a
RedisUnavailable (the worker backs off and retries), applies nothing half-way, and the
retry applies the batch once."""

import socket
import threading
import time
from pathlib import Path

import pytest
import redis

from helpers import RedisServer, wait_for
from kafka2sidekiq.encoder_types import Batch
from kafka2sidekiq.sink import Range, RedisUnavailable, Sink, connect

LEDGER = "k2s:ledger:g:t"


def batch_of(n: int) -> Batch:
    return Batch(queues={"default": [b'{"n":%d}' % i for i in range(n)]})


@pytest.fixture
def server(tmp_path):
    server = RedisServer(tmp_path)
    yield server
    server.stop()


def test_readonly_after_a_failover_applies_nothing_then_the_retry_applies(server):
    admin = redis.Redis.from_url(server.url)
    sink = Sink(connect(server.url), ledger=LEDGER)
    admin.execute_command("REPLICAOF", "127.0.0.1", "1")  # a demoted primary: writes refused
    with pytest.raises(RedisUnavailable, match="failover.*read only replica"):
        sink.push(batch_of(10), [Range(0, 0, 10)])
    assert not admin.exists("queue:default", f"{LEDGER}:0")
    admin.execute_command("REPLICAOF", "NO", "ONE")
    assert sink.push(batch_of(10), [Range(0, 0, 10)]) == {}
    assert admin.llen("queue:default") == 10 and admin.get(f"{LEDGER}:0") == b"10"


def test_a_reset_connection_is_retryable_and_the_retry_applies_once(server):
    admin = redis.Redis.from_url(server.url)
    sink = Sink(connect(server.url), ledger=LEDGER)
    assert sink.push(batch_of(5), [Range(0, 0, 5)]) == {}
    admin.client_kill_filter(_type="normal", skipme=True)  # the sink's connection is reset
    with pytest.raises(RedisUnavailable, match="ConnectionError"):
        sink.push(batch_of(5), [Range(0, 5, 10)])
    assert sink.push(batch_of(5), [Range(0, 5, 10)]) == {}
    assert admin.llen("queue:default") == 10 and admin.get(f"{LEDGER}:0") == b"10"


class ReplyEater:
    """A TCP proxy in front of Redis that, once the client has sent EXEC, stops passing
    Redis's replies back: the transaction applies, the client only sees a timeout. The
    ambiguous case of a network fault, made exact."""

    def __init__(self, upstream: Path) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port, self.upstream, self.eating, self.armed = self.listener.getsockname()[1], upstream, False, False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX)  # Redis's unix socket
            server.connect(str(self.upstream))
            threading.Thread(target=self.pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(server, client, False), daemon=True).start()

    def pump(self, src: socket.socket, dst: socket.socket, to_redis: bool) -> None:
        try:
            while data := src.recv(65536):
                if to_redis and self.armed and b"EXEC\r\n" in data:
                    self.eating = True
                if to_redis or not self.eating:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def close(self) -> None:
        self.listener.close()


def test_a_timeout_whose_transaction_applied_is_fenced_on_retry(server):
    # The client gave up waiting, Redis applied the batch all the same. The retry must not
    # push it again: the ledger says the partition is already past it.
    admin = redis.Redis.from_url(server.url)
    proxy = ReplyEater(server.socket)
    try:
        sink = Sink(connect(f"redis://127.0.0.1:{proxy.port}/0", timeout=0.5), ledger=LEDGER)
        assert sink.push(batch_of(5), [Range(0, 0, 5)]) == {}
        proxy.armed = True
        with pytest.raises(RedisUnavailable, match="Timeout"):
            sink.push(batch_of(5), [Range(0, 5, 10)])
        assert admin.get(f"{LEDGER}:0") == b"10" and admin.llen("queue:default") == 10  # it did apply
        proxy.armed = proxy.eating = False
        assert sink.push(batch_of(5), [Range(0, 5, 10)]) == {0: 10}  # fenced: nothing pushed twice
        assert admin.llen("queue:default") == 10
    finally:
        proxy.close()


def test_loading_at_start_is_retryable_then_the_push_applies(server):
    admin = redis.Redis.from_url(server.url)
    for start in range(0, 20_000, 10_000):  # enough keys that loading them takes seconds
        admin.mset({f"filler:{i}": "x" for i in range(start, start + 10_000)})
    admin.execute_command("BGREWRITEAOF")  # an RDB-format base: key-load-delay applies to it
    wait_for(lambda: admin.info("persistence")["aof_rewrite_in_progress"] == 0, 30, "the AOF rewrite")
    admin.close()
    server.stop()
    # ~100 us per key while loading (~2 s of LOADING), answering clients all along
    server.start("--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024")
    client = connect(server.url)
    sink = Sink(client, ledger=LEDGER)
    with pytest.raises(RedisUnavailable, match="LOADING|loading"):
        sink.push(batch_of(10), [Range(0, 0, 10)])
    deadline = time.monotonic() + 60
    while True:
        try:
            assert sink.push(batch_of(10), [Range(0, 0, 10)]) == {}
            break
        except RedisUnavailable:
            assert time.monotonic() < deadline, "Redis still loading after 60 s"
            time.sleep(0.2)
    assert client.llen("queue:default") == 10 and client.get(f"{LEDGER}:0") == b"10"
