"""How the supervisor and its children talk.

Messages: one message-framed Unix socket pair per child (SOCK_SEQPACKET: one datagram
per message, in order). Every kind of message is declared below once, as a tagged
msgspec Struct, and travels as MessagePack; receivers dispatch on the type, so a kind
that nobody handles, or a field that is misspelled, fails in a unit test rather than
being a dict key that is silently never read.

Heartbeats: a shared page with one monotonic timestamp per slot, which a child stamps
from its loop without a system call and the supervisor reads to tell a stuck child from
a busy one. Each stamp is one aligned 8-byte store and each reading one aligned 8-byte
load (memoryview items, not ``struct.pack_into``, which clears the bytes before it
writes them: a reader caught in between saw 0.0 and the supervisor killed a healthy
worker). An aligned 8-byte access is single-copy atomic on x86-64 and arm64, so a
reader sees the old stamp or the new one, never a mix; tests/unit/test_shared_pages.py
checks this with tens of millions of reads against a writer that never stops.
"""

from __future__ import annotations

import mmap
import select
import socket
import time
from typing import Any, Union

import msgspec

MAX_SLOTS = 512


class _Message(msgspec.Struct, frozen=True, tag_field="kind"):
    pass


# --- from a child to the supervisor ---------------------------------------------------------

class Booted(_Message, tag="booted"):
    """A worker reached Redis and Kafka; the coordinator joined the group."""


class Fatal(_Message, tag="fatal"):
    """Why the child is about to exit without having done its job."""
    reason: str


class Offsets(_Message, tag="offsets"):
    """Worker: offsets to commit; ``pushed``: where Redis has each partition up to, when
    that is not the same (K2S_COMMIT_ON=performed commits less: what Sidekiq finished)."""
    offsets: dict[int, int]
    pushed: Union[dict[int, int], None] = None


class Stats(_Message, tag="stats"):
    """Worker: its cumulative counters (metrics.WorkerStats.snapshot())."""
    stats: dict[str, Any]


class Assigned(_Message, tag="assigned"):
    """Coordinator: every partition Kafka has given this host, after an assignment."""
    partitions: list[int]


class Watermarks(_Message, tag="watermarks"):
    """Coordinator, every few seconds: the broker's end offset (``high``) and the group's
    committed offset (``committed``, absent when none) of each partition this host owns;
    or, when the broker did not answer, ``error``."""
    high: dict[int, int] = {}
    committed: dict[int, int] = {}
    error: str = ""


class Revoked(_Message, tag="revoked"):
    """Coordinator: partitions taken away; unless ``lost`` (the session expired: another
    host may own them already), it waits for RevokeDone before letting go."""
    partitions: list[int]
    lost: bool = False


class Applied(_Message, tag="applied"):
    """Worker: it reads the partitions of plan ``generation`` now, and no longer reads
    the ones it dropped; ``released`` is where it stopped in each of those (the next
    offset, all before it in Redis)."""
    generation: int
    released: dict[int, int]


# --- from the supervisor to a child ---------------------------------------------------------

class Assign(_Message, tag="assign"):
    """To a worker: read exactly these partitions (plan ``generation``; answer Applied)."""
    partitions: list[int]
    generation: int = 0
    quiet: bool = False


class Quiet(_Message, tag="quiet"):
    """To a worker: stop fetching (TSTP); it keeps its partitions."""


class Commit(_Message, tag="commit"):
    """To the coordinator: offsets to commit; at once when ``now``, else with the next."""
    offsets: dict[int, int]
    now: bool = False


class Leave(_Message, tag="leave"):
    """To the coordinator: this host is leaving for good; leave the group at shutdown."""


class RevokeDone(_Message, tag="revoke_done"):
    """To the coordinator: the workers have let the revoked partitions go; ``offsets``
    is the last of what they had in Redis, to commit before the partitions are released."""
    offsets: dict[int, int]


Message = Union[Booted, Fatal, Offsets, Stats, Assigned, Watermarks, Revoked, Applied, Assign, Quiet, Commit,
                Leave, RevokeDone]
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Message).decode


def pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, message: Message) -> bool:
    """Send without blocking; False when the other side is gone or not reading."""
    try:
        sock.send(_encode(message), socket.MSG_DONTWAIT)
        return True
    except OSError:  # would block, or the other side is gone
        return False


def receive(sock: socket.socket, wait: float = 0.0) -> list[Message]:
    """Every message waiting (after up to ``wait`` seconds for the first); [] on EOF."""
    out, reset = [], False
    if wait and not select.select([sock], [], [], wait)[0]:
        return out
    while True:
        try:
            data = sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except ConnectionResetError:
            # The other side closed with messages of ours unread (a worker that died at boot
            # before reading its plan). Linux reports that once, before the messages it sent
            # us, which are still queued: its last words (a Fatal) come with the next recv.
            if reset:
                return out
            reset = True
            continue
        except OSError:  # nothing more waiting, or the other side is gone
            return out
        if not data:
            return out
        out.append(_decode(data))


class Heartbeats:
    """Created by the supervisor before it forks: the page is shared with every child."""

    def __init__(self) -> None:
        self._page = mmap.mmap(-1, 8 * MAX_SLOTS)
        self._stamps = memoryview(self._page).cast("d")

    def beat(self, slot: int) -> None:
        self._stamps[slot] = time.monotonic()

    def last(self, slot: int) -> float:
        return self._stamps[slot]
