"""The fleet: one Redis per worker host (design.md, "The fleet"; issue 15).

Each host is a whole ``kafka2sidekiq run`` (supervisor, coordinator, one worker) with its
own static ``K2S_INSTANCE_ID``, its own redis-server and its own real Sidekiq (Debian's
ruby-sidekiq, with ruby/kafka2sidekiq_performed.rb loaded) performing the jobs; all hosts
share one group and one topic of 12 partitions. Keyed, numbered jobs (args [key, seq],
200 keys) arrive in waves while the hosts run. Every figure is counted from what the
Sidekiqs performed (each appends [jid, key, seq] to ``performed:<host>`` in the test's
own Redis): lost = produced args performed nowhere, repeated = performed more than once
(on one host or across them). Each test prints one summary line.

Ownership comes from the coordinators' own log lines: ``coordinator[pid] assigned [..]``
(cooperative: the partitions added), ``revoked [..]`` and ``lost [..]`` (removed).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import psutil
import pytest
import redis
from confluent_kafka import Producer

from helpers import Bridge, RedisServer, bridge_env, numbered_jobs, wait_for

from kafka2sidekiq import middleware_path
from kafka2sidekiq._proto.job_pb2 import Job

PARTITIONS = 12
KEYS = 200
HOST = dict(workers=1, batch_size=500, session_timeout_ms=6000)

pytestmark = pytest.mark.skipif(shutil.which("sidekiq") is None, reason="ruby-sidekiq not installed")

PERFORM_RB = """
require "sidekiq"
require "json"
require ENV.fetch("K2S_PERFORMED_RB")

RESULTS = Redis.new(url: ENV.fetch("RESULTS_URL"))
PERFORMED = "performed:#{ENV.fetch('HOST_NAME')}"
PAUSE = ENV.fetch("PERFORM_SECONDS").to_f

class NumberedJob
  include Sidekiq::Worker
  def perform(key, seq)
    sleep PAUSE if PAUSE > 0
    RESULTS.rpush(PERFORMED, JSON.generate([jid, key, seq]))
  end
