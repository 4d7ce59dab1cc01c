"""Dead letters: a message a consumer cannot use is parked with the reason, and consumption goes on."""

from __future__ import annotations

import logging

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker
from prometheus_client import Counter

from shared import topics
from shared.kit.app import Kit

log = logging.getLogger(__name__)

#: Header names on a dead letter; the original key and value are kept byte for byte.
REASON = "x-dlq-reason"
ERROR = "x-dlq-error"
ORIGINAL_TOPIC = "x-original-topic"
ORIGINAL_PARTITION = "x-original-partition"
ORIGINAL_OFFSET = "x-original-offset"
CONSUMER_GROUP = "x-consumer-group"
SERVICE = "x-service"


class DeadLetters:
    """Publishes unusable records to ``system.deadletters.v1`` and counts them by reason."""

    def __init__(self, broker: KafkaBroker, kit: Kit, group: str) -> None:
        self._broker = broker
        self._service = kit.service.name
        self._group = group
        if "dead_letters_total" not in kit.state:  # one metric per process, shared by every consumer
            kit.state["dead_letters_total"] = Counter(
                "dead_letters_total",
                "Messages sent to the dead-letter topic",
                ["topic", "reason"],
                registry=kit.registry,
            )
        self._count = kit.state["dead_letters_total"]

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
