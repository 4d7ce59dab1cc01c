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
from prometheus_client import CollectorRegistry

from shared import topics

#: FastStream waits this long for running handlers on stop; within the 10 s SIGTERM budget.
GRACEFUL_STOP_S = 4.0


def create_broker(name: str, bootstrap_servers: str, registry: CollectorRegistry) -> KafkaBroker:
    """A broker for service ``name``: client id = service name, spans and metrics per batch/message.

    Services get theirs from the kit (``shared.kit.bus.ServiceBus``), which holds it to their contract.
    """
    return KafkaBroker(
        bootstrap_servers,
        client_id=name,
        # A short linger lets the producer batch a burst without adding visible latency.
        linger_ms=1,
        max_batch_size=256 * 1024,
        acks="all",
        graceful_timeout=GRACEFUL_STOP_S,
        allow_auto_create_topics=False,
        middlewares=[
            KafkaTelemetryMiddleware(tracer_provider=trace.get_tracer_provider()),
            KafkaPrometheusMiddleware(registry=registry, app_name=name),
        ],
        logger=logging.getLogger(f"{name}.bus"),
        log_level=logging.DEBUG,
    )


async def ensure_topics(bootstrap_servers: str, wanted: dict[str, int] | None = None) -> list[str]:
    """Create the project's topics if missing (idempotent); returns the names it created."""
    wanted = wanted or topics.PARTITIONS
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="hats-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=n, replication_factor=1, topic_configs=topics.CONFIGS.get(name, {}))
            for name, n in wanted.items()
            if name not in existing
        ]
        if missing:
            # Another process may win the race; the topic is there, which is all we need.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        return [t.name for t in missing]
    finally:
        await admin.close()
