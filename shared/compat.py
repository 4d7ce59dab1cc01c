"""Every use of a dependency's private or undocumented API, in one place.

Each function here reaches into a library below its public surface because the public
one cannot do what we measured we need. Each names the version it was written for
(``WRITTEN_FOR``, the pins of pyproject.toml) and has a fast unit test in
``tests/shared/test_compat.py`` that fails if an upgrade removes or changes what it
relies on. Upgrading one of these packages: run that test first; if it fails, the
docstring here says what the code needs and why, and which measurement to repeat.

Nothing else in the project may touch a private attribute of a third-party object;
``tests/shared/test_compat.py`` also scans the source tree for that.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, cast

from starlette.middleware import Middleware

#: The versions this module was written and tested against.
WRITTEN_FOR = {
    "aiokafka": "0.14.0",
    "faststream": "0.7.8",
    "pydantic": "2.14.3",
    "starlette": "1.10.0",
    "fastapi-offline": "1.7.7",
    "opentelemetry-api": "1.45.2",
    "uvicorn": "0.54.0",
}


# -- aiokafka ----------------------------------------------------------------------------------


def set_fetch_max_wait(consumer: Any, wait_ms: int) -> bool:
    """Change a running ``AIOKafkaConsumer``'s ``fetch_max_wait_ms``; False if it has no fetcher yet.

    aiokafka fixes it at construction, but its fetcher reads ``_fetch_max_wait_ms`` on every
    fetch request it builds (``Fetcher._create_fetch_requests``). The poll pacer
    (``shared.bus.pacing``) uses this to poll fast only while records flow: the embedded
    broker holds every fetch for the full wait (see docs/architecture.md, "The embedded
    broker polls"). Measure with ``tests/shared/test_poll_pacer.py`` and ``make bench``'s
    idle figures after an upgrade.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None:
        return False
    fetcher._fetch_max_wait_ms = wait_ms
    return True


def murmur2(key: bytes) -> int:
    """Kafka's murmur2 hash of a record key, as the Java client and aiokafka's default partitioner compute it.

    ``aiokafka.partitioner.murmur2`` is importable but not documented. ``BulkPublisher`` groups
    records by the partition Kafka's default partitioner would choose, so it must be the same hash.
    """
    from aiokafka.partitioner import murmur2 as aiokafka_murmur2

    hashed: int = aiokafka_murmur2(key)
    return hashed


def forbid_topic_auto_creation() -> None:
    """Make every metadata request of aiokafka ask the broker *not* to create unknown topics.

    aiokafka has no client setting for it (Java's ``allow.auto.create.topics``): its
    ``MetadataRequest`` sends ``allow_auto_topic_creation=True`` from protocol v4 on, and both
    its client and its admin client build one by name. On production Kafka the broker refuses
    anyway (``KAFKA_AUTO_CREATE_TOPICS_ENABLE: "false"`` in docker-compose.yml), but the
    embedded Tansu has no such switch and honours the request: after a broker restart, the
    first consumer, producer or epoch reader to ask about a topic created it with 4 partitions
    and none of the project's configs before the supervisor could create it properly (measured:
    15 restarts of 15 gave ``hats.epoch.v1`` 4 partitions), and a produce racing that creation
    was refused for ever (``AlreadyExists`` on the partition) -- the broker-kill stall of issue 9.
    Topics are created only by ``shared.bus.broker.ensure_topics``. Idempotent;
    ``shared.bus`` calls it on import.
    """
    import aiokafka.admin.client
    import aiokafka.client
    from aiokafka.protocol.metadata import MetadataRequest

    if getattr(aiokafka.client.MetadataRequest, "forbids_auto_creation", False):
        return

    class MetadataRequestWithoutAutoCreation(MetadataRequest):
        forbids_auto_creation = True

        def __init__(self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = False) -> None:
            super().__init__(topics, allow_auto_topic_creation)

    aiokafka.client.MetadataRequest = MetadataRequestWithoutAutoCreation
    aiokafka.admin.client.MetadataRequest = MetadataRequestWithoutAutoCreation


# -- FastStream --------------------------------------------------------------------------------


def set_batch_timeout(subscriber: Any, timeout_ms: int) -> None:
    """Change how long a FastStream batch subscriber waits for records per poll.

    Set at construction (``batch_timeout_ms=``) and read from the subscriber's attribute on
    every poll; the poll pacer changes it with the fetch wait.
    """
    subscriber.batch_timeout_ms = timeout_ms


def running_consumer(subscriber: Any) -> Any:
    """The ``AIOKafkaConsumer`` of a FastStream Kafka subscriber while it runs (else ``None``).

    FastStream keeps it as ``subscriber.consumer``; the bar stage seeks and commits with it
    (its checkpoints live in PostgreSQL, not in Kafka's group offsets).
    """
    return getattr(subscriber, "consumer", None)


def current_assignment(consumer: Any) -> Any:
    """The object standing for the consumer's current partition assignment (``None`` if it has none).

    aiokafka makes a new ``Assignment`` each time it assigns partitions (a group-less consumer too,
    when metadata shows its topics' partitions changed, e.g. after the embedded broker came back
    with a new log), and a new assignment starts every partition at ``auto_offset_reset``:
    comparing identities tells that it happened. Private in aiokafka (``_subscription``);
    ``tests/shared/test_rewind.py`` fails if it stops working.
    """
    subscription = getattr(getattr(consumer, "_subscription", None), "subscription", None)
    return None if subscription is None else subscription.assignment


def refresh_metadata(consumer: Any) -> bool:
    """Ask the consumer's client to refresh its cluster metadata now (in the background); whether it could.

    A group-less consumer whose topics were missing from a metadata answer (a broker back with a new,
    empty log, before the topics are made again) holds no partition until the next refresh, which
    aiokafka makes only every ``metadata_max_age_ms`` (5 minutes). aiokafka's client has
    ``force_metadata_update`` but the consumer does not expose its client (``_client``);
    ``tests/shared/test_rewind.py`` fails if this stops working.
    """
    client = getattr(consumer, "_client", None)
    if client is None or not hasattr(client, "force_metadata_update"):
        return False
    client.force_metadata_update()
    return True


def batch_parser_parts(original_parser: Any) -> tuple[type[Any], Any, Any] | None:
    """``(message class, topic pattern, consumer)`` of FastStream's Kafka batch parser, or ``None``.

    ``shared.bus.consume`` builds FastStream's own batch message itself (decoding each
    distinct header set once; a fifth of a consumer's CPU at tens of thousands of records
    per second). For that it needs what ``AioKafkaBatchParser.parse_batch`` uses: the bound
    method's parser, its ``msg_class``, ``regex`` and ``_consumer``.
    """
    from faststream.kafka.parser import AioKafkaBatchParser

    parser = getattr(original_parser, "__self__", None)
    if not isinstance(parser, AioKafkaBatchParser):
        return None
    return parser.msg_class, parser.regex, parser._consumer


def topic_path(regex: Any, topic: str) -> Any:
    """FastStream's path parameters of ``topic`` (what its batch parser stores as ``path``)."""
    from faststream._internal.utils.path import match_path

    return match_path(regex, topic)


def admin_client(broker: Any) -> Any:
    """The ``AIOKafkaAdminClient`` a started FastStream ``KafkaBroker`` holds (``broker.config.admin_client``).

    ``BulkPublisher`` asks it once per topic for the partition count.
    """
    return broker.config.admin_client


# -- pydantic ----------------------------------------------------------------------------------


def is_pydantic_general_metadata(item: object) -> bool:
    """Whether ``item`` is pydantic's bundle of ``Field(...)`` constraints without an annotated-types
    class of their own (``pattern``, ``max_digits``, ``decimal_places``, ...: read them with ``vars``).

    ``shared.codecs`` reads a model's constraints to derive its wire form; pydantic keeps
    these in a private class (``pydantic._internal._fields._PydanticGeneralMetadata``).
    """
    from pydantic._internal._fields import PydanticMetadata

    return isinstance(item, PydanticMetadata) and type(item).__name__ == "_PydanticGeneralMetadata"


# -- OpenTelemetry -----------------------------------------------------------------------------

#: OpenTelemetry's stand-ins for "no provider configured yet" (module, class): private classes.
_DEFERRED_OTEL_PROVIDERS = frozenset(
    {
        ("opentelemetry.trace", "ProxyTracerProvider"),
        ("opentelemetry.metrics._internal", "_ProxyMeterProvider"),
        ("opentelemetry._logs._internal", "ProxyLoggerProvider"),
    }
)


def otel_provider_configured(provider: Any) -> bool:
    """Whether an OpenTelemetry tracer, meter or logger provider does anything: neither the
    placeholder the API returns before one is set, nor a no-op one.

    The front door (``shared.kit.frontdoor``) makes a server span only when FastAPI would, and
    stands aside if FastAPI's OpenTelemetry metrics or logs are live.
    """
    from opentelemetry import _logs, metrics, trace

    cls = type(provider)
    if (cls.__module__, cls.__name__) in _DEFERRED_OTEL_PROVIDERS:
        return False
    return not isinstance(provider, trace.NoOpTracerProvider | metrics.NoOpMeterProvider | _logs.NoOpLoggerProvider)


def otel_logger_provider() -> Any:
    """The global OpenTelemetry logger provider (its logs API is still ``opentelemetry._logs``)."""
    from opentelemetry import _logs

    return _logs.get_logger_provider()


# -- uvicorn -----------------------------------------------------------------------------------


def httptools_protocol_with_transport(wrap: Callable[[Any, Any], Any]) -> type[Any]:
    """uvicorn's httptools HTTP protocol, writing through ``wrap(transport, loop)`` instead of the
    socket's transport (``uvicorn.Config(http=<this class>)``).

    uvicorn writes a response's head and body with separate ``transport.write`` calls; the
    kit coalesces what one event-loop turn writes into one syscall (``shared.kit.http_protocol``).
    Relies on ``HttpToolsProtocol.connection_made`` keeping the transport it is given and
    writing only through it, and on ``self.loop``.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class WrappedTransportProtocol(HttpToolsProtocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(wrap(transport, self.loop))

    return WrappedTransportProtocol


# -- Starlette / FastAPI -----------------------------------------------------------------------


def add_innermost_middleware(app: Any, middleware: type[Any], **options: Any) -> None:
    """Add ASGI middleware *inside* every other (``add_middleware`` adds it outside).

    Starlette builds its stack from ``app.user_middleware`` (first = outermost) when the
    app starts; appending puts the middleware next to the router, so the metrics, the
    server span and the error handlers still wrap it. Used by the gateway's proxy and
    database-service's bars fast path. Call before the app starts.
    """
    if app.middleware_stack is not None:
        raise RuntimeError("middleware must be added before the app starts")
    app.user_middleware.append(Middleware(cast(Any, middleware), **options))


# -- fastapi-offline ---------------------------------------------------------------------------


def swagger_ui_files() -> Path:
    """The folder of Swagger UI's files (``swagger-ui-bundle.js``, ``swagger-ui.css``, ``favicon.png``)
    inside the ``fastapi-offline`` wheel: its package data, not an API."""
    return Path(str(resources.files("fastapi_offline") / "static"))


__all__ = [
    "WRITTEN_FOR",
    "add_innermost_middleware",
    "admin_client",
    "batch_parser_parts",
    "httptools_protocol_with_transport",
    "is_pydantic_general_metadata",
    "murmur2",
    "otel_logger_provider",
    "otel_provider_configured",
    "running_consumer",
    "set_batch_timeout",
    "set_fetch_max_wait",
    "swagger_ui_files",
    "topic_path",
]
