"""Reading the group's committed offsets: a busy coordinator is asked again."""

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from kafka2sidekiq.source import committed_offsets


class Consumer:
    def __init__(self, *answers):
        self.answers, self.calls = list(answers), 0

    def committed(self, tps, timeout):
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, KafkaError):
            raise KafkaException(answer)
        return [TopicPartition(tp.topic, tp.partition, answer.get(tp.partition, -1001)) for tp in tps]


def test_a_coordinator_that_is_not_ready_yet_is_asked_again():
    consumer = Consumer(KafkaError(KafkaError.NOT_COORDINATOR), KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS),
                        {0: 42})
    assert committed_offsets(consumer, "t", [0, 1], timeout=10) == {0: 42, 1: -1001}
    assert consumer.calls == 3


def test_other_errors_and_a_coordinator_busy_past_the_timeout_are_raised():
    with pytest.raises(KafkaException, match="GROUP_AUTHORIZATION_FAILED|[Aa]uthoriz"):
        committed_offsets(Consumer(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED)), "t", [0], timeout=10)
    busy = Consumer(*[KafkaError(KafkaError.NOT_COORDINATOR)] * 3)
    with pytest.raises(KafkaException):
        committed_offsets(busy, "t", [0], timeout=0.3)
    assert busy.calls >= 2
