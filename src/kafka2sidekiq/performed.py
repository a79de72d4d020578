"""K2S_COMMIT_ON=performed: commit, per partition, the lowest offset whose job Sidekiq
has not finished, so that a host that dies loses no job waiting in its Redis: the next
owner starts there and pushes those jobs again (with the same origin jids).

Sidekiq's side is kafka2sidekiq_performed.rb (src/kafka2sidekiq/ruby/, installed with the package), a server middleware that RPUSHes the
offset of each finished bridged job to ``k2s:performed:<topic>:<partition>``. A worker
takes those lists (LRANGE + DEL in one transaction) about once a commit interval and
keeps, per partition it reads, a window of one byte per offset from the last offset
known finished: 1 while that offset's job waits for Sidekiq, 0 once finished or when
it never was a job (a dead letter, an offset the topic does not hold). The offset to
commit is the first 1; a job no acknowledgement came for within ``hold_seconds`` counts
as finished (and is counted in ``expired``), so nothing holds a partition back longer.
"""

from __future__ import annotations

import time
from collections import deque

ACK_PREFIX = "k2s:performed"
PENDING = b"\x01"


def ack_key(prefix: str, topic: str, partition: int) -> str:
    """``prefix``: the namespace's, as Sink.prefix has it ("" or "<namespace>:")."""
    return f"{prefix}{ACK_PREFIX}:{topic}:{partition}"


class Window:
    """One partition: offsets ``base`` .. ``base + len(flags)`` pushed, which still wait."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.flags = bytearray()
        self.pushes: deque[tuple[float, int]] = deque()  # (when, end offset) of each push

    @property
    def end(self) -> int:
        return self.base + len(self.flags)

    def pending(self, first: int, after: int, now: float) -> None:
        """Offsets first .. after all wait for Sidekiq (the caller clears the non-jobs)."""
        if after <= self.end:
            return
        if first > self.end:  # offsets the topic does not hold: nothing to wait for
            self.flags += bytes(first - self.end)
        self.flags += PENDING * (after - max(first, self.end))
        if self.pushes and now - self.pushes[-1][0] < 1.0:  # one entry per second at most
            self.pushes[-1] = (self.pushes[-1][0], after)
        else:
            self.pushes.append((now, after))

    def finished(self, offset: int) -> None:
        i = offset - self.base
        if 0 <= i < len(self.flags):
            self.flags[i] = 0

    def expire(self, before: float) -> int:
        """Offsets pushed before ``before`` and still waiting count as finished; how many."""
        expired = 0
        while self.pushes and self.pushes[0][0] < before:
            upto = self.pushes.popleft()[1] - self.base
            if upto > 0:
                expired += self.flags.count(PENDING, 0, upto)
                self.flags[:upto] = bytes(min(upto, len(self.flags)))
        return expired

    def advance(self) -> int:
        """Drop the finished head; return the new base (the offset to commit)."""
        i = self.flags.find(PENDING)
        i = len(self.flags) if i < 0 else i
        if i:
            del self.flags[:i]
            self.base += i
        while self.pushes and self.pushes[0][1] <= self.base:
            self.pushes.popleft()
        return self.base


class Performed:
    """The windows of one worker's partitions, and the acknowledgements it takes in."""

    def __init__(self, client, prefix: str, topic: str, hold_seconds: float) -> None:
        self.client, self.prefix, self.topic = client, prefix, topic
        self.hold = hold_seconds
        self.windows: dict[int, Window] = {}
        self.expired = 0
        self.reported: dict[int, int] = {}

    def start(self, partition: int, committed: int, position: int, now: float | None = None) -> None:
        """A partition taken on at ``position``; jobs from ``committed`` up to it were pushed
        before (by this host) and may still wait: they count as pushed now."""
        window = self.windows[partition] = Window(committed if 0 <= committed < position else position)
        window.pending(window.base, position, time.monotonic() if now is None else now)

    def drop(self, partition: int) -> None:
        self.windows.pop(partition, None)
        self.reported.pop(partition, None)

    def pushed(self, messages, start: int, end: int, ranges, rejected: list[int], errors: int,
               now: float | None = None) -> None:
        """A batch is in Redis: ``messages[start:end]`` covering ``ranges`` (partition, first,
        next), ``rejected`` the indexes that went to the dead letters."""
        now = time.monotonic() if now is None else now
        covered = 0
        for r in ranges:
            self.windows[r.partition].pending(r.first, r.next, now)
            covered += r.next - r.first
        if covered != end - start - errors:  # gaps among the offsets: clear each one that is no message
            held = {}
            for m in messages[start:end]:
                if m.error() is None:
                    held.setdefault(m.partition(), set()).add(m.offset())
            for r in ranges:
                window, have = self.windows[r.partition], held.get(r.partition, ())
                for offset in range(r.first, r.next):
                    if offset not in have:
                        window.finished(offset)
        for i in rejected:
            self.windows[messages[i].partition()].finished(messages[i].offset())

    def skipped(self, partition: int, upto: int, now: float | None = None) -> None:
        """Redis had this partition up to ``upto`` already (pushed by an earlier reader):
        those jobs may wait too."""
        window = self.windows[partition]
        window.pending(window.end, upto, time.monotonic() if now is None else now)

    def collect(self, now: float | None = None) -> dict[int, int]:
        """Take in Sidekiq's acknowledgements; the offsets to commit that moved."""
        now = time.monotonic() if now is None else now
        partitions = list(self.windows)
        if not partitions:
            return {}
        pipe = self.client.pipeline(transaction=True)
        for p in partitions:
            key = ack_key(self.prefix, self.topic, p)
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
        replies = pipe.execute()
        moved = {}
        for p, acks in zip(partitions, replies[::2]):
            window = self.windows[p]
            for offset in acks:
                window.finished(int(offset))
            self.expired += window.expire(now - self.hold)
            frontier = window.advance()
            if self.reported.get(p) != frontier:
                self.reported[p] = moved[p] = frontier
        return moved
