"""Kill switches (MiFID II RTS 6 Art. 12): block new orders in a scope and cancel the open ones.

Scopes: ``all`` (every order of the platform), ``venue`` (one venue), ``tenant``, ``account`` and
``strategy`` (within one tenant). ``all`` and ``venue`` are the platform's (their ``tenant`` is the
platform tenant) and only a platform admin trips or resets them.

* ``trip(...)`` makes a tripped switch; ``switch.covers(facts)`` is the predicate on orders: the
  engine cancels every open order it covers and the board blocks every new one.
* ``reset(switch, person, reason)`` re-enables: it refuses (``ResetRefused``) without a named person
  and a reason, and never resets a switch twice.
* Both produce ``KillSwitchChanged`` (``switch.event(...)``), with a deterministic id.

``KillSwitchBoard`` holds the tripped switches in memory for the order path.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Literal, get_args

from shared.auth.scopes import PLATFORM_TENANT
from shared.events import EVENT_NAMESPACE, KillSwitchChanged, Venue, now_ns

Scope = Literal["all", "venue", "tenant", "account", "strategy"]
SCOPES: tuple[str, ...] = get_args(Scope)
PLATFORM_SCOPES = frozenset({"all", "venue"})
VENUES: tuple[str, ...] = get_args(Venue)
#: Actors of automatic trips are ``throttle:<rule>``; a reset needs a person, never one of these.
AUTOMATIC_PREFIX = "throttle:"


class InvalidSwitch(ValueError):
    """A trip whose scope and target do not fit together."""


class ResetRefused(ValueError):
    """A reset without a named person or a reason, or of a switch that is not tripped."""


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What scopes an order: who sends it where."""

    tenant: str
    account_id: str
    venue: str
    strategy: str | None = None


@dataclass(frozen=True, slots=True)
class KillSwitch:
    switch_id: uuid.UUID
    scope: Scope
    #: The venue, tenant, account id or strategy in scope; ``None`` for ``all``.
    target: str | None
    tenant: str
    state: Literal["tripped", "reset"]
    actor: str
    reason: str
    automatic: bool
    tripped_ns: int
    canceled_orders: int = 0
    reset_by: str | None = None
    reset_reason: str | None = None
    reset_ns: int | None = None

    @property
    def tripped(self) -> bool:
        return self.state == "tripped"

    def covers(self, facts: OrderFacts) -> bool:
        """Whether an order with ``facts`` is in this switch's scope (whatever its state)."""
        if self.scope == "all":
            return True
        if self.scope == "venue":
            return facts.venue == self.target
        if facts.tenant != self.tenant:
            return False
        if self.scope == "tenant":
            return True
        if self.scope == "account":
            return facts.account_id == self.target
        return facts.strategy is not None and facts.strategy == self.target

    def event(self) -> KillSwitchChanged:
        """The ``KillSwitchChanged`` of this switch's current state."""
        return KillSwitchChanged(
            event_id=switch_event_id(self.switch_id, self.state),
            ts_event=self.tripped_ns if self.state == "tripped" else (self.reset_ns or self.tripped_ns),
            ts_init=now_ns(),
            switch_id=self.switch_id,
            scope=self.scope,
            target=self.target,
            tenant=self.tenant,
            state=self.state,
            automatic=self.automatic if self.state == "tripped" else False,
            actor=self.actor if self.state == "tripped" else (self.reset_by or ""),
            reason=self.reason if self.state == "tripped" else (self.reset_reason or ""),
            canceled_orders=self.canceled_orders if self.state == "tripped" else 0,
        )


def switch_event_id(switch_id: uuid.UUID, state: str) -> uuid.UUID:
    """Deterministic id of a switch's trip or reset: recording it twice is one event."""
    return uuid.uuid5(EVENT_NAMESPACE, f"kill-switch|{switch_id}|{state}")


