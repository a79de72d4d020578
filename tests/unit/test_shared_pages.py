"""The pages the supervisor shares with its children are never read half-written: a
forked child writes as fast as it can while the parent reads, and every value the parent
sees is one the child wrote. Against ``struct.pack_into`` (which clears the bytes before
writing them) the heartbeat reads 0.0 thousands of times in a run like this one."""

import os
import signal
import time

from kafka2sidekiq.channel import Heartbeats
from kafka2sidekiq.limiter import Page

READS = 10_000_000
SECONDS = 60  # a bound, never reached on a working build


def _writer(write) -> int:
    """Fork a child that calls ``write()`` until it is killed; returns its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            while True:
                write()
        finally:
            os._exit(0)
    return pid


def _stop(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_heartbeat_reads_are_never_torn():
    beats = Heartbeats()
    beats.beat(3)
    floor = beats.last(3)
    pid = _writer(lambda: beats.beat(3))
    torn, reads, last = 0, 0, floor
    deadline = time.monotonic() + SECONDS
    try:
        while reads < READS and time.monotonic() < deadline:
            for _ in range(100_000):
                value = beats.last(3)
                # a stamp the child wrote: not before the first one, never going back
                if value < last:
                    torn += 1
                last = value
            reads += 100_000
    finally:
        _stop(pid)
    assert reads >= READS, f"only {reads} reads in {SECONDS}s"
    assert torn == 0, f"{torn} of {reads} heartbeat reads were torn"
    assert last > floor, "the writer never wrote: the test saw nothing"


def test_limiter_verdicts_are_read_whole():
    """Every field of a verdict comes from the same publish: the writer alternates two
    verdicts whose fields differ in every position. A reader that cannot get a whole
    verdict in READ_ATTEMPTS tries reads a stale pause (stamp 0): allowed, but rare even
    against this writer, which publishes every 20 us (the real one: every 200 ms)."""
    page = Page()
    page.publish(False, 1000.0, 1)
    state = [0]

    def publish():
        state[0] ^= 1
        if state[0]:
            page.publish(True, 6000.0, 3)   # share 2000.0
        else:
            page.publish(False, 1000.0, 1)  # share 1000.0
        until = time.perf_counter() + 20e-6  # a breath, so that readers are not starved
        while time.perf_counter() < until:
            pass

    pid = _writer(publish)
    mixed, reads, paused_seen, gave_up = 0, 0, 0, 0
    deadline = time.monotonic() + SECONDS
    try:
        while reads < READS // 4 and time.monotonic() < deadline:
            for _ in range(10_000):
                stamp, paused, share = page.verdict()
                if (stamp, paused, share) == (0.0, True, 0.0):
                    gave_up += 1
                elif (paused, share) not in ((True, 2000.0), (False, 1000.0)):
                    mixed += 1
                paused_seen += paused
            reads += 10_000
    finally:
        _stop(pid)
    assert reads >= READS // 4, f"only {reads} reads in {SECONDS}s"
    assert mixed == 0, f"{mixed} of {reads} verdicts mixed two publishes"
    assert gave_up < reads // 100, f"{gave_up} of {reads} reads found no whole verdict"
    assert 0 < paused_seen - gave_up < reads, "the writer's two verdicts were not both seen"
