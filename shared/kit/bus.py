"""A service's view of the event bus: publishers and subscribers built from event classes, held to its contract.

The kit gives every service that declares ``Bus()`` one ``ServiceBus``::

    bars = rt.bus.publisher(MarketBar)                        # topic from MarketBar.TOPIC
    sub = rt.bus.subscriber(MarketTick, group="data-bridge.bars", batch=True, **RAW_BATCH)

An event or group the service's contract does not declare is refused right there
(``ContractError``), so what the contract says is what the service does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from shared.bus.broker import create_broker
from shared.bus.deadletter import DeadLetters, dead_letters_counter
from shared.bus.publish import BulkPublisher
from shared.events import Event
from shared.kit.contract import ContractUse

E = TypeVar("E", bound=Event)
H = TypeVar("H", bound=Callable[..., Awaitable[Any]])


class Subscriber(Protocol):
    """A FastStream Kafka subscriber: decorate the handler with it. (Its consumer, once started, is
    ``.consumer``; the poll pacer, ``shared.bus.pacing``, tunes it.)"""

    def __call__(self, handler: H) -> H: ...

    @property
    def consumer(self) -> Any:
        """The subscriber's ``AIOKafkaConsumer`` while it runs."""


class ServiceBus:
    """The service's FastStream Kafka broker, wrapped so that topics come from event classes."""

    def __init__(
        self,
        broker: KafkaBroker,
        use: ContractUse,
        registry: CollectorRegistry,
        *,
        publish_timeout_s: float | None = None,
    ) -> None:
        self.broker = broker
        self._use = use
        self._dead_letters = dead_letters_counter(registry)
        self._publish_timeout_s = publish_timeout_s

    @classmethod
    def connect(
        cls,
        use: ContractUse,
        bootstrap_servers: str,
        registry: CollectorRegistry,
        *,
        publish_timeout_s: float | None = None,
    ) -> ServiceBus:
        """A bus for the service of ``use`` (not started: subscribers are added first); its publishers
        give up after ``publish_timeout_s`` (``KAFKA_PUBLISH_TIMEOUT_S`` under the kit)."""
        broker = create_broker(use.service, bootstrap_servers, registry)
        return cls(broker, use, registry, publish_timeout_s=publish_timeout_s)

    def publisher(self, event: type[E]) -> BulkPublisher[E]:
        """A publisher of ``event`` to its topic; the contract must declare that the service produces it."""
        self._use.publish(event)
        return BulkPublisher(self.broker, event, timeout_s=self._publish_timeout_s)

    def subscriber(self, event: type[Event], *, group: str | None, **options: Any) -> Subscriber:
        """A FastStream subscriber of ``event``'s topic as consumer group ``group`` (``None``: every
        instance reads everything); ``options`` go to ``KafkaBroker.subscriber``. Decorate the
        handler with it as usual. The contract must declare ``Consumes(event, group)``."""
        declared = self._use.subscribe(event, group)
        options.setdefault("title", declared.title(self._use.service))
        options.setdefault("description", declared.purpose or None)
        subscriber: Subscriber = self.broker.subscriber(event.TOPIC, group_id=group, **options)
        return subscriber

    def subscriber_of_many(self, events: Sequence[type[Event]], *, group: str | None, **options: Any) -> Subscriber:
        """One subscriber (one consumer, one fetch loop) of several events' topics as ``group``: for
        feeds that wake together, where a consumer each would poll the broker once each. The handler
        gets records of every topic (``split_by_topic``); the contract must declare each
        ``Consumes(event, group)``."""
        if len(events) < 2:
            raise ValueError("subscriber_of_many takes two events or more (one: subscriber)")
        declared = [self._use.subscribe(event, group) for event in events]
        options.setdefault("title", " + ".join(d.title(self._use.service) for d in declared))
        options.setdefault("description", "; ".join(d.purpose for d in declared if d.purpose) or None)
        subscriber: Subscriber = self.broker.subscriber(*(e.TOPIC for e in events), group_id=group, **options)
        return subscriber

    def dead_letters(self, group: str) -> DeadLetters:
        """Where the consumer group ``group`` parks what it cannot use (``system.deadletters.v1``)."""
        return DeadLetters(self.broker, self._use.service, group, self._dead_letters)

    async def start(self) -> None:
        await self.broker.start()

    async def stop(self) -> None:
        """Stop consuming (running handlers are drained, offsets committed) and close the producer."""
        await self.broker.stop()

    async def ping(self, timeout_s: float) -> bool:
        return bool(await self.broker.ping(timeout=timeout_s))


__all__ = ["ServiceBus"]
