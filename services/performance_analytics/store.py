"""performance-analytics's tables in ClickHouse (migrations/clickhouse): fills, signals, marks, equity.

Reads use ``FINAL`` (a row written twice is one row); decimals are read back as text
(``toString``) so they stay exact, 64-bit integers come back as JSON strings (ClickHouse
quotes them) and are converted here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import orjson

from services.performance_analytics.accounting import FillFact
from services.performance_analytics.analytics import SignalFacts
from services.performance_analytics.ledger import Quote, Scope
from shared.clickhouse import ClickHouse, literal
from shared.events import OrderUpdated

FILL_COLUMNS = (
    "event_id", "received_ns", "tenant", "account_id", "symbol", "side", "quantity", "price", "commission",
    "contract_size", "ts_event", "strategy", "bot_id", "signal_id", "model_weights", "confidence",
)  # fmt: skip
EQUITY_COLUMNS = (
    "tenant", "account_id", "scope_kind", "scope", "ts", "equity", "realised", "commission", "unrealised",
    "gross_exposure", "net_exposure",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """One sample of a scope's equity curve."""

    tenant: str
    account_id: str
    scope: Scope
    ts: dt.datetime
    equity: float
    realised: float
    commission: float
    unrealised: float
    gross_exposure: float
    net_exposure: float

    def row(self) -> tuple[object, ...]:
        return (self.tenant, self.account_id, self.scope[0], self.scope[1], self.ts, self.equity, self.realised,
                self.commission, self.unrealised, self.gross_exposure, self.net_exposure)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Curve:
    """A stored equity curve, as arrays (ms since the epoch, money)."""

    ts_ms: np.ndarray
    equity: np.ndarray
    realised: np.ndarray
    commission: np.ndarray
    unrealised: np.ndarray


