"""A bulk publish gives up within ``KAFKA_PUBLISH_TIMEOUT_S``, and that is shorter than the gateway's
upstream timeout: a request the gateway abandoned (504) does not go on publishing behind the retry."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from services.api_gateway.service import SERVICE as GATEWAY
from services.api_gateway.settings import GatewaySettings
from shared import topics
from shared.bus.publish import partition_for
from shared.events import MarketTick, encode_event, now_ns
from shared.kit.bus import ServiceBus
from shared.kit.contract import Contract, ContractUse
from shared.settings import PlatformSettings

SYMBOL = "TSTDEADLINE"


async def _end_offset(servers: str, partition: TopicPartition) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=servers)
    await consumer.start()
    try:
        return (await consumer.end_offsets([partition]))[partition]
    finally:
        await consumer.stop()


async def _keys_since(servers: str, partition: TopicPartition, offset: int) -> list[bytes | None]:
    """The keys of the records from ``offset`` on (other tests' ticks may share the partition)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    keys: list[bytes | None] = []
    try:
        consumer.assign([partition])
        consumer.seek(partition, offset)
        while batch := await consumer.getmany(partition, timeout_ms=1000):
            keys.extend(record.key for records in batch.values() for record in records)
    finally:
        await consumer.stop()
    return keys


async def test_a_publish_queued_past_its_timeout_fails_and_sends_nothing(infra_env) -> None:
    _, _, settings = infra_env
    use = ContractUse("data-bridge", Contract(produces=(MarketTick,)))
    bus = ServiceBus.connect(use, settings.kafka_servers, CollectorRegistry(), publish_timeout_s=0.5)
    await bus.broker.start()
    try:
        publisher = bus.publisher(MarketTick)
        tick = MarketTick(
            event_id=uuid.uuid4(), ts_event=now_ns(), ts_init=now_ns(), symbol=SYMBOL, bid=Decimal(1), ask=Decimal(2)
        )
        partition = TopicPartition(
            topics.MARKET_TICKS, partition_for(SYMBOL.encode(), topics.PARTITIONS[MarketTick.TOPIC])
        )
        before = await _end_offset(settings.kafka_servers, partition)
        # Another request's batches hold the partition: what queueing behind a slow broker looks like.
        async with publisher._partition_locks[partition.partition]:
            call = asyncio.create_task(publisher.publish_encoded([(SYMBOL.encode(), encode_event(tick))]))
            done, _ = await asyncio.wait({call}, timeout=3.0)
            if not done:
                call.cancel()
                pytest.fail("the publish was still waiting after 3 s (its timeout is 0.5 s)")
            assert isinstance(call.exception(), TimeoutError)
        await asyncio.sleep(1.0)  # the partition is free: a publish still waiting would go out now
        assert SYMBOL.encode() not in await _keys_since(settings.kafka_servers, partition, before)
    finally:
        await bus.broker.stop()


def test_the_default_publish_timeout_is_below_the_gateways_upstream_timeout() -> None:
    platform, gateway = PlatformSettings(), GatewaySettings()
    assert platform.kafka_publish_timeout_s < gateway.upstream_timeout_s
    platform.check_publish_within(gateway.upstream_timeout_s)


def test_the_gateway_refuses_a_publish_timeout_as_long_as_its_own() -> None:
    platform = PlatformSettings(kafka_publish_timeout_s=10.0)
    with pytest.raises(ValueError, match="KAFKA_PUBLISH_TIMEOUT_S"):
        GATEWAY.create_app(platform=platform, settings=GatewaySettings(upstream_timeout_s=10.0))
    GATEWAY.create_app(platform=platform, settings=GatewaySettings(upstream_timeout_s=12.0))  # the relation holds
