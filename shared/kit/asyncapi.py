"""A service's AsyncAPI 3.0 document, exported by FastStream from its declared contract.

The running services read raw record batches (``shared.bus.consume.RAW_BATCH``), which
FastStream cannot describe, so the document is built from the declaration instead: a
spec-only broker (never connected) gets one publisher per produced event and one
subscriber per consumption, typed by the event class, and FastStream's own exporter
turns that into AsyncAPI. Served as ``GET /asyncapi.json`` by every service and
printed by ``hats contract asyncapi NAME``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from shared.events import Event
from shared.kit.service import ServiceDefinition


def _typed_handler(event: type[Event]) -> Callable[..., Awaitable[None]]:
    """A do-nothing handler whose parameter is ``event``: what FastStream reads the payload schema from."""

    async def handle(message: Any) -> None:
        return None

    handle.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("message", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=event)]
    )
    handle.__annotations__ = {"message": event, "return": None}
    return handle


def asyncapi_document(definition: ServiceDefinition[Any, Any], servers: str = "kafka:9092") -> dict[str, Any]:
    """The AsyncAPI 3.0 document (as JSON-ready data) of ``definition``'s contract."""
    contract = definition.effective_contract
    broker = KafkaBroker(servers, description="the platform's Kafka (embedded: Tansu)")
    for event in contract.produces:
        broker.publisher(
            event.TOPIC,
            schema=event,
            title=f"{definition.name}:{event.TOPIC}",
            description=inspect.cleandoc(event.__doc__ or ""),
        )
    for consumes in contract.consumes:
        subscriber = broker.subscriber(
            consumes.topic,
            group_id=consumes.group,
            title=consumes.title(definition.name),
            description=consumes.purpose or None,
        )
        subscriber(_typed_handler(consumes.event))
    spec = AsyncAPI(broker, title=definition.name, version="1.0.0", description=definition.entry.job)
    document: dict[str, Any] = spec.to_specification().to_jsonable()
    return document


__all__ = ["asyncapi_document"]