class PerformanceStore:
    def __init__(self, ch: ClickHouse) -> None:
        self._ch = ch

    # -- fills ---------------------------------------------------------------------------------

    async def insert_fills(self, facts: Sequence[tuple[FillFact, int]]) -> None:
        """Store ``(fact, received_ns)`` pairs (the order they are counted in)."""
        await self._ch.insert(
            "performance.fills",
            FILL_COLUMNS,
            [
                (
                    str(f.fill_id),
                    received,
                    f.tenant,
                    f.account_id,
                    f.symbol,
                    f.side,
                    f.quantity,
                    f.price,
                    f.commission,
                    f.contract_size,
                    f.ts_ns,
                    f.strategy,
                    f.bot_id,
                    f.signal_id,
                    orjson.dumps(dict(f.model_weights)).decode(),
                    f.confidence,
                )
                for f, received in facts
            ],
        )

    async def fills(self) -> list[FillFact]:
        """Every stored fill in the order it was counted."""
        rows = await self._ch.rows(
            "SELECT toString(event_id), tenant, account_id, symbol, side, toString(quantity), toString(price), "
            "toString(commission), toString(contract_size), ts_event, strategy, bot_id, signal_id, model_weights, "
            "confidence FROM performance.fills FINAL ORDER BY received_ns, event_id"
        )
        return [
            FillFact(
                fill_id=uuid.UUID(r[0]),
                tenant=r[1],
                account_id=r[2],
                symbol=r[3],
                side=r[4],
                quantity=Decimal(r[5]),
                price=Decimal(r[6]),
                commission=Decimal(r[7]),
                contract_size=Decimal(r[8]),
                ts_ns=int(r[9]),
                strategy=r[10],
                bot_id=r[11],
                signal_id=r[12],
                model_weights=orjson.loads(r[13]),
                confidence=r[14],
            )
            for r in rows
        ]

    # -- signals -------------------------------------------------------------------------------

    async def insert_signals(self, signals: Iterable[SignalFacts]) -> None:
        await self._ch.insert(
            "performance.signals",
            ("signal_id", "ts_event", "symbol", "confidence", "weights"),
            [(s.signal_id, s.ts_ns, s.symbol, s.confidence, orjson.dumps(s.weights).decode()) for s in signals],
        )

    async def signals(self, since_ns: int, limit: int) -> list[SignalFacts]:
        """The newest ``limit`` signals since ``since_ns``, oldest first."""
        rows = await self._ch.rows(
            "SELECT signal_id, ts_event, symbol, confidence, weights FROM ("
            f"SELECT * FROM performance.signals FINAL WHERE ts_event >= {int(since_ns)} "
            f"ORDER BY ts_event DESC LIMIT {int(limit)}) ORDER BY ts_event"
        )
        return [SignalFacts(r[0], int(r[1]), r[2], float(r[3]), orjson.loads(r[4])) for r in rows]

    # -- marks ---------------------------------------------------------------------------------

    async def insert_marks(self, marks: Mapping[str, Quote], at: dt.datetime) -> None:
        await self._ch.insert(
            "performance.marks", ("symbol", "ts", "bid", "ask"), [(s, at, q.bid, q.ask) for s, q in marks.items()]
        )

    async def marks(self) -> dict[str, Quote]:
        """The last stored quote of every symbol."""
        rows = await self._ch.rows(
            "SELECT symbol, toString(argMax(bid, ts)), toString(argMax(ask, ts)), toUnixTimestamp64Milli(max(ts)) "
            "FROM performance.marks FINAL GROUP BY symbol"
        )
        return {r[0]: Quote(Decimal(r[1]), Decimal(r[2]), int(r[3]) * 1_000_000) for r in rows}

    # -- orders --------------------------------------------------------------------------------

    async def insert_orders(self, orders: Iterable[OrderUpdated]) -> None:
        await self._ch.insert(
            "performance.orders",
            ("tenant", "account_id", "order_id", "version", "state", "symbol", "ts_event"),
            [(o.tenant, o.account_id, str(o.order_id), o.version, o.state, o.symbol, o.ts_event) for o in orders],
        )

    async def order_states(self, tenant: str, account_id: str) -> dict[str, int]:
        """How many of the account's orders are in each state now (their newest version)."""
        rows = await self._ch.rows(
            "SELECT state, count() FROM performance.orders FINAL "
            f"WHERE tenant = {literal(tenant)} AND account_id = {literal(account_id)} GROUP BY state ORDER BY state"
        )
        return {r[0]: int(r[1]) for r in rows}

    # -- equity curves -------------------------------------------------------------------------

    async def insert_equity(self, points: Sequence[EquityPoint]) -> None:
        await self._ch.insert("performance.equity", EQUITY_COLUMNS, [p.row() for p in points])

    async def curve(
        self,
        tenant: str,
        account_id: str,
        scope: Scope,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        limit: int | None = None,
    ) -> Curve:
        """A scope's stored curve, ascending, within ``[start, end]``."""
        where = [
            f"tenant = {literal(tenant)}",
            f"account_id = {literal(account_id)}",
            f"scope_kind = {literal(scope[0])}",
            f"scope = {literal(scope[1])}",
        ]
        if start is not None:
            where.append(f"ts >= toDateTime64({literal(start)}, 3, 'UTC')")
        if end is not None:
            where.append(f"ts <= toDateTime64({literal(end)}, 3, 'UTC')")
        rows = await self._ch.rows(
            "SELECT toUnixTimestamp64Milli(ts), equity, realised, commission, unrealised FROM performance.equity "
            f"FINAL WHERE {' AND '.join(where)} ORDER BY ts" + (f" LIMIT {int(limit)}" if limit else "")
        )
        if not rows:
            empty = np.empty(0, np.float64)
            return Curve(np.empty(0, np.int64), empty, empty, empty, empty)
        columns = list(zip(*rows, strict=True))
        return Curve(
            ts_ms=np.array([int(v) for v in columns[0]], np.int64),
            equity=np.array(columns[1], np.float64),
            realised=np.array(columns[2], np.float64),
            commission=np.array(columns[3], np.float64),
            unrealised=np.array(columns[4], np.float64),
        )
