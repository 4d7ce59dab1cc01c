"""The broker epoch and the offsets behind ingest receipts, on real embedded brokers: readers of a new
log agree on one epoch, a restarted broker (a new, empty log) has a new one, and the bulk publisher
reports the offsets Kafka gave each partition's records."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry

from shared.bus.broker import create_broker, ensure_topics
from shared.bus.epoch import BrokerEpoch, EpochUnavailable
from shared.bus.publish import BulkPublisher
from shared.events import MarketTick, tick_event_id
from shared.topics import BROKER_EPOCH, PARTITIONS
from tests.conftest import PORT_OFFSET
from tests.support import OwnBroker

#: A broker of this module's own (beside the session's), so that it can be restarted.
PORT = 9092 + PORT_OFFSET + 1500


@pytest.fixture
def own_broker(tmp_path: Path):
    broker = OwnBroker(PORT, tmp_path / "kafka.log")
    yield broker
    broker.stop()


async def settled(reader: BrokerEpoch) -> str:
    """The epoch, once the restarted broker answers (its first requests may find it not ready)."""
    for _ in range(20):
        with contextlib.suppress(EpochUnavailable):
            return await reader.current()
        await asyncio.sleep(0.25)
    return await reader.current()


async def test_readers_of_a_new_log_agree_and_a_restarted_broker_has_a_new_epoch(own_broker):
    await ensure_topics(own_broker.servers)
    readers = [BrokerEpoch(own_broker.servers, f"reader-{i}", timeout_s=2) for i in range(4)]
    try:
        first = await asyncio.gather(*(r.current() for r in readers))  # racing on an empty log
        assert len(set(first)) == 1 and all(r.last == first[0] for r in readers)
        assert await readers[0].current() == first[0]  # stable while the broker lives

        await asyncio.to_thread(own_broker.restart)
        await ensure_topics(own_broker.servers)  # what the supervisor does after starting a broker
        assert readers[0].last == first[0]  # the last value read stays until a read succeeds
        second = await asyncio.gather(*(settled(r) for r in readers))
        assert len(set(second)) == 1 and second[0] != first[0]

        await asyncio.to_thread(own_broker.stop)
        with pytest.raises(EpochUnavailable):  # no broker: no answer rather than a guess
            await readers[0].current()
        assert readers[0].last == second[0]
    finally:
        for reader in readers:
            await reader.close()


async def test_no_reader_creates_the_epoch_topic_of_a_restarted_broker_before_the_supervisor_does(own_broker):
    """A restarted broker has no topics; readers asking it meanwhile must not create them (Tansu
    would, with 4 partitions and none of our configs, and a produce racing the supervisor's own
    creation was refused for ever). They get no epoch until the topics exist, then agree."""
    readers = [BrokerEpoch(own_broker.servers, f"early-{i}", timeout_s=1) for i in range(3)]
    admin = AIOKafkaAdminClient(bootstrap_servers=own_broker.servers)
    await admin.start()
    try:
        for reader in readers:
            with pytest.raises(EpochUnavailable):
                await reader.current()
        assert BROKER_EPOCH not in await admin.list_topics()

        assert BROKER_EPOCH in await ensure_topics(own_broker.servers)
        epochs = await asyncio.gather(*(settled(r) for r in readers))
        assert len(set(epochs)) == 1
        (described,) = await admin.describe_topics([BROKER_EPOCH])
        assert len(described["partitions"]) == PARTITIONS[BROKER_EPOCH]
    finally:
        await admin.close()
        for reader in readers:
            await reader.close()


async def test_the_bulk_publisher_returns_the_last_offset_written_per_partition(infra_env):
    _, _, settings = infra_env
    broker = create_broker("test-receipts", settings.kafka_servers, CollectorRegistry())  # as services have it
    await broker.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_servers)
    await consumer.start()
    try:
        publisher = BulkPublisher(broker, MarketTick)
        events = [
            MarketTick(
                event_id=tick_event_id(symbol, i, Decimal("1.1"), Decimal("1.2"), None, Decimal(0), 0),
                ts_event=i * 1_000_000,
                ts_init=1,
                symbol=symbol,
                bid=Decimal("1.1"),
                ask=Decimal("1.2"),
            )
            for symbol in ("TSTRCPA", "TSTRCPB", "TSTRCPC")
            for i in range(450)
        ]
        offsets = await publisher.publish(events)  # 450 per symbol: more than one produce request each
        # Read back (Tansu's ListOffsets reports a batch's base offset + 1 as the end, so the end
        # offsets cannot be asked): the last offset holding one of these events, per partition.
        keys = {e.symbol.encode() for e in events}
        partitions = [TopicPartition(MarketTick.TOPIC, p) for p in offsets]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)
        last: dict[int, int] = {}
        seen = 0
        while seen < len(events):
            batches = await consumer.getmany(timeout_ms=2000)
            assert batches, f"only {seen} of {len(events)} events read back"
            for tp, records in batches.items():
                for record in records:
                    if record.key in keys:
                        seen += 1
                        last[tp.partition] = record.offset
        assert offsets == last
        assert await publisher.publish_encoded([]) == {}
    finally:
        await consumer.stop()
        await broker.stop()