end
"""


class Sidekiq:
    """A real Sidekiq on one host's Redis, the middleware loaded (it is harmless for jobs
    without k2s_origin: in pushed mode it writes nothing)."""

    def __init__(self, name: str, redis_url: str, directory: Path, results_url: str, pause: float) -> None:
        (directory / "worker.rb").write_text(PERFORM_RB)
        with open(directory / "sidekiq.log", "wb") as out:
            self.proc = subprocess.Popen(
                ["sidekiq", "-r", str(directory / "worker.rb"), "-q", "default", "-c", "5"],
                env={"REDIS_URL": redis_url, "RESULTS_URL": results_url, "HOST_NAME": name,
                     "PERFORM_SECONDS": str(pause),
                     "K2S_PERFORMED_RB": str(middleware_path()),
                     "PATH": "/usr/bin:/bin", "HOME": str(directory)},
                stdout=out, stderr=subprocess.STDOUT, cwd=directory)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(20)

EVENT = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ coordinator\[(\d+)\] (assigned|revoked|lost) "
                   r"\[([\d, ]*)\]", re.M)


# --- hosts ---------------------------------------------------------------------------------

class Host:
    """One worker host: a Redis of its own (kept across restarts of the bridge) and the
    ``kafka2sidekiq run`` processes started on it, in order (``runs[-1]`` is the live one)."""

    def __init__(self, name: str, directory: Path, bootstrap: str, topic: str, results: redis.Redis,
                 results_url: str, perform_seconds: float = 0.0, **settings) -> None:
        directory.mkdir()
        self.name = name
        self.redis = RedisServer(directory)
        self.client = redis.Redis.from_url(self.redis.url)
        self.results = results
        self.sidekiq = Sidekiq(name, self.redis.url, directory, results_url, perform_seconds)
        self.env = bridge_env(bootstrap, self.redis.url, topic, instance_id=name, **{**HOST, **settings})
        self.runs: list[Bridge] = []
        self.seen: dict[int, psutil.Process] = {}  # every child seen, to stop them all at the end

    def start(self) -> Bridge:
        self.runs.append(Bridge(self.env, "run"))
        return self.runs[-1]

    @property
    def bridge(self) -> Bridge:
        return self.runs[-1]

    def children(self) -> list[psutil.Process]:
        try:
            found = psutil.Process(self.bridge.proc.pid).children()
        except psutil.NoSuchProcess:
            return []
        self.seen.update((c.pid, c) for c in found)
        return found

    def events(self, run: int = -1) -> list[tuple[float, str, set[int]]]:
        """(wall-clock time, assigned|revoked|lost, partitions) of one run's coordinator(s)."""
        return [(datetime.strptime(ts, "%Y-%m-%d %H:%M:%S,%f").timestamp(), kind,
                 {int(p) for p in parts.split(",") if p.strip()})
                for ts, _pid, kind, parts in EVENT.findall(self.runs[run].output())]

    def owned(self) -> set[int]:
        self.children()
        owned: set[int] = set()
        for _, kind, parts in self.events():
            owned = owned | parts if kind == "assigned" else owned - parts
        return owned

    def kill_tree(self) -> None:
        """SIGKILL the supervisor and its children at once: the machine is gone (its Redis
        is kept)."""
        tree = self.children()
        for proc in [psutil.Process(self.bridge.proc.pid), *tree]:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.bridge.proc.wait(10)
        psutil.wait_procs(tree, timeout=10)

    def performed(self) -> list[tuple]:
        """(jid, key, seq) of each job this host's Sidekiq performed."""
        return [tuple(json.loads(x)) for x in self.results.lrange(f"performed:{self.name}", 0, -1)]

    def handled(self) -> int:
        """Jobs this host has had: performed, or queued in its Redis."""
        return self.results.llen(f"performed:{self.name}") + self.queued()

    def queued(self) -> int:
        try:
            return self.client.llen("queue:default")
        except redis.ConnectionError:  # its Redis is gone with it
            return 0

    def cleanup(self) -> None:
        for run in self.runs:
            try:
                tree = psutil.Process(run.proc.pid).children()
            except psutil.NoSuchProcess:
                tree = []
            for child in tree:
                child.kill()
            run.kill()
        for proc in self.seen.values():  # children of a supervisor already gone
            try:
                if proc.is_running():  # the same process (psutil checks its start time)
                    proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.sidekiq.kill()
        self.client.close()
        self.redis.stop()


@pytest.fixture
def fleet(bootstrap, make_topic, tmp_path, redis_url, redis_client):
    """fleet(*names, **settings) -> Hosts on one fresh 12-partition topic and one group; what
    their Sidekiqs perform is recorded in the test's Redis."""
    made: list[Host] = []
    topic = make_topic(PARTITIONS)

    def make(*names: str, **settings) -> list[Host]:
        hosts = [Host(name, tmp_path / name, bootstrap, topic, redis_client, redis_url, **settings)
                 for name in names]
        made.extend(hosts)
        return hosts

    make.topic = topic
    yield make
    for host in made:
        host.cleanup()


def wait_split(hosts: list[Host], timeout: float = 60) -> None:
    """Until every host owns partitions, together all of them, none twice, and that has
    held for a second (no rebalance under way)."""

    def split() -> bool:
        owned = [h.owned() for h in hosts]
        return (all(owned) and set().union(*owned) == set(range(PARTITIONS))
                and sum(map(len, owned)) == PARTITIONS)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if split():
            time.sleep(1.0)
            if split():
                return
        time.sleep(0.2)
    raise AssertionError("the hosts never split the partitions between them: "
                         + "; ".join(f"{h.name} {sorted(h.owned())}" for h in hosts))


def assignment_of(host: Host, partitions: set[int], after: float = 0.0) -> float | None:
    """When the host's live coordinator first held all of ``partitions`` (they may come in
    more than one cooperative increment): the "assigned" line, at or after wall-clock
    ``after``, that completed them."""
    held: set[int] = set()
    for when, kind, parts in host.events():
        held = held | parts if kind == "assigned" else held - parts
        if kind == "assigned" and partitions <= held and when >= after - 0.01:
            return when
    return None


# --- jobs ----------------------------------------------------------------------------------

