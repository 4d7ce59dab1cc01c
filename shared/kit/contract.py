"""What a service produces, consumes and calls: declared next to its code, enforced while it runs.

A service's ``CONTRACT`` is the one place where its surface on the mesh can be read::

    CONTRACT = Contract(
        produces=(MarketTick, MarketBar),
        consumes=(Consumes(MarketTick, group="data-bridge.bars", purpose="builds bars"),),
        calls=(),
    )

The kit holds the running code to it both ways (``shared.kit.service``): a publisher,
subscriber or service URL that is not declared is refused when the service asks for
it, and a declaration the service never used fails its start. ``docs/events.md`` and
the mesh diagram are generated from the contracts (``shared.kit.meshdoc``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared import ports
from shared.events import Event


class ContractError(RuntimeError):
    """The running code and the service's declared contract disagree."""


@dataclass(frozen=True, slots=True)
class Consumes:
    """One subscription: an event, read by a consumer group (or by every instance: ``group=None``)."""

    event: type[Event]
    #: Kafka consumer group; ``None`` = no group, every instance reads every event (caches, revocations).
    group: str | None
    #: One line for the docs: what the service does with these events.
    purpose: str = ""

    @property
    def topic(self) -> str:
        return self.event.TOPIC

    def key(self) -> tuple[type[Event], str | None]:
        return self.event, self.group

    def title(self, service: str) -> str:
        """The subscription's name in FastStream and AsyncAPI: ``service:topic:group``."""
        return f"{service}:{self.topic}:{self.group or 'every-instance'}"


@dataclass(frozen=True, slots=True)
class Contract:
    """A service's declared surface: events it publishes, subscriptions, and services it calls over HTTP."""

    produces: tuple[type[Event], ...] = ()
    consumes: tuple[Consumes, ...] = ()
    #: Names in the port matrix (``shared.ports``) this service sends HTTP requests to.
    calls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for event in self.produces:
            if not (isinstance(event, type) and issubclass(event, Event)):
                raise ContractError(f"produces: {event!r} is not an event class")
        keys = [c.key() for c in self.consumes]
        for what, items in (("produces", self.produces), ("consumes", keys), ("calls", self.calls)):
            if len(items) != len(set(items)):
                raise ContractError(f"{what}: the same entry is declared twice")
        for name in self.calls:
            try:
                ports.service(name)
            except KeyError:
                raise ContractError(f"calls: {name!r} is not in the port matrix") from None

    def __or__(self, other: Contract) -> Contract:
        """Both contracts' declarations (a service's own plus what its dependencies imply)."""
        consumes = {c.key(): c for c in (*self.consumes, *other.consumes)}
        return Contract(
            produces=tuple(dict.fromkeys((*self.produces, *other.produces))),
            consumes=tuple(consumes.values()),
            calls=tuple(dict.fromkeys((*self.calls, *other.calls))),
        )

    def consumption(self, event: type[Event], group: str | None) -> Consumes | None:
        return next((c for c in self.consumes if c.key() == (event, group)), None)


@dataclass
class ContractUse:
    """What the running service actually asked for; checked against its contract."""

    service: str
    contract: Contract
    published: set[type[Event]] = field(default_factory=set)
    subscribed: set[tuple[type[Event], str | None]] = field(default_factory=set)
    called: set[str] = field(default_factory=set)

    def publish(self, event: type[Event]) -> None:
        if event not in self.contract.produces:
            raise ContractError(
                f"{self.service} publishes {event.__name__} ({event.TOPIC}) but its contract does not "
                f"declare it: add it to CONTRACT.produces"
            )
        self.published.add(event)

    def subscribe(self, event: type[Event], group: str | None) -> Consumes:
        declared = self.contract.consumption(event, group)
        if declared is None:
            raise ContractError(
                f"{self.service} subscribes to {event.__name__} ({event.TOPIC}) as group {group!r} but its "
                f"contract does not declare it: add Consumes({event.__name__}, group={group!r}) to CONTRACT.consumes"
            )
        self.subscribed.add(declared.key())
        return declared

    def call(self, service: str) -> None:
        if service not in self.contract.calls:
            raise ContractError(
                f"{self.service} calls {service} but its contract does not declare it: add it to CONTRACT.calls"
            )
        self.called.add(service)

    def unused(self) -> list[str]:
        """Declarations the service never acted on (a stale contract), as readable lines."""
        return [
            *(f"produces {e.__name__}" for e in self.contract.produces if e not in self.published),
            *(
                f"consumes {c.event.__name__} as group {c.group!r}"
                for c in self.contract.consumes
                if c.key() not in self.subscribed
            ),
            *(f"calls {s}" for s in self.contract.calls if s not in self.called),
        ]

    def verify(self) -> None:
        """Raise unless every declaration was used (undeclared uses were refused when they happened)."""
        unused = self.unused()
        if unused:
            raise ContractError(f"{self.service}'s contract declares what the service does not do: {'; '.join(unused)}")

    def report(self) -> dict[str, object]:
        """The declared contract and what was used, for ``GET /contract``."""
        return {
            "service": self.service,
            "produces": sorted(e.TOPIC for e in self.contract.produces),
            "consumes": [
                {"topic": c.topic, "event": c.event.__name__, "group": c.group, "purpose": c.purpose}
                for c in self.contract.consumes
            ],
            "calls": list(self.contract.calls),
            "unused": self.unused(),
        }


__all__ = ["Consumes", "Contract", "ContractError", "ContractUse"]
