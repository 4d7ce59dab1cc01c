"""Aggregation: one account's positions and trades, with PnL and trade results per scope.

A scope is what a result is reported under: the account itself, a symbol, a strategy (the
order's ``attribution.strategy``; orders without one are ``manual``), a bot, and a model
version (``name:version``). A trade belongs to the account, its symbol, its strategy and bot
with weight 1, and to each model behind its opening order with that model's weight (they
sum to 1: the signal's contribution weights when the signal was seen, else an equal split).
Every booking of a trade (realised PnL, commission) and, while it is open, its unrealised PnL
and exposure, count in each of its scopes times the weight.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from services.performance_analytics.accounting import ZERO, Applied, FillFact, Position, Trade, apply_fill

#: (kind, name): ``("account", "")``, ``("symbol", "EURUSD")``, ``("strategy", "rsi")``,
#: ``("bot", "<uuid>")``, ``("model", "xgb:3")``.
Scope = tuple[str, str]
ACCOUNT: Scope = ("account", "")
MANUAL = "manual"
SCOPE_KINDS = ("account", "symbol", "strategy", "bot", "model")


def scopes_of(trade: Trade) -> Iterator[tuple[Scope, Decimal]]:
    """Every scope ``trade`` counts in, with its weight."""
    yield ACCOUNT, Decimal(1)
    yield ("symbol", trade.symbol), Decimal(1)
    yield ("strategy", trade.strategy or MANUAL), Decimal(1)
    if trade.bot_id:
        yield ("bot", trade.bot_id), Decimal(1)
    for model, weight in trade.model_weights.items():
        yield ("model", model), Decimal(repr(weight))


@dataclass(frozen=True, slots=True)
class ClosedResult:
    """A closed trade as one scope sees it: its share of the net result, and what it was."""

    trade_id: str
    symbol: str
    #: The scope's share (weight x the trade's net result).
    net: Decimal
    #: The whole trade made money (net > 0): a hit for every model behind it.
    won: bool
    confidence: float | None
    opened_ns: int
    closed_ns: int


@dataclass(slots=True)
class ScopeTotals:
    realised: Decimal = ZERO  # gross, weighted
    commission: Decimal = ZERO
    closed: list[ClosedResult] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Quote:
    bid: Decimal
    ask: Decimal
    ts_ns: int


@dataclass(frozen=True, slots=True)
class ScopePnL:
    """A scope's PnL at the marks: realised (gross), commissions, unrealised, and exposure."""

    realised: Decimal
    commission: Decimal
    unrealised: Decimal
    gross_exposure: Decimal
    net_exposure: Decimal
    open_trades: int

    @property
    def total(self) -> Decimal:
        """Net PnL: realised - commissions + unrealised."""
        return self.realised - self.commission + self.unrealised


class AccountLedger:
    """Positions, trades and per-scope totals of one account of one tenant."""

    def __init__(self, tenant: str, account_id: str) -> None:
        self.tenant = tenant
        self.account_id = account_id
        self.positions: dict[str, Position] = {}
        self.totals: dict[Scope, ScopeTotals] = {}
        self.fills = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None

    def apply(self, fill: FillFact) -> Applied:
        position = self.positions.get(fill.symbol)
        if position is None:
            position = self.positions[fill.symbol] = Position(fill.symbol, fill.contract_size)
        applied = apply_fill(position, fill)
        for trade, realised, commission in applied.bookings:
            for scope, weight in scopes_of(trade):
                totals = self.totals.setdefault(scope, ScopeTotals())
                totals.realised += realised * weight
                totals.commission += commission * weight
        closed = applied.closed
        if closed is not None and closed.closed_ns is not None:
            for scope, weight in scopes_of(closed):
                self.totals[scope].closed.append(
                    ClosedResult(
                        trade_id=str(closed.trade_id),
                        symbol=closed.symbol,
                        net=closed.net * weight,
                        won=closed.net > 0,
                        confidence=closed.confidence,
                        opened_ns=closed.opened_ns,
                        closed_ns=closed.closed_ns,
                    )
                )
        self.fills += 1
        self.first_ns = fill.ts_ns if self.first_ns is None else min(self.first_ns, fill.ts_ns)
        self.last_ns = fill.ts_ns if self.last_ns is None else max(self.last_ns, fill.ts_ns)
        return applied

    def pnl(self, marks: Mapping[str, Quote]) -> dict[Scope, ScopePnL]:
        """Every scope's PnL at ``marks`` (symbols without a quote: the last fill's price)."""
        unrealised: dict[Scope, Decimal] = {}
        gross: dict[Scope, Decimal] = {}
        net: dict[Scope, Decimal] = {}
        open_trades: dict[Scope, int] = {}
        for position in self.positions.values():
            if position.trade is None:
                continue
            quote = marks.get(position.symbol)
            bid, ask = (quote.bid, quote.ask) if quote else (None, None)
            open_pnl = position.unrealised(bid, ask)
            notional = position.notional(bid, ask)
            for scope, weight in scopes_of(position.trade):
                unrealised[scope] = unrealised.get(scope, ZERO) + open_pnl * weight
                gross[scope] = gross.get(scope, ZERO) + abs(notional) * weight
                net[scope] = net.get(scope, ZERO) + notional * weight
                open_trades[scope] = open_trades.get(scope, 0) + 1
        scopes = set(self.totals) | set(unrealised) | {ACCOUNT}
        out = {}
        for scope in scopes:
            totals = self.totals.get(scope) or ScopeTotals()
            out[scope] = ScopePnL(
                realised=totals.realised,
                commission=totals.commission,
                unrealised=unrealised.get(scope, ZERO),
                gross_exposure=gross.get(scope, ZERO),
                net_exposure=net.get(scope, ZERO),
                open_trades=open_trades.get(scope, 0),
            )
        return out

    def closed(self, scope: Scope) -> list[ClosedResult]:
        totals = self.totals.get(scope)
        return list(totals.closed) if totals else []
