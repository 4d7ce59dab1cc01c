"""What the gate judges (``RiskOrder``) and the facts it judges it against (``RiskContext``).

The engine builds both from its own state for each order; the gate reads nothing else (no
database, no clock, no bus), so the same checks run live, in the backtester and in tests.
Quantities are lots, money is in the account's currency, prices in the symbol's quote currency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from services.trading_engine.risk.limits import RiskLimits
from shared.events import OrderType, Side
from shared.instruments import Instrument

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class RiskOrder:
    """An order (or the new terms of a modified one) as the gate sees it."""

    tenant: str
    account_id: str
    venue: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    #: The strategy that sent it (a bot's), ``None`` for a manual order: kill-switch scope ``strategy``.
    strategy: str | None = None

    @property
    def own_price(self) -> Decimal | None:
        """The price the order names: limit price, else stop price (market orders name none)."""
        return self.limit_price if self.limit_price is not None else self.stop_price


@dataclass(frozen=True, slots=True)
class OpenLots:
    """Lots of one symbol in the account's open orders (not yet filled), by side."""

    buy: Decimal = ZERO
    sell: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class AccountState:
    """The account's money and exposure when the order arrives."""

    currency: str
    balance: Decimal
    #: Margin reserved for open orders (BalanceManager).
    reserved: Decimal = ZERO
    #: Margin held by open positions.
    used_margin: Decimal = ZERO
    #: Notional of every open position and open order of the account, all symbols (absolute values).
    open_exposure: Decimal = ZERO
    #: PnL of the trading day: closed trades, and the open positions marked to the last prices.
    realised_pnl_today: Decimal = ZERO
    unrealised_pnl: Decimal = ZERO

    @property
    def equity(self) -> Decimal:
        return self.balance + self.unrealised_pnl

    @property
    def pnl_today(self) -> Decimal:
        return self.realised_pnl_today + self.unrealised_pnl


@dataclass(frozen=True, slots=True)
class RiskContext:
    """Everything the checks need, as of ``now_ns`` (the engine's clock, injected)."""

    now_ns: int
    limits: RiskLimits
    account: AccountState
    #: The order's symbol's reference data (``shared.instruments``), ``None`` if the platform does not know it.
    instrument: Instrument | None
    #: Last traded (or mid) price per symbol.
    last_prices: Mapping[str, Decimal] = field(default_factory=dict)
    #: The account's signed net position per symbol, in lots (> 0 long).
    positions: Mapping[str, Decimal] = field(default_factory=dict)
    #: The account's open orders per symbol.
    open_orders: Mapping[str, OpenLots] = field(default_factory=dict)
    #: Notional of every open position and order of the tenant, all accounts.
    tenant_open_exposure: Decimal = ZERO


__all__ = ["AccountState", "OpenLots", "RiskContext", "RiskOrder"]