class Waves:
    """Produce the jobs from a thread while the hosts run, ``size`` at a time with a short
    pause between waves, each wave acknowledged by Kafka before the next: a steady stream,
    so that whenever a rebalance or a kill comes, the workers hold a batch in flight. The
    last wave waits for join(): jobs always arrive after the scenario's disruption, however
    fast this machine produces."""

    def __init__(self, bootstrap: str, topic: str, jobs: list[tuple[bytes, bytes]], size: int = 300,
                 pause: float = 0.02) -> None:
        self.waves = [jobs[i:i + size] for i in range(0, len(jobs), size)]
        self.bootstrap, self.topic, self.pause = bootstrap, topic, pause
        self.sent = 0
        self.where: dict[bytes, tuple[int, int]] = {}  # value -> (partition, offset)
        self.started = time.time()
        self.finished = float("inf")  # wall-clock time the last wave was acknowledged
        self.failures: list[BaseException] = []
        self.last_wave = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "enable.idempotence": True})
            failed: list = []
            for n, wave in enumerate(self.waves):
                if n:
                    time.sleep(self.pause)
                if n == len(self.waves) - 1 and n:
                    self.last_wave.wait(120)
                for key, value in wave:
                    while True:
                        try:
                            producer.produce(self.topic, value, key, on_delivery=self._delivered(failed))
                            break
                        except BufferError:
                            producer.poll(0.1)
                assert producer.flush(60) == 0 and not failed, failed[:3]
                self.sent += len(wave)
            self.finished = time.time()
        except BaseException as exc:  # surfaced by join()
            self.failures.append(exc)

    def _delivered(self, failed: list):
        def delivered(error, message) -> None:
            if error:
                failed.append(error)
            else:
                self.where[message.value()] = (message.partition(), message.offset())
        return delivered

    def join(self, timeout: float = 120) -> None:
        self.last_wave.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"producing took over {timeout}s"
        assert not self.failures, self.failures

    def rate(self) -> int:
        return round(self.sent / (self.finished - self.started))


def args_of(jobs: list[tuple[bytes, bytes]]) -> list[tuple]:
    return [tuple(json.loads(Job.FromString(value).args_json)) for _, value in jobs]


def settle(hosts: list[Host], expected: int, timeout: float) -> None:
    """Until the hosts' Sidekiqs have performed at least ``expected`` jobs in all and nothing
    more came for 1.5 s, or nothing came for 15 s (jobs lost: the count says so), or the
    timeout."""
    deadline = time.monotonic() + timeout
    last, still_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        total = sum(h.results.llen(f"performed:{h.name}") for h in hosts)
        if total != last:
            last, still_since = total, time.monotonic()
        quiet = time.monotonic() - still_since
        if (total >= expected and quiet >= 1.5) or quiet >= 15:
            return
        time.sleep(0.2)


def count(hosts: list[Host], produced: list[tuple[bytes, bytes]]) -> dict:
    """The figures, from what the Sidekiqs performed."""
    wanted = args_of(produced)
    runs = {h.name: h.performed() for h in hosts}
    per_host = {name: [(key, seq) for _, key, seq in done] for name, done in runs.items()}
    found = Counter(a for jobs in per_host.values() for a in jobs)
    sets = [set(jobs) for jobs in per_host.values()]
    repeated = [a for a, c in found.items() if c > 1]
    jids = defaultdict(set)
    for done in runs.values():
        for jid, key, seq in done:
            jids[(key, seq)].add(jid)
    return {
        "produced": len(wanted),
        "per_host": {name: len(jobs) for name, jobs in per_host.items()},
        "lost": len(set(wanted) - set(found)),
        "repeated": len(repeated),
        "extra_copies": sum(found[a] - 1 for a in repeated),
        "repeated_across_hosts": sum(1 for a in repeated if sum(a in s for s in sets) > 1),
        "repeated_with_another_jid": sum(1 for a in repeated if len(jids[a]) > 1),
        "examples": repeated[:3],
        "examples_all": repeated,
        "jobs": per_host,
    }


def report(capsys, scenario: str, figures: dict, **extra) -> None:
    hosts = ", ".join(f"{name} {n}" for name, n in figures["per_host"].items())
    more = "".join(f", {k.replace('_', ' ')} {v}" for k, v in extra.items())
    with capsys.disabled():
        print(f"\nfleet[{scenario}]: produced {figures['produced']}, performed by {hosts}, lost {figures['lost']}, "
              f"repeated {figures['repeated']} (extra copies {figures['extra_copies']}, "
              f"across hosts {figures['repeated_across_hosts']}){more}", flush=True)


