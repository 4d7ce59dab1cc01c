"""Dead letters: a message a consumer cannot use is parked with the reason, and consumption goes on."""

from __future__ import annotations

import logging

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry, Counter

from shared import topics

log = logging.getLogger(__name__)

#: Header names on a dead letter; the original key and value are kept byte for byte.
REASON = "x-dlq-reason"
ERROR = "x-dlq-error"
ORIGINAL_TOPIC = "x-original-topic"
ORIGINAL_PARTITION = "x-original-partition"
ORIGINAL_OFFSET = "x-original-offset"
CONSUMER_GROUP = "x-consumer-group"
SERVICE = "x-service"


def dead_letters_counter(registry: CollectorRegistry) -> Counter:
    """The process's one ``dead_letters_total`` metric (by original topic and reason), shared by its consumers."""
    return Counter(
        "dead_letters_total", "Messages sent to the dead-letter topic", ["topic", "reason"], registry=registry
    )


class DeadLetters:
    """Publishes unusable records of one consumer group to ``system.deadletters.v1`` and counts them by reason.

    Services get theirs from ``ServiceBus.dead_letters(group)``.
    """

    def __init__(self, broker: KafkaBroker, service: str, group: str, counter: Counter) -> None:
        self._broker = broker
        self._service = service
        self._group = group
        self._count = counter

    async def send(self, record: ConsumerRecord, reason: str, error: str) -> None:
        headers = {
            REASON: reason,
            ERROR: error[:1000],
            ORIGINAL_TOPIC: record.topic,
            ORIGINAL_PARTITION: str(record.partition),
            ORIGINAL_OFFSET: str(record.offset),
            CONSUMER_GROUP: self._group,
            SERVICE: self._service,
        }
        await self._broker.publish(record.value or b"", topics.DEAD_LETTERS, key=record.key, headers=headers)
        self._count.labels(record.topic, reason).inc()
        log.warning(
            "dead-lettered %s[%s]@%s: %s: %s", record.topic, record.partition, record.offset, reason, error[:200]
        )
