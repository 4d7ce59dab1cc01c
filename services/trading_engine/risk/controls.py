"""``RiskControls``: the risk state one engine process holds, in one object for the engine to wire.

It owns the ``LimitsBook``, the ``KillSwitchBoard``, the ``RiskGate`` (which consults the board)
and the ``Throttle``. The engine

* ``load``s it from the store at start, and ``apply``s every ``RiskLimitsChanged`` and
  ``KillSwitchChanged`` it commits or consumes (idempotent: its own events coming back change nothing);
* asks ``limits_for`` when it builds an order's ``RiskContext``, then ``evaluate``s the order;
* reports each rejection (``rejected``: the gate's or the venue's) and each change of an account's
  PnL of the day (``pnl``); a ``KillSwitch`` returned is to be tripped: ``store.trip_switch`` in a
  transaction with the cancellation of its orders, then ``apply`` its event.
"""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from services.trading_engine.risk import store
from services.trading_engine.risk.context import RiskContext, RiskOrder
from services.trading_engine.risk.gate import Decision, RiskGate
from services.trading_engine.risk.kill_switch import KillSwitch, KillSwitchBoard
from services.trading_engine.risk.limits import LimitsBook, RiskLimits
from services.trading_engine.risk.messages import MessageKind
from services.trading_engine.risk.throttle import Throttle
from shared.events import Event, KillSwitchChanged, RiskLimitsChanged


class RiskControls:
    def __init__(self) -> None:
        self.book = LimitsBook()
        self.board = KillSwitchBoard()
        self.gate = RiskGate(self.board)
        self.throttle = Throttle()

    async def load(self, conn: asyncpg.Connection) -> None:
        """The current limits and the tripped switches, from the store."""
        self.book.load(await store.all_current_limits(conn))
        self.board.load(await store.tripped_switches(conn))

    def apply(self, event: Event) -> None:
        """Take in a committed or consumed change of limits or of a switch (other events are ignored)."""
        if isinstance(event, RiskLimitsChanged):
            self.book.apply(event)
        elif isinstance(event, KillSwitchChanged):
            self.board.apply(event)

    def limits_for(self, tenant: str, account_id: str) -> RiskLimits:
        return self.book.limits_for(tenant, account_id)

    def evaluate(self, order: RiskOrder, ctx: RiskContext, kind: MessageKind = "submit") -> Decision:
        return self.gate.evaluate(order, ctx, kind)

    def rejected(self, tenant: str, account_id: str, reason_code: str, now_ns: int) -> KillSwitch | None:
        """One rejection of the account's orders; the switch to trip if it was one too many."""
        return self.throttle.rejected(tenant, account_id, reason_code, self.limits_for(tenant, account_id), now_ns)

    def pnl(self, tenant: str, account_id: str, pnl_today: Decimal, now_ns: int) -> KillSwitch | None:
        """The account's PnL of the day changed; the switch to trip if it reached the daily loss limit."""
        return self.throttle.pnl(tenant, account_id, pnl_today, self.limits_for(tenant, account_id), now_ns)


__all__ = ["RiskControls"]