def exactly_once(figures: dict) -> str:
    return (f"lost {figures['lost']}, repeated {figures['repeated']} (extra copies {figures['extra_copies']}, "
            f"e.g. {figures['examples']})")


def stop_all(hosts: list[Host]) -> None:
    for host in hosts:
        if host.bridge.proc.poll() is None:
            host.bridge.proc.send_signal(signal.SIGTERM)
    for host in hosts:
        try:
            code = host.bridge.proc.wait(30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{host.name} ignored SIGTERM for 30s:\n{host.bridge.output()[-3000:]}")
        assert code == 0, f"{host.name} exited {code}:\n{host.bridge.output()[-3000:]}"


# --- the scenarios -----------------------------------------------------------------------------

def three_hosts_split(fleet) -> tuple[list[Host], dict[str, set[int]], float]:
    """Hosts a, b and c started and settled: each one's partitions, and since when."""
    hosts = fleet("host-a", "host-b", "host-c")
    for host in hosts:
        host.start()
    wait_split(hosts)
    return hosts, {h.name: h.owned() for h in hosts}, time.time()


def test_key_affinity_while_ownership_is_stable(fleet, bootstrap, capsys):
    hosts, split, stable_since = three_hosts_split(fleet)
    # what an operator asks: which partitions (so which keys) live on this host
    out = subprocess.run([sys.executable, "-m", "kafka2sidekiq", "check"], env=hosts[0].env,
                         capture_output=True, text=True, timeout=60)
    assert f"ok   kafka: this host (host-a) owns partition(s) {sorted(split['host-a'])}" in out.stdout, out.stdout
    assert "member(s): host-a 4, host-b 4, host-c 4" in out.stdout, out.stdout
    produced = numbered_jobs(40_000, keys=KEYS)
    waves = Waves(bootstrap, fleet.topic, produced, size=1000, pause=0.05)
    waves.join()
    settle(hosts, len(produced), 90)
    figures = count(hosts, produced)
    report(capsys, "key affinity", figures, jobs_per_second=waves.rate(),
           split={n: sorted(p) for n, p in split.items()})
    moves = [(h.name, kind, sorted(parts)) for h in hosts for when, kind, parts in h.events() if when > stable_since]
    assert not moves, f"ownership moved while the jobs flowed: {moves}"
    assert figures["lost"] == 0 and figures["repeated"] == 0, exactly_once(figures)
    homes = defaultdict(set)
    for name, jobs in figures["jobs"].items():
        for key, seq in jobs:
            homes[key].add(name)
    assert len(homes) == KEYS
    split_keys = {k: sorted(v) for k, v in homes.items() if len(v) > 1}
    assert not split_keys, f"{len(split_keys)} keys performed on more than one host, e.g. {list(split_keys.items())[:3]}"
    partition_of = {json.loads(Job.FromString(v).args_json)[0]: waves.where[v][0] for _, v in produced}
    owner = {p: name for name, parts in split.items() for p in parts}
    elsewhere = [k for k, (home,) in homes.items() if owner[partition_of[k]] != home]
    assert not elsewhere, f"{len(elsewhere)} keys performed away from their partition's owner: {elsewhere[:3]}"
    assert all(figures["per_host"].values()), "a host got no job"
    stop_all(hosts)


def test_scale_out_mid_stream(fleet, bootstrap, capsys):
    # Host d joins three running hosts while the jobs flow: they give partitions up alive
    # (cooperative revoke) and must first commit exactly what their Redis holds, so that d
    # starts there.
    *old, d = hosts = fleet("host-a", "host-b", "host-c", "host-d")
    for host in old:
        host.start()
    wait_split(old)
    produced = numbered_jobs(60_000, keys=KEYS)
    waves = Waves(bootstrap, fleet.topic, produced)
    wait_for(lambda: all(h.handled() > 3_000 for h in old), 60, "the hosts to push jobs")
    joined = time.time()
    d.start()
    wait_split(hosts)
    d_assigned = assignment_of(d, d.owned(), after=joined)
    revokes = [(when, h.name, sorted(p)) for h in old for when, kind, p in h.events()
               if kind == "revoked" and when >= joined]
    waves.join()
    settle(hosts, len(produced), 90)
    figures = count(hosts, produced)
    report(capsys, "scale out", figures, jobs_per_second=waves.rate(),
           revoked={name: parts for _, name, parts in revokes},
           d_start_to_assigned_seconds=round(d_assigned - joined, 2),
           handover_seconds=round(d_assigned - min((w for w, _, _ in revokes), default=d_assigned), 2))
    assert revokes and max(when for when, _, _ in revokes) < waves.finished, \
        "the partitions moved to host d after the last wave: no handover under load"
    assert figures["per_host"]["host-d"] > 0, "host d performed no job"
    assert figures["lost"] == 0 and figures["repeated"] == 0, exactly_once(figures)
    stop_all(hosts)


def test_rolling_restart_in_place(fleet, bootstrap, capsys):
    # Static membership: a host stopped (SIGTERM) and started again at once with the same
    # K2S_INSTANCE_ID gets its own partitions back, and the others see no rebalance at all.
    hosts, split, stable_since = three_hosts_split(fleet)
    produced = numbered_jobs(60_000, keys=KEYS)
    waves = Waves(bootstrap, fleet.topic, produced)
    wait_for(lambda: all(h.handled() > 1_000 for h in hosts), 60, "every host to push jobs")
    gaps, stops = {}, []
    for host in hosts:
        others = [h for h in hosts if h is not host]
        before = {h.name: len(h.events()) for h in others}
        stops.append(time.time())
        host.bridge.proc.send_signal(signal.SIGTERM)
        try:
            code = host.bridge.proc.wait(30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{host.name} ignored SIGTERM for 30s:\n{host.bridge.output()[-3000:]}")
        assert code == 0, f"{host.name} exited {code}:\n{host.bridge.output()[-3000:]}"
        host.start()
        wait_for(lambda: host.owned(), 30, f"{host.name} to get partitions again")
        gaps[host.name] = round(assignment_of(host, host.owned()) - stops[-1], 2)
        assert host.owned() == split[host.name], \
            f"{host.name} came back with {sorted(host.owned())}, not its own {sorted(split[host.name])}"
        time.sleep(1.0)
        last_back = time.time()
        new = {h.name: h.events()[before[h.name]:] for h in others}
        assert not any(new.values()), f"restarting {host.name} rebalanced the group: {new}"
    waves.join()
    settle(hosts, len(produced), 90)
    figures = count(hosts, produced)
    report(capsys, "rolling restart", figures, jobs_per_second=waves.rate(),
           sigterm_to_assigned_again_seconds=gaps)
    # The whole run through: besides each host's own stop (revoked, its partitions) and
    # start (assigned, the same ones), no coordinator logged anything after the split, even
    # a heartbeat interval (3 s) and more after the last restart.
    time.sleep(max(0.0, last_back + 4.0 - time.time()))
    for host in hosts:
        for run in range(len(host.runs)):
            for when, kind, parts in host.events(run):
                own = parts == split[host.name]
                fine = when <= stable_since or (own and (kind, run) in {("revoked", 0), ("assigned", 1)})
                assert fine, f"{host.name} (run {run}) logged {kind} {sorted(parts)} after the split"
    assert max(stops) < waves.finished, "the restarts did not all happen while the jobs flowed"
    assert figures["lost"] == 0 and figures["repeated"] == 0, exactly_once(figures)
    stop_all(hosts)


def two_hosts_busy(hosts: list[Host], bootstrap: str, topic: str) -> tuple[list, Waves]:
    """Start both hosts, and return once the jobs flow and each has had 5,000."""
    a, b = hosts
    a.start(), b.start()
    wait_split(hosts)
    produced = numbered_jobs(40_000, keys=KEYS)
    waves = Waves(bootstrap, topic, produced)
    wait_for(lambda: a.handled() > 5_000 and b.handled() > 5_000, 60, "both hosts to push jobs")
    return produced, waves


def test_host_crash_pushed_mode(fleet, bootstrap, capsys):
    # Host a's machine dies (supervisor and children SIGKILLed, its Redis kept); b takes a's
    # partitions after the session timeout and starts from the Kafka-committed offsets. In
    # the default pushed mode (K2S_COMMIT_ON=pushed) that is at least once: the jobs a pushed
    # after its last commit are pushed again by b. Nothing may be lost; repeats are reported.
    a, b = hosts = fleet("host-a", "host-b")
    produced, waves = two_hosts_busy(hosts, bootstrap, fleet.topic)
    lost_partitions = a.owned()
    killed = time.time()
    a.kill_tree()
    taken = wait_for(lambda: assignment_of(b, lost_partitions, after=killed), 60,
                     f"host b to take partitions {sorted(lost_partitions)}")
    waves.join()
    settle(hosts, len(produced), 90)
    figures = count(hosts, produced)
    report(capsys, "host crash, pushed mode", figures, jobs_per_second=waves.rate(),
           kill_to_b_assigned_seconds=round(taken - killed, 2))
    assert killed < waves.finished, "host a was killed after the last wave"
    assert figures["lost"] == 0, exactly_once(figures)
    assert b.owned() == set(range(PARTITIONS))
    stop_all([b])


@pytest.mark.parametrize("how, protocol", [("K2S_LEAVE_ON_STOP", "classic"), ("SIGUSR1", "classic"),
                                           ("SIGUSR1", "consumer")])
def test_stop_for_good_moves_partitions_within_5_seconds(fleet, bootstrap, capsys, how, protocol):
    # Host a is taken out of the fleet for good (K2S_LEAVE_ON_STOP=true and a SIGTERM, or
    # a SIGUSR1): it hands its partitions over (committing exactly what its Redis holds)
    # and leaves the group, so b takes them at once instead of after the session timeout
    # (30 s, the default; under KIP-848 the test broker's 10 s).
    a, b = hosts = fleet("host-a", "host-b", session_timeout_ms=30000, kafka_group_protocol=protocol)
    if how == "K2S_LEAVE_ON_STOP":
        a.env["K2S_LEAVE_ON_STOP"] = "true"
    produced, waves = two_hosts_busy(hosts, bootstrap, fleet.topic)
    leaving = a.owned()
    told = time.time()
    a.bridge.proc.send_signal(signal.SIGUSR1 if how == "SIGUSR1" else signal.SIGTERM)
    try:
        code = a.bridge.proc.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"host a ignored {how} for 30s:\n{a.bridge.output()[-3000:]}")
    exited = time.time()
    assert code == 0, f"host a exited {code}:\n{a.bridge.output()[-3000:]}"
    taken = wait_for(lambda: assignment_of(b, leaving, after=told), 60,
                     f"host b to take partitions {sorted(leaving)}")
    waves.join()
    settle(hosts, len(produced), 90)
    figures = count(hosts, produced)
    report(capsys, f"stop for good, {how}, {protocol} protocol", figures, jobs_per_second=waves.rate(),
           sigterm_to_exit_seconds=round(exited - told, 2), exit_to_b_assigned_seconds=round(taken - exited, 2))
    assert exited < waves.finished, "host a stopped after the last wave"
    assert taken - exited <= 5.0, f"host b took a's partitions {taken - exited:.1f}s after a exited"
    assert figures["lost"] == 0 and figures["repeated"] == 0, exactly_once(figures)
    stop_all([b])


# --- K2S_COMMIT_ON=performed ----------------------------------------------------------------------

def committed(bootstrap: str, topic: str, partitions: set[int]) -> dict[int, int]:
    """The group's committed offsets of ``partitions``, read from outside the group."""
    from confluent_kafka import Consumer, TopicPartition
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}"})
    try:
        return {tp.partition: tp.offset for tp in
                consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=15)}
    finally:
        consumer.close()


