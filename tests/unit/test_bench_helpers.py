"""The benchmarks' compiled helper reads confluent-kafka Messages where the encoder says
their fields are: the strict ceiling LPUSHes exactly the values of the messages without
an error, and the latency floor ages each by its own timestamp."""

import struct

from confluent_kafka import KafkaError, Message

from bench import compiled


def test_values_and_ages_read_each_message_in_place():
    helper = compiled.load()
    kind, at = compiled.message_fields()
    messages = [Message(topic="t", value=b"first", partition=3, offset=7, timestamp=(1, 1_700_000_000_100)),
                Message(topic="t", value=b"broken", error=KafkaError(KafkaError._PARTITION_EOF),
                        timestamp=(1, 5)),
                Message(topic="t", value=None, timestamp=(1, 1_700_000_000_150)),
                Message(topic="t", value=b"last", timestamp=(1, 1_700_000_000_200))]

    assert helper.values(messages, kind, at["value"], at["error"]) == [b"first", b"last"]
    ages = helper.ages(messages, kind, at["timestamp"], at["error"], 1_700_000_000_250.0)
    assert struct.unpack(f"{len(ages) // 8}d", ages) == (1_700_000_000_100.0, 150.0, 1_700_000_000_150.0, 100.0,
                                                        1_700_000_000_200.0, 50.0)


def test_anything_but_a_message_is_refused():
    import pytest

    helper = compiled.load()
    kind, at = compiled.message_fields()
    with pytest.raises(TypeError, match="expected"):
        helper.values([b"not a message"], kind, at["value"], at["error"])
