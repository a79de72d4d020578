"""The process protocol: every kind round-trips through a real socket pair as itself,
and a malformed message is refused rather than half-read."""

import typing

import msgspec
import pytest

from kafka2sidekiq import channel
from kafka2sidekiq.channel import (Applied, Assign, Assigned, Booted, Commit, Fatal, Leave, Offsets, Quiet, Revoked,
                                   RevokeDone, Stats, Watermarks)

EXAMPLES = [Booted(), Fatal("cannot reach Redis at redis://127.0.0.1:1/0"), Offsets({0: 12, 7: 2**40}), Offsets({}, pushed={3: 4}),
            Stats({"pushed": {"default": 3}, "position": {"1": 4}}), Assigned([0, 1, 2]), Revoked([2]),
            Watermarks(high={0: 40, 3: 7}, committed={0: 12}), Watermarks(error="timed out"),
            Revoked([5], lost=True), Applied(3, {2: 17}), Assign([0, 2], generation=3, quiet=True), Quiet(),
            Commit({3: 9}, now=True), Leave(), RevokeDone({2: 17})]


def test_every_kind_is_declared_and_has_an_example():
    assert {type(m) for m in EXAMPLES} == set(typing.get_args(channel.Message))


def test_every_kind_round_trips_through_a_socket_pair():
    a, b = channel.pair()
    with a, b:
        for m in EXAMPLES:
            assert channel.send(a, m)
        assert channel.receive(b, 1.0) == EXAMPLES
        assert isinstance(channel.receive(b), list) and channel.receive(b) == []


def test_offsets_keep_integer_partitions():
    a, b = channel.pair()
    with a, b:
        channel.send(a, Offsets({5: 100}))
        (got,) = channel.receive(b, 1.0)
    assert got.offsets == {5: 100} and all(type(p) is int for p in got.offsets)


def test_a_message_of_no_known_kind_is_refused():
    a, b = channel.pair()
    with a, b:
        a.send(msgspec.msgpack.encode({"kind": "commit_now", "offsets": {}}))
        with pytest.raises(msgspec.ValidationError):
            channel.receive(b, 1.0)


def test_send_to_a_closed_peer_says_so():
    a, b = channel.pair()
    b.close()
    with a:
        assert channel.send(a, Quiet()) is False


def test_last_words_of_a_peer_that_left_our_messages_unread_are_received():
    # A worker that dies at boot, before reading the plan the supervisor sent it: Linux
    # reports ECONNRESET on the first read, and the worker's Fatal is still queued behind it.
    parent, child = channel.pair()
    assert channel.send(parent, Quiet())  # never read by the child
    assert channel.send(child, Fatal("Redis refused the credentials"))
    child.close()
    assert channel.receive(parent) == [Fatal("Redis refused the credentials")]
    parent.close()
