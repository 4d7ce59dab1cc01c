"""Equity snapshots: every interval, each account's equity per scope at the current marks, and
the marks themselves, written to ClickHouse (the equity curves; what a restart marks from)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from decimal import Decimal

from services.performance_analytics.analytics import Analytics
from services.performance_analytics.store import EquityPoint, PerformanceStore

log = logging.getLogger(__name__)


def equity_points(analytics: Analytics, capital: Decimal, at: dt.datetime) -> list[EquityPoint]:
    """One point per account and scope: equity = capital + realised - commissions + unrealised."""
    points = []
    for ledger in analytics.ledgers.values():
        for scope, pnl in ledger.pnl(analytics.marks).items():
            points.append(
                EquityPoint(
                    tenant=ledger.tenant,
                    account_id=ledger.account_id,
                    scope=scope,
                    ts=at,
                    equity=float(capital + pnl.total),
                    realised=float(pnl.realised),
                    commission=float(pnl.commission),
                    unrealised=float(pnl.unrealised),
                    gross_exposure=float(pnl.gross_exposure),
                    net_exposure=float(pnl.net_exposure),
                )
            )
    return points


class Snapshots:
    """Takes a snapshot now (``take``) or every ``interval_s`` (``run``, a background task)."""

    def __init__(
        self,
        analytics: Analytics,
        store: PerformanceStore,
        capital: Decimal,
        interval_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._analytics, self._store, self._capital = analytics, store, capital
        self._interval_s, self._clock = interval_s, clock

    async def take(self) -> int:
        """Write the snapshot of this instant; returns the number of equity points written."""
        at = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        points = equity_points(self._analytics, self._capital, at)
        if self._analytics.marks:
            await self._store.insert_marks(dict(self._analytics.marks), at)
        await self._store.insert_equity(points)
        return len(points)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.take()
            except Exception:  # ClickHouse away: the next interval tries again, the live state is intact
                log.exception("equity snapshot failed")