def test_host_lost_in_performed_mode_loses_no_job(fleet, bootstrap, capsys):
    # Host a's machine is lost (bridge, Sidekiq and its Redis all gone) while its Sidekiq
    # has a backlog. With K2S_COMMIT_ON=performed the offsets committed for a's partitions
    # are those of the first jobs its Sidekiq had not finished, so b and c push every one
    # of them again: each produced job is performed at least once; a job performed twice
    # has the same jid both times (origin jids), and only jobs a performed after its last
    # commit are performed twice.
    a, b, c = hosts = fleet("host-a", "host-b", "host-c", commit_on="performed", commit_interval_ms=200,
                            perform_seconds=0.003)  # some work: a backlog forms in each Redis
    for host in hosts:
        host.start()
    wait_split(hosts)
    produced = numbered_jobs(12_000, keys=KEYS)
    waves = Waves(bootstrap, fleet.topic, produced, size=500, pause=0.05)
    wait_for(lambda: len(a.performed()) > 1_000 and a.queued() > 500, 60,
             "host a's Sidekiq to perform jobs and have a backlog")
    lost_partitions, backlog = a.owned(), a.queued()
    killed = time.time()
    a.kill_tree()
    a.sidekiq.kill()
    a.redis.stop()  # the machine is gone, and its Redis with it
    at_kill = committed(bootstrap, fleet.topic, lost_partitions)  # b cannot commit them for a while
    survivors = [b, c]
    wait_split(survivors)
    taken = max(assignment_of(h, h.owned() & lost_partitions, after=killed) or killed for h in survivors)
    waves.join()
    settle(hosts, len(produced), 120)
    figures = count(hosts, produced)
    where = {args: waves.where[value] for args, (_, value) in zip(args_of(produced), produced)}
    before_commit = [job for job in figures["examples_all"] if where[job][1] < at_kill[where[job][0]]]
    report(capsys, "host lost, performed mode", figures, backlog_in_a_at_the_kill=backlog,
           kill_to_all_assigned_seconds=round(taken - killed, 2))
    assert figures["lost"] == 0, exactly_once(figures)
    assert figures["repeated_with_another_jid"] == 0, "a job performed twice with two jids"
    assert figures["repeated"], "nothing was performed twice: a's backlog was not re-pushed (is the scenario real?)"
    assert not before_commit, f"{len(before_commit)} jobs below a's committed offsets performed twice"
    stop_all(survivors)


