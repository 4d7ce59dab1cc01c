"""A consumer group's committed offsets, read through the broker's admin API."""

from __future__ import annotations

from aiokafka import TopicPartition
from faststream.kafka import KafkaBroker

from shared import compat


async def committed_offsets(broker: KafkaBroker, group: str, topic: str, partitions: int) -> dict[int, int]:
    """``{partition: offset}`` that ``group`` committed in ``topic`` (the next offset it will read).

    A partition where the group has committed nothing (Kafka answers -1) counts 0: nothing of it
    is handled. Every one of the ``partitions`` partitions is in the answer.
    """
    wanted = [TopicPartition(topic, p) for p in range(partitions)]
    offsets = await compat.admin_client(broker).list_consumer_group_offsets(group, partitions=wanted)
    handled = {tp.partition: max(meta.offset, 0) for tp, meta in offsets.items()}
    return {p: handled.get(p, 0) for p in range(partitions)}
