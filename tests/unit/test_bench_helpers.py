"""The benchmarks' compiled helper reads confluent-kafka Messages where the encoder says
their fields are: the strict ceiling LPUSHes exactly the values of the messages without
an error, and the latency floor ages each by its own timestamp; and it reads the two times
of a Sidekiq payload, as the latency benchmark does for ours."""

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


def test_stamps_reads_both_times_of_each_payload():
    import pytest

    helper = compiled.load()
    payloads = [b'{"retry":true,"queue":"default","class":"A","args":[],"jid":"j",'
                b'"created_at":1700000000.1,"enqueued_at":1700000000.25}',
                b'{"created_at":1700000000.5,"enqueued_at":1700000000.5,"class":"B"}']
    ages, encoded = helper.stamps(payloads, 1_700_000_001_000.0)
    assert struct.unpack("4d", ages) == pytest.approx((1_700_000_000_100, 900, 1_700_000_000_500, 500))
    assert struct.unpack("4d", encoded) == pytest.approx((1_700_000_000_100, 150, 1_700_000_000_500, 0))
    with pytest.raises(ValueError, match="created_at"):
        helper.stamps([b'{"class":"A"}'], 0.0)
