"""Keyed bulk publishing: many events, one request per partition, keys kept.

FastStream's ``publish`` costs one middleware pass (and one span) per message,
which caps a service near 8k msg/s here; ticks arrive at tens of thousands per
second. ``publish_batch`` is one pass per batch but sends to one partition, so
we group events by the partition Kafka's default partitioner would pick for
their key (murmur2, as in the Java client and aiokafka) and send one batch each.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Generic, TypeVar

from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker, KafkaResponse

from shared import compat
from shared.events import Event, encode_event

E = TypeVar("E", bound=Event)

#: Records per produce request: keeps each request far below the producer's batch size.
_CHUNK = 400


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partition for ``key`` (identical to the Java client and aiokafka)."""
    return (compat.murmur2(key) & 0x7FFFFFFF) % partitions


class BulkPublisher(Generic[E]):
    """Publishes sequences of one event class to its topic, grouped per partition, awaiting the broker's acks.

    Services get theirs from ``ServiceBus.publisher(EventClass)``, which holds it to their contract.
    """

    def __init__(self, broker: KafkaBroker, event: type[E], *, timeout_s: float | None = None) -> None:
        self._broker = broker
        self.event = event
        #: A whole ``publish_encoded`` call, queueing per partition included; ``None``: no bound.
        self.timeout_s = timeout_s
        self._topic = event.TOPIC
        self._partitions: int | None = None
        #: One of our batches per partition in the producer at a time. aiokafka queues further
        #: batches for a partition in ``MessageAccumulator.add_batch``, whose wait subtracts the
        #: *total* time waited on every pass, so a queue a few dozen deep under load fails with
        #: KafkaTimeoutError long before ``request_timeout_ms`` (seen with 4 concurrent 5,000-tick
        #: requests). Waiting here instead also keeps each call's records in order per partition.
        self._partition_locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def partition_count(self) -> int:
        """How many partitions the publisher's topic has (asked once, then remembered)."""
        if self._partitions is None:
            admin = compat.admin_client(self._broker)
            described = await admin.describe_topics([self._topic])
            self._partitions = len(described[0]["partitions"])
            if self._partitions == 0:
                raise RuntimeError(f"topic {self._topic} does not exist")
        return self._partitions

    async def publish(self, events: Sequence[E]) -> dict[int, int]:
        """Publish ``events``; returns the highest offset Kafka assigned to them, per partition."""
        for event in events:
            if type(event) is not self.event:
                raise TypeError(f"{type(event).__name__} is not {self.event.__name__}, the event of {self._topic}")
        return await self.publish_encoded([(event.partition_key(), encode_event(event)) for event in events])

    async def publish_encoded(self, records: Sequence[tuple[bytes, bytes]]) -> dict[int, int]:
        """Publish already encoded events of this publisher's class, given as ``(key, value)`` pairs.

        Returns ``{partition: highest offset written}`` for the partitions written (``{}`` for no
        records): what an ingest receipt names (see ``shared.bus.epoch``). Raises ``TimeoutError``
        after ``timeout_s``: the batches not yet handed to the producer are never sent (one already
        sent may still be stored: ids are deterministic, so a retry is harmless).
        """
        if not records:
            return {}
        async with asyncio.timeout(self.timeout_s):
            count = await self.partition_count()
            groups: dict[int, list[KafkaResponse]] = defaultdict(list)
            for key, value in records:
                groups[partition_for(key, count)].append(KafkaResponse(value, key=key))
            highest = await asyncio.gather(
                *(self._send_in_order(partition, batch) for partition, batch in groups.items())
            )
        return dict(zip(groups, highest, strict=True))

    async def _send_in_order(self, partition: int, records: list[KafkaResponse]) -> int:
        """Send ``records`` to ``partition`` in order; the offset of the last one."""
        async with self._partition_locks[partition]:
            for i in range(0, len(records), _CHUNK):
                chunk = records[i : i + _CHUNK]
                written = await self._broker.publish_batch(*chunk, topic=self._topic, partition=partition)
            if not isinstance(written, RecordMetadata):  # only with no_confirm=True, which we never pass
                raise TypeError(f"publish_batch gave {type(written).__name__}, not the broker's acknowledgement")
            # Kafka gives a batch consecutive offsets and reports the first (its base offset).
            last: int = written.offset + len(chunk) - 1
            return last
