"""The pre-trade risk gate: every order passes here before it may go to ``pending_submit``.

``RiskGate.check(order, ctx)`` answers the first ``Rejection`` or ``None`` (the engine's
``PreTradeCheck`` seam); ``evaluate`` gives the whole ``Decision``. The order of evaluation:

1. the kill switch (if the gate has a board): a blocked order is refused with ``kill_switch`` alone;
2. the symbol must be known (``unknown_symbol``), then the session check and every stateless
   check (``checks.STATELESS``): **all** their failures are listed, each with its reason code, so
   a person sees at once everything wrong with an order;
3. only an order that passed all of them meets the stateful checks, in this order: duplicate
   (``duplicate_order``), then the message rate (``message_rate``, which counts the message). So a
   rejected order neither uses the account's message budget nor becomes the "original" a later
   order would duplicate; the throttle (``throttle.py``) is what counts rejections.

A modify is evaluated as its new terms (``kind="modify"``) with a context whose open orders leave
out the order being modified (else its old terms count twice). Pure and synchronous: no I/O, the
time is ``ctx.now_ns``. Not thread-safe (one event loop).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.trading_engine.risk.checks import STATELESS, Reason, Rejection, SessionCheck, figures
from services.trading_engine.risk.context import RiskContext, RiskOrder
from services.trading_engine.risk.duplicates import DuplicateDetector
from services.trading_engine.risk.kill_switch import KillSwitchBoard, OrderFacts
from services.trading_engine.risk.messages import MessageKind, MessageRate

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Decision:
    """The gate's verdict on one order: accepted when ``rejections`` is empty."""

    rejections: tuple[Rejection, ...] = ()

    @property
    def accepted(self) -> bool:
        return not self.rejections

    @property
    def first(self) -> Rejection | None:
        return self.rejections[0] if self.rejections else None

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.rejections]


ACCEPTED = Decision()


class RiskGate:
    def __init__(self, board: KillSwitchBoard | None = None) -> None:
        self._board = board
        self._session = SessionCheck()
        self._duplicates = DuplicateDetector()
        self._messages = MessageRate()

    def check(self, order: RiskOrder, ctx: RiskContext, kind: MessageKind = "submit") -> Rejection | None:
        """The first reason to refuse ``order``, or ``None`` (it passed, and was counted)."""
        return self.evaluate(order, ctx, kind).first

    def evaluate(self, order: RiskOrder, ctx: RiskContext, kind: MessageKind = "submit") -> Decision:
        """Every reason to refuse ``order`` (a submit, or the new terms of a modify)."""
        if self._board is not None:
            switch = self._board.is_blocked(OrderFacts(order.tenant, order.account_id, order.venue, order.strategy))
            if switch is not None:
                where = switch.scope if switch.target is None else f"{switch.scope} {switch.target}"
                return Decision(
                    (
                        Rejection(
                            Reason.KILL_SWITCH, f"kill switch {switch.switch_id} ({where}) is tripped: {switch.reason}"
                        ),
                    )
                )
        instrument = ctx.instrument
        if instrument is None or instrument.symbol != order.symbol:
            return Decision((Rejection(Reason.UNKNOWN_SYMBOL, f"{order.symbol} is not a symbol the platform trades"),))
        f = figures(order, ctx, instrument)
        failed = [r for r in (self._session(order, ctx, f), *(check(order, ctx, f) for check in STATELESS)) if r]
        if failed:
            return Decision(tuple(failed))
        window = ctx.limits.duplicate_window_s
        if window is not None:
            previous = self._duplicates.previous(order, ctx.now_ns, window)
            if previous is not None:
                ago = (ctx.now_ns - previous) / NS
                return Decision(
                    (
                        Rejection(
                            Reason.DUPLICATE_ORDER, f"the same order was accepted {ago:.3f} s ago (window {window} s)"
                        ),
                    )
                )
        refused = self._admit(order.tenant, order.account_id, ctx, kind)
        if refused is not None:
            return Decision((refused,))
        if window is not None:
            self._duplicates.record(order, ctx.now_ns)
        return ACCEPTED

    def admit_message(
        self, tenant: str, account_id: str, ctx: RiskContext, kind: MessageKind = "cancel"
    ) -> Rejection | None:
        """Count a message that is not a new order (a cancel) against the account's rate.

        The kill switch's own cancellations do not come through here: an emergency is never rate-limited.
        """
        return self._admit(tenant, account_id, ctx, kind)

    def _admit(self, tenant: str, account_id: str, ctx: RiskContext, kind: MessageKind) -> Rejection | None:
        limit = ctx.limits.max_messages
        if limit is None:
            return None
        window = ctx.limits.message_window_s
        wait = self._messages.acquire(f"{tenant}/{account_id}", ctx.now_ns, limit, window)
        if wait > 0:
            return Rejection(
                Reason.MESSAGE_RATE,
                f"{kind} refused: more than {limit} messages in {window} s from this account (retry in {wait:.3f} s)",
            )
        return None


__all__ = ["ACCEPTED", "Decision", "RiskGate"]