# --- KIP-848: the consumer group protocol ---------------------------------------------------------

def test_kip848_handover_and_a_coordinator_killed(fleet, bootstrap, capsys):
    # K2S_KAFKA_GROUP_PROTOCOL=consumer: the broker assigns (incrementally) and owns the
    # session timeout. Host b joins mid-stream: a hands partitions over exactly, as under
    # the classic protocol. Then a's coordinator is SIGKILLed: its successor is refused
    # (UNRELEASED_INSTANCE_ID) until the dead member's session expires, and must neither
    # crash-loop nor make a's supervisor give up; a's workers stop reading meanwhile.
    a, b = hosts = fleet("host-a", "host-b", kafka_group_protocol="consumer")
    a.start()
    wait_for(lambda: a.owned() == set(range(PARTITIONS)), 60, "host a to own every partition")
    produced = numbered_jobs(60_000, keys=KEYS)
    waves = Waves(bootstrap, fleet.topic, produced, size=300, pause=0.03)
    wait_for(lambda: a.handled() > 5_000, 60, "host a to push jobs")
    joined = time.time()
    b.start()
    wait_split(hosts)
    handover = [(when, kind, sorted(p)) for when, kind, p in a.events() if when >= joined]
    figures = count(hosts, produced[:waves.sent])  # what had been produced when the split was done
    assert figures["repeated"] == 0, "handover under KIP-848: " + exactly_once(figures)
    pid = int(re.findall(r"started coordinator \(pid (\d+)\)", a.bridge.output())[-1])
    killed = time.time()
    psutil.Process(pid).kill()
    waves.join()  # the last wave arrives while host a has no coordinator
    back = wait_for(lambda: [when for when, kind, _ in a.events() if kind == "assigned" and when > killed], 60,
                    "a new coordinator of host a to join the group")[0]
    settle(hosts, len(produced), 90)
    figures = count(hosts, produced)
    out = a.bridge.output()
    refused = len(re.findall(r"coordinator \(pid \d+\) died: exit 75", out))
    report(capsys, "KIP-848", figures, handover=handover, kill_to_rejoined_seconds=round(back - killed, 2),
           successors_refused=refused)
    assert a.bridge.proc.poll() is None, f"host a's supervisor exited:\n{out[-3000:]}"
    assert "giving up" not in out and "Traceback" not in out, out[-3000:]
    assert killed < waves.finished, "the coordinator was killed after the last wave"
    assert figures["lost"] == 0, exactly_once(figures)
    stop_all(hosts)
