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
        logger=_bus_logger(name),
        log_level=logging.DEBUG,
    )


class _ExpectedTopicsNotice(logging.Filter):
    """Drops FastStream's warning that each subscriber logs at start because topic auto-creation is off.

    It is off on purpose (only ``ensure_topics`` creates topics, with their partitions and
    retention: docs/architecture.md, "Delivery across broker restarts"), so the warning says
    nothing an operator should act on, a dozen times per service start.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Auto create topics is disabled")


def _bus_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(f"{name}.bus")
    if not any(isinstance(f, _ExpectedTopicsNotice) for f in logger.filters):
        logger.addFilter(_ExpectedTopicsNotice())
    return logger


async def ensure_topics(bootstrap_servers: str, wanted: dict[str, int] | None = None) -> list[str]:
    """Create the project's topics if missing (idempotent), with their retention (``topics.configs_of``).

    Returns the names it created. A topic that exists keeps the configs it has.
    """
    wanted = wanted or topics.PARTITIONS
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="hats-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=n, replication_factor=1, topic_configs=topics.configs_of(name))
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