def trip(
    *,
    scope: str,
    target: str | None,
    tenant: str,
    actor: str,
    reason: str,
    now_ns: int,
    automatic: bool = False,
    switch_id: uuid.UUID | None = None,
) -> KillSwitch:
    """A new tripped switch; ``InvalidSwitch`` if scope and target do not fit.

    ``tenant`` is the tenant the switch belongs to; for ``all`` and ``venue`` it is always the
    platform's. For ``tenant`` the target is that tenant.
    """
    if scope not in SCOPES:
        raise InvalidSwitch(f"scope must be one of {list(SCOPES)}, not {scope!r}")
    if not actor.strip():
        raise InvalidSwitch("a trip names its actor")
    if not reason.strip():
        raise InvalidSwitch("a trip gives its reason")
    if scope == "all":
        if target is not None:
            raise InvalidSwitch("scope all takes no target")
        tenant = PLATFORM_TENANT
    elif scope == "venue":
        if target not in VENUES:
            raise InvalidSwitch(f"scope venue needs a venue ({', '.join(VENUES)}) as target, not {target!r}")
        tenant = PLATFORM_TENANT
    elif scope == "tenant":
        if target not in (None, tenant):
            raise InvalidSwitch(f"a tenant switch of {tenant} targets {tenant}, not {target!r}")
        target = tenant
    elif not target:
        raise InvalidSwitch(f"scope {scope} needs a target")
    return KillSwitch(
        switch_id=switch_id or uuid.uuid4(),
        scope=scope,  # type: ignore[arg-type]  # checked against SCOPES above
        target=target,
        tenant=tenant,
        state="tripped",
        actor=actor,
        reason=reason,
        automatic=automatic,
        tripped_ns=now_ns,
    )


def reset(switch: KillSwitch, *, person: str | None, reason: str | None, now_ns: int) -> KillSwitch:
    """The switch re-enabled by ``person`` for ``reason``; ``ResetRefused`` if either is missing."""
    if not switch.tripped:
        raise ResetRefused(f"switch {switch.switch_id} is not tripped (reset by {switch.reset_by})")
    person = (person or "").strip()
    reason = (reason or "").strip()
    if not person or person.startswith(AUTOMATIC_PREFIX):
        raise ResetRefused("a reset names the person who re-enables trading")
    if not reason:
        raise ResetRefused("a reset gives its reason")
    return replace(switch, state="reset", reset_by=person, reset_reason=reason, reset_ns=now_ns)


class KillSwitchBoard:
    """The tripped switches, in memory: what blocks an order now.

    Loaded from the store at start (``load``) and kept current by every ``KillSwitchChanged``
    (``apply``, idempotent: a reset switch is never tripped again by a late trip event).
    """

    def __init__(self) -> None:
        self._tripped: dict[uuid.UUID, KillSwitch] = {}
        self._reset: set[uuid.UUID] = set()

    def load(self, switches: list[KillSwitch]) -> None:
        for switch in switches:
            self.put(switch)

    def put(self, switch: KillSwitch) -> None:
        if switch.tripped and switch.switch_id not in self._reset:
            self._tripped[switch.switch_id] = switch
        elif not switch.tripped:
            self._reset.add(switch.switch_id)
            self._tripped.pop(switch.switch_id, None)

    def apply(self, event: KillSwitchChanged) -> None:
        self.put(
            KillSwitch(
                switch_id=event.switch_id,
                scope=event.scope,
                target=event.target,
                tenant=event.tenant,
                state=event.state,
                actor=event.actor,
                reason=event.reason,
                automatic=event.automatic,
                tripped_ns=event.ts_event,
                canceled_orders=event.canceled_orders,
            )
        )

    def is_blocked(self, facts: OrderFacts) -> KillSwitch | None:
        """The tripped switch that blocks an order with ``facts``, or ``None``."""
        for switch in self._tripped.values():
            if switch.covers(facts):
                return switch
        return None

    def tripped(self) -> list[KillSwitch]:
        return list(self._tripped.values())


__all__ = [
    "PLATFORM_SCOPES",
    "SCOPES",
    "InvalidSwitch",
    "KillSwitch",
    "KillSwitchBoard",
    "OrderFacts",
    "ResetRefused",
    "Scope",
    "reset",
    "switch_event_id",
    "trip",
]
