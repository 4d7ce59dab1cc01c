"""Build the FastStream Kafka broker of a service, with tracing and Prometheus metrics."""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from opentelemetry import trace

from shared import topics
from shared.kit.app import Kit

#: FastStream waits this long for running handlers on stop; within the 10 s SIGTERM budget.
GRACEFUL_STOP_S = 4.0


def create_broker(kit: Kit) -> KafkaBroker:
    """A broker for ``kit.service``: client id = service name, spans and metrics per batch/message."""
    name = kit.service.name
    broker = KafkaBroker(
        kit.settings.kafka_servers,
        client_id=name,
        # A short linger lets the producer batch a burst without adding visible latency.
        linger_ms=1,
        max_batch_size=256 * 1024,
        acks="all",
        graceful_timeout=GRACEFUL_STOP_S,
        allow_auto_create_topics=False,
        middlewares=[
            KafkaTelemetryMiddleware(tracer_provider=trace.get_tracer_provider()),
            KafkaPrometheusMiddleware(registry=kit.registry, app_name=name),
        ],
        logger=logging.getLogger(f"{name}.bus"),
        log_level=logging.DEBUG,
    )

    async def kafka_ready() -> str | None:
        return None if await broker.ping(timeout=1.5) else "broker does not answer"

    kit.add_check("kafka", kafka_ready)
    return broker


async def ensure_topics(bootstrap_servers: str, wanted: dict[str, int] | None = None) -> list[str]:
    """Create the project's topics if missing (idempotent); returns the names it created."""
    wanted = wanted or topics.PARTITIONS
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="hats-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=n, replication_factor=1) for name, n in wanted.items() if name not in existing
        ]
        if missing:
            # Another process may win the race; the topic is there, which is all we need.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        return [t.name for t in missing]
    finally:
        await admin.close()
