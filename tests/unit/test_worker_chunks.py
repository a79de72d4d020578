"""Bytes in flight: a consumed batch is pushed in chunks of at most batch_max_bytes."""

from kafka2sidekiq.worker import chunks, ranges_of


class Msg:
    def __init__(self, size):
        self._value = b"x" * size

    def value(self):
        return self._value


def sizes(messages, limit):
    return [[len(m.value()) for m in c] for c in chunks(messages, limit)]


def test_chunks_respect_the_byte_bound_and_keep_order():
    assert sizes([Msg(4), Msg(4), Msg(4), Msg(4)], 8) == [[4, 4], [4, 4]]
    assert sizes([Msg(4), Msg(5), Msg(3)], 8) == [[4], [5, 3]]


def test_a_message_above_the_bound_travels_alone():
    assert sizes([Msg(2), Msg(20), Msg(2)], 8) == [[2], [20], [2]]


def test_nothing_in_nothing_out():
    assert sizes([], 8) == []


def test_ranges_per_partition():
    items = [(b"", 0, 3, 10), (b"", 0, 1, 5), (b"", 0, 3, 11), (b"", 0, 3, 13)]
    assert [(r.partition, r.first, r.next) for r in ranges_of(items)] == [(3, 10, 14), (1, 5, 6)]
