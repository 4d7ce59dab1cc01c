"""The order state machine: every legal transition, written out as one table (docs/trading.md).

::

    new             -> pending_submit | rejected
    pending_submit  -> accepted | partially_filled | filled | canceled | rejected | expired | unknown
    accepted        -> partially_filled | filled | canceled | expired | unknown
    partially_filled-> partially_filled | filled | canceled | expired | unknown
    unknown         -> accepted | partially_filled | filled | canceled | rejected | expired
    filled, canceled, rejected, expired: terminal

Choices worth knowing:

* ``partially_filled -> partially_filled`` is legal: each further partial fill is a change.
* ``unknown -> unknown`` is *not* a transition: an order whose fate is still unknown after another
  lost answer simply stays where it is (no new version, no event).
* ``accepted -> rejected`` is illegal: once the venue has accepted an order it can only fill,
  cancel or expire it. ``unknown -> rejected`` is legal: the venue may have refused the order whose
  answer was lost, and an order the venue never received (``never_reached_venue``) ends there too.
* ``pending_submit -> unknown`` is the lost answer (``VenueTimeout``); ``accepted -> unknown`` and
  ``partially_filled -> unknown`` are a cancel whose answer was lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import get_args

from shared.events import OrderState

#: Every state, in the order of the lifecycle.
STATES: tuple[OrderState, ...] = get_args(OrderState)

#: The states an order never leaves.
TERMINAL: frozenset[OrderState] = frozenset({"filled", "canceled", "rejected", "expired"})

#: States in which the order may still execute at the venue (open, or possibly open).
OPEN: frozenset[OrderState] = frozenset({"pending_submit", "accepted", "partially_filled", "unknown"})

TRANSITIONS: Mapping[OrderState, frozenset[OrderState]] = {
    "new": frozenset({"pending_submit", "rejected"}),
    "pending_submit": frozenset(
        {"accepted", "partially_filled", "filled", "canceled", "rejected", "expired", "unknown"}
    ),
    "accepted": frozenset({"partially_filled", "filled", "canceled", "expired", "unknown"}),
    "partially_filled": frozenset({"partially_filled", "filled", "canceled", "expired", "unknown"}),
    "unknown": frozenset({"accepted", "partially_filled", "filled", "canceled", "rejected", "expired"}),
    "filled": frozenset(),
    "canceled": frozenset(),
    "rejected": frozenset(),
    "expired": frozenset(),
}


class IllegalTransition(Exception):
    """An order was asked to move where the state machine does not go."""

    def __init__(self, current: OrderState, target: OrderState) -> None:
        super().__init__(f"an order cannot go from {current} to {target}")
        self.current = current
        self.target = target


def is_legal(current: OrderState, target: OrderState) -> bool:
    """Whether ``current -> target`` is a transition of the machine."""
    return target in TRANSITIONS[current]


def check_transition(current: OrderState, target: OrderState) -> None:
    """Raise ``IllegalTransition`` unless ``current -> target`` is legal."""
    if not is_legal(current, target):
        raise IllegalTransition(current, target)
