"""The coordinator's end-offset questions (coordinator.EndOffsets), against a fake admin
client: a failed answer is reported, and the next question goes to a new client."""

from concurrent.futures import Future

from confluent_kafka import KafkaError, KafkaException

from kafka2sidekiq.coordinator import WATERMARK_SECONDS, EndOffsets


def done(value=None, error=None) -> Future:
    f = Future()
    f.set_exception(error) if error else f.set_result(value)
    return f


class Answer:
    def __init__(self, offset):
        self.offset = offset


class Group:
    def __init__(self, committed: dict[int, int]):
        from confluent_kafka import TopicPartition
        self.topic_partitions = [TopicPartition("jobs", p, o) for p, o in committed.items()]


class FakeAdmin:
    """Answers every question with ``error`` (a broker that keeps refusing it) or offsets."""

    def __init__(self, error: KafkaError | None):
        self.error, self.asked = error, 0

    def poll(self, timeout):
        return 0

    def list_offsets(self, tps, **_):
        self.asked += 1
        if self.error:
            return {tp: done(error=KafkaException(self.error)) for tp in tps}
        return {tp: done(Answer(100 + tp.partition)) for tp in tps}

    def list_consumer_group_offsets(self, requests, **_):
        return {requests[0].group_id: done(Group({0: 90}))}


def test_a_failed_answer_makes_the_next_question_go_to_a_new_admin_client():
    # librdkafka's admin ListOffsets does not refresh its metadata on FENCED_LEADER_EPOCH:
    # after a broker restart the same client failed every question for minutes
    made = [FakeAdmin(KafkaError(KafkaError.FENCED_LEADER_EPOCH)), FakeAdmin(None)]
    clients = iter(made)
    offsets = EndOffsets(lambda: next(clients), "jobs", "group")
    now = 0.0
    assert offsets.poll({0, 1}, now) is None  # asked
    failed = offsets.poll({0, 1}, now)
    assert "FENCED_LEADER_EPOCH" in failed.error and failed.high == {}
    now += WATERMARK_SECONDS
    assert offsets.poll({0, 1}, now) is None  # asked again: the new client
    answer = offsets.poll({0, 1}, now)
    assert (answer.error, answer.high, answer.committed) == ("", {0: 100, 1: 101}, {0: 90})
    assert [c.asked for c in made] == [1, 1]
