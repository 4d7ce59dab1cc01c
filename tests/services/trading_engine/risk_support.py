"""Orders and contexts for the risk tests: every check off unless a test switches it on."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from services.trading_engine.risk.context import AccountState, OpenLots, RiskContext, RiskOrder
from services.trading_engine.risk.limits import RiskLimits
from shared.instruments import instrument

#: Wednesday 2026-01-07 12:00 UTC: every session is open.
WEDNESDAY_NS = int(dt.datetime(2026, 1, 7, 12, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
#: Saturday 2026-01-10 12:00 UTC: FX and gold closed, BTCUSD open.
SATURDAY_NS = int(dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
S = 1_000_000_000

OFF = RiskLimits(
    price_collar_bps=None,
    max_order_value=None,
    max_order_lots=None,
    max_messages=None,
    account_credit_limit=None,
    tenant_credit_limit=None,
    check_capital=False,
    max_position_lots=None,
    max_symbol_exposure=None,
    daily_loss_limit=None,
    duplicate_window_s=None,
    restricted_symbols=[],
    check_market_hours=False,
    throttle_rejections=None,
    trip_on_daily_loss=False,
)


def limits(**on: Any) -> RiskLimits:
    return OFF.model_copy(update=on)


def order(**kw: Any) -> RiskOrder:
    base: dict[str, Any] = {
        "tenant": "acme",
        "account_id": "acc-1",
        "venue": "paper",
        "symbol": "EURUSD",
        "side": "buy",
        "type": "market",
        "quantity": Decimal("1"),
    }
    base.update(kw)
    return RiskOrder(**base)


def context(
    lim: RiskLimits = OFF,
    *,
    now_ns: int = WEDNESDAY_NS,
    symbol: str = "EURUSD",
    last: str | None = "1.10000",
    position: str = "0",
    open_buy: str = "0",
    open_sell: str = "0",
    tenant_exposure: str = "0",
    **account: Any,
) -> RiskContext:
    state: dict[str, Any] = {"currency": "USD", "balance": Decimal(100_000)}
    state.update({k: Decimal(v) if isinstance(v, str) else v for k, v in account.items()})
    return RiskContext(
        now_ns=now_ns,
        limits=lim,
        account=AccountState(**state),
        instrument=instrument(symbol),
        last_prices={} if last is None else {symbol: Decimal(last)},
        positions={symbol: Decimal(position)},
        open_orders={symbol: OpenLots(Decimal(open_buy), Decimal(open_sell))},
        tenant_open_exposure=Decimal(tenant_exposure),
    )
