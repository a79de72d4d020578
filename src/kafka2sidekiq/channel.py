"""How the supervisor and its children talk: one message-framed Unix socket pair per
child for small msgspec-JSON messages, and a shared page of heartbeats (one monotonic
timestamp per slot) that a child stamps from its loop without a system call."""

from __future__ import annotations

import mmap
import select
import socket
import struct
import time

import msgspec

MAX_SLOTS = 512
_encode = msgspec.json.encode
_decode = msgspec.json.decode


def pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, message: dict) -> bool:
    """Send without blocking; False when the other side is gone or not reading."""
    try:
        sock.send(_encode(message), socket.MSG_DONTWAIT)
        return True
    except OSError:  # would block, or the other side is gone
        return False


def receive(sock: socket.socket, wait: float = 0.0) -> list[dict]:
    """Every message waiting (after up to ``wait`` seconds for the first); [] on EOF."""
    out = []
    if wait and not select.select([sock], [], [], wait)[0]:
        return out
    while True:
        try:
            data = sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except OSError:  # nothing more waiting, or the other side is gone
            return out
        if not data:
            return out
        out.append(_decode(data))


class Heartbeats:
    """Created by the supervisor before it forks: the page is shared with every child."""

    def __init__(self) -> None:
        self._page = mmap.mmap(-1, 8 * MAX_SLOTS)

    def beat(self, slot: int) -> None:
        struct.pack_into("d", self._page, 8 * slot, time.monotonic())

    def last(self, slot: int) -> float:
        return struct.unpack_from("d", self._page, 8 * slot)[0]
