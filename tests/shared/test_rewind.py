"""``RewindOnNewLog``: group-less consumers read a restarted broker's new log from its start, and a
consumer assigned its partitions again after the rewind (which restarts it at its reset point) is
rewound too, for a while; one that holds no partition gets its metadata refreshed; and the two
``compat`` helpers on a real aiokafka consumer."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared import compat, topics
from shared.bus.rewind import REASSIGNMENT_WATCH_S, RewindOnNewLog

TP = TopicPartition(topics.FEATURES, 0)


class _Assignment:
    """Stands for aiokafka's ``Assignment``: a new object per assignment."""


class _Consumer:
    """The parts of an ``AIOKafkaConsumer`` the rewind and the readiness check use."""

    def __init__(self) -> None:
        self.seeks = 0
        self.partitions: set[TopicPartition] = {TP}
        self.refreshes = 0
        self._subscription = type("State", (), {})()
        self._client = self  # aiokafka's client: force_metadata_update
        self.reassign()

    def force_metadata_update(self) -> None:
        self.refreshes += 1

    def reassign(self) -> None:
        self._subscription.subscription = type("Subscription", (), {"assignment": _Assignment()})()

    def assignment(self) -> set[TopicPartition]:
        return self.partitions

    def subscription(self) -> set[str]:
        return {TP.topic}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    async def position(self, tp: TopicPartition) -> int:
        return 0

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.seeks += 1


class _Subscriber:
    def __init__(self) -> None:
        self.consumer = _Consumer()


class _Epoch:
    def __init__(self) -> None:
        self.value = "a"
        self.last: str | None = "a"

    async def current(self) -> str:
        return self.value


async def test_a_new_log_rewinds_and_a_reassignment_after_it_is_rewound_too_while_watched():
    now = [0.0]
    subscriber, epoch = _Subscriber(), _Epoch()
    rewind = RewindOnNewLog([subscriber], epoch, clock=lambda: now[0])
    consumer = subscriber.consumer
    assert not await rewind.check() and consumer.seeks == 0  # the first epoch read: nothing to do
    epoch.value = "b"
    assert await rewind.check() and consumer.seeks == 1
    assert not await rewind.check() and consumer.seeks == 1  # same assignment: nothing more
    # Its metadata caught up with the new log: assigned again, so back at its reset point.
    consumer.reassign()
    now[0] += REASSIGNMENT_WATCH_S / 2
    assert await rewind.check() and consumer.seeks == 2
    assert not await rewind.check() and consumer.seeks == 2
    # Long after the rewind, a new assignment is an ordinary one (e.g. a partition added).
    now[0] += REASSIGNMENT_WATCH_S
    consumer.reassign()
    assert not await rewind.check() and consumer.seeks == 2


async def test_while_a_consumer_holds_no_partition_its_metadata_is_refreshed_once_per_interval():
    now = [0.0]
    subscriber, epoch = _Subscriber(), _Epoch()
    rewind = RewindOnNewLog([subscriber], epoch, interval_s=1.0, clock=lambda: now[0])
    consumer = subscriber.consumer
    await rewind.check()
    epoch.value = "b"
    consumer.partitions = set()  # its metadata saw the topic missing from the new log
    assert not await rewind.check() and consumer.refreshes == 1
    now[0] += 0.5
    assert not await rewind.check() and consumer.refreshes == 1
    now[0] += 0.5
    assert not await rewind.check() and consumer.refreshes == 2
    consumer.partitions = {TP}  # the refresh brought them back
    assert await rewind.check() and consumer.seeks == 1


async def test_current_assignment_is_the_real_consumers_and_a_new_object_per_assignment(infra_env):
    _, _, settings = infra_env
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_servers, client_id=f"rewind-{uuid.uuid4().hex[:6]}")
    await consumer.start()
    try:
        consumer.subscribe([topics.FEATURES])
        for _ in range(100):
            if consumer.assignment():
                break
            await consumer.getmany(timeout_ms=50)
        assert compat.refresh_metadata(consumer)  # the real client takes the request
        first = compat.current_assignment(consumer)
        assert first is not None and set(first.tps) == consumer.assignment() != set()
        consumer.unsubscribe()
        consumer.subscribe([topics.FEATURES])
        for _ in range(100):
            if compat.current_assignment(consumer) not in (None, first) and consumer.assignment():
                break
            await asyncio.sleep(0.05)
            await consumer.getmany(timeout_ms=50)
        assert compat.current_assignment(consumer) is not first
    finally:
        await consumer.stop()
