"""The automatic throttle: trips an account's kill switch on repeated rejections or on its daily loss.

* ``rejected(...)``: one rejection of an order of the account, by the risk gate or by the venue.
  The ``throttle_rejections``-th within ``throttle_window_s`` trips the account's switch
  (actor ``throttle:rejections``). Rejections by a kill switch do not count (the account is
  already stopped), and counting starts afresh after a trip.
* ``pnl(...)``: the account's PnL of the trading day changed (a fill, a price). At or below minus
  ``daily_loss_limit``, with ``trip_on_daily_loss``, it trips the account's switch (actor
  ``throttle:daily_loss``), once per account and trading day: after a person reset it, the gate's
  ``daily_loss_limit`` check still refuses risk-increasing orders that day, reducing ones pass.

Pure: the time is given (``now_ns``), nothing is stored; the caller stores the ``KillSwitch`` it
returns (``store.trip_switch``), which also makes a second trip of an already tripped scope a no-op.
The rejection window reuses ``shared.ratelimit``: a window of capacity N-1 refuses the N-th.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from services.trading_engine.risk.checks import Reason
from services.trading_engine.risk.kill_switch import KillSwitch, trip
from services.trading_engine.risk.limits import RiskLimits
from services.trading_engine.risk.messages import MessageRate

REJECTIONS_ACTOR = "throttle:rejections"
DAILY_LOSS_ACTOR = "throttle:daily_loss"


def trading_day(now_ns: int) -> dt.date:
    """The trading day ``now_ns`` falls in: the UTC date (PnL "today" is computed on the same day)."""
    return dt.datetime.fromtimestamp(now_ns // 1_000_000_000, dt.UTC).date()


class Throttle:
    def __init__(self) -> None:
        self._windows = MessageRate()
        #: Trips so far per account: a new generation of its window after each trip.
        self._generation: dict[tuple[str, str], int] = {}
        self._loss_tripped: set[tuple[str, str, dt.date]] = set()

    def rejected(
        self, tenant: str, account_id: str, reason_code: str, limits: RiskLimits, now_ns: int
    ) -> KillSwitch | None:
        """Count a rejection; the account's switch to trip if it was one too many."""
        n = limits.throttle_rejections
        if n is None or reason_code == Reason.KILL_SWITCH:
            return None
        key = (tenant, account_id)
        generation = self._generation.get(key, 0)
        wait = self._windows.acquire(f"{tenant}/{account_id}#{generation}", now_ns, n - 1, limits.throttle_window_s)
        if wait == 0.0:
            return None
        self._generation[key] = generation + 1
        return trip(
            scope="account",
            target=account_id,
            tenant=tenant,
            actor=REJECTIONS_ACTOR,
            reason=f"{n} rejections within {limits.throttle_window_s} s (the last: {reason_code})",
            now_ns=now_ns,
            automatic=True,
        )

    def pnl(
        self, tenant: str, account_id: str, pnl_today: Decimal, limits: RiskLimits, now_ns: int
    ) -> KillSwitch | None:
        """The account's switch to trip if ``pnl_today`` reached the daily loss limit (once a day)."""
        limit = limits.daily_loss_limit
        if limit is None or not limits.trip_on_daily_loss or pnl_today > -limit:
            return None
        day_key = (tenant, account_id, trading_day(now_ns))
        if day_key in self._loss_tripped:
            return None
        self._loss_tripped = {k for k in self._loss_tripped if k[2] == day_key[2]}
        self._loss_tripped.add(day_key)
        return trip(
            scope="account",
            target=account_id,
            tenant=tenant,
            actor=DAILY_LOSS_ACTOR,
            reason=f"daily loss limit {limit} reached (PnL today {pnl_today})",
            now_ns=now_ns,
            automatic=True,
        )


__all__ = ["DAILY_LOSS_ACTOR", "REJECTIONS_ACTOR", "Throttle", "trading_day"]
