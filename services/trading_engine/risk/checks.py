"""The stateless pre-trade checks, one function each, with their reason codes.

Each check reads the order, the context and the figures the gate derived once for the order
(``Figures``), and returns a ``Rejection`` naming its reason code, or ``None``. The stateful ones
(duplicates, message rate) live in their own modules; the kill switch in ``kill_switch``.

A **risk-reducing** order (its worst-case resulting position is smaller in size than the current
one: a sell against a long, a buy against a short) passes the credit, capital, position, exposure
and daily-loss checks: refusing it would keep the account in the risk those limits are about.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from services.trading_engine.risk.context import ZERO, OpenLots, RiskContext, RiskOrder
from shared.instruments import Instrument
from shared.market_hours import MarketHours

BPS = Decimal(10_000)


class Reason:
    """Every reason code the gate gives (snake_case, as ``OrderUpdated.reason_code`` carries it)."""

    KILL_SWITCH = "kill_switch"
    UNKNOWN_SYMBOL = "unknown_symbol"
    CURRENCY_MISMATCH = "currency_mismatch"
    INVALID_QUANTITY = "invalid_quantity"
    RESTRICTED_SYMBOL = "restricted_symbol"
    MARKET_CLOSED = "market_closed"
    NO_REFERENCE_PRICE = "no_reference_price"
    PRICE_COLLAR = "price_collar"
    MAX_ORDER_VALUE = "max_order_value"
    MAX_ORDER_VOLUME = "max_order_volume"
    CREDIT_LIMIT_ACCOUNT = "credit_limit_account"
    CREDIT_LIMIT_TENANT = "credit_limit_tenant"
    INSUFFICIENT_CAPITAL = "insufficient_capital"
    POSITION_LIMIT = "position_limit"
    EXPOSURE_LIMIT = "exposure_limit"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    DUPLICATE_ORDER = "duplicate_order"
    MESSAGE_RATE = "message_rate"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an order is refused: a reason code for machines, a detail for people."""

    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class Figures:
    """What the checks share, derived once per order."""

    instrument: Instrument
    #: Last price of the symbol, ``None`` if there is none yet.
    last: Decimal | None
    #: Price the order's value is taken at: its own price, or the last price for a market order.
    reference: Decimal | None
    #: lots * contract size * reference price (``None`` without a reference price).
    notional: Decimal | None
    position: Decimal
    #: The position if this order and every open order on its side filled (signed lots).
    resulting: Decimal

    @property
    def increases_risk(self) -> bool:
        return abs(self.resulting) > abs(self.position)


def figures(order: RiskOrder, ctx: RiskContext, instrument: Instrument) -> Figures:
    last = ctx.last_prices.get(order.symbol)
    reference = order.own_price if order.type != "market" else last
    notional = instrument.notional(order.quantity, reference) if reference is not None else None
    position = ctx.positions.get(order.symbol, ZERO)
    open_lots = ctx.open_orders.get(order.symbol, OpenLots())
    if order.side == "buy":
        resulting = position + open_lots.buy + order.quantity
    else:
        resulting = position - open_lots.sell - order.quantity
    return Figures(instrument, last, reference, notional, position, resulting)


Check = Callable[[RiskOrder, RiskContext, Figures], Rejection | None]


def currency(order: RiskOrder, ctx: RiskContext, f: Figures) -> Rejection | None:
    if f.instrument.currency_profit != ctx.account.currency:
        return Rejection(
            Reason.CURRENCY_MISMATCH,
            f"{order.symbol} settles in {f.instrument.currency_profit}, the account in {ctx.account.currency}",
        )
    return None


def quantity(order: RiskOrder, ctx: RiskContext, f: Figures) -> Rejection | None:
    error = f.instrument.volume_error(order.quantity)
    return Rejection(Reason.INVALID_QUANTITY, error) if error else None


def restricted(order: RiskOrder, ctx: RiskContext, f: Figures) -> Rejection | None:
    if order.symbol in ctx.limits.restricted_symbols:
        return Rejection(Reason.RESTRICTED_SYMBOL, f"{order.symbol} is restricted for this account")
    return None


def reference_price(order: RiskOrder, ctx: RiskContext, f: Figures) -> Rejection | None:
    # A market order's value cannot be known without a last price, and a collar cannot be applied
    # to a priced order without one: both are refused rather than passed unchecked.
    if f.last is None and (order.type == "market" or ctx.limits.price_collar_bps is not None):
        return Rejection(Reason.NO_REFERENCE_PRICE, f"no last price of {order.symbol} to check the order against")
    return None


def price_collar(order: RiskOrder, ctx: RiskContext, f: Figures) -> Rejection | None:
    collar = ctx.limits.price_collar_bps
    if collar is None or f.last is None:
        return None
    for name, price in (("limit", order.limit_price), ("stop", order.stop_price)):
        if price is None:
            continue
        deviation = abs(price - f.last) * BPS / f.last
        if deviation > collar:
            return Rejection(
                Reason.PRICE_COLLAR,
                f"{name} price {price} is {deviation:.1f} bps from the last price {f.last} (collar {collar} bps)",
            )
    return None


def order_value(order: RiskOrder, ctx: RiskContext, f: Figures) -> Rejection | None:
    limit = ctx.limits.max_order_value
    if limit is not None and f.notional is not None and f.notional > limit:
        return Rejection(Reason.MAX_ORDER_VALUE, f"order value {f.notional} exceeds the maximum {limit}")
    return None


def order_volume(order: RiskOrder, ctx: RiskContext, f: Figures) -> Rejection | None:
    limit = ctx.limits.max_order_lots
    if limit is not None and order.quantity > limit:
        return Rejection(Reason.MAX_ORDER_VOLUME, f"{order.quantity} lots exceeds the maximum of {limit} lots")
    return None


def account_credit(order: RiskOrder, ctx: RiskContext, f: Figures) -> Rejection | None:
    limit = ctx.limits.account_credit_limit
    if limit is None or f.notional is None or not f.increases_risk:
        return None
    total = ctx.account.open_exposure + f.notional
    if total > limit:
        return Rejection(
            Reason.CREDIT_LIMIT_ACCOUNT,
            f"open exposure {ctx.account.open_exposure} + this order {f.notional} "
            f"exceeds the account's credit limit {limit}",
        )
    return None


def tenant_credit(order: RiskOrder, ctx: RiskContext, f: Figures) -> Rejection | None:
    limit = ctx.limits.tenant_credit_limit
    if limit is None or f.notional is None or not f.increases_risk:
        return None
    total = ctx.tenant_open_exposure + f.notional
    if total > limit:
        return Rejection(
            Reason.CREDIT_LIMIT_TENANT,
            f"tenant exposure {ctx.tenant_open_exposure} + this order {f.notional} "
            f"exceeds the tenant's credit limit {limit}",
        )
    return None


def capital(order: RiskOrder, ctx: RiskContext, f: Figures) -> Rejection | None:
    if not ctx.limits.check_capital or f.notional is None or not f.increases_risk:
        return None
    margin = f.notional * f.instrument.margin_rate
    account = ctx.account
    free = account.equity - account.used_margin - account.reserved
    if margin > free:
        return Rejection(
            Reason.INSUFFICIENT_CAPITAL,
            f"margin {margin:.2f} exceeds the free capital {free:.2f} "
            f"(equity {account.equity}, used {account.used_margin}, reserved {account.reserved})",
        )
    return None


def position(order: RiskOrder, ctx: RiskContext, f: Figures) -> Rejection | None:
    limit = ctx.limits.max_position_lots
    if limit is not None and f.increases_risk and abs(f.resulting) > limit:
        return Rejection(
            Reason.POSITION_LIMIT,
            f"resulting position {f.resulting} lots of {order.symbol} (open orders included) exceeds {limit} lots",
        )
    return None


def exposure(order: RiskOrder, ctx: RiskContext, f: Figures) -> Rejection | None:
    limit = ctx.limits.max_symbol_exposure
    if limit is None or f.reference is None or not f.increases_risk:
        return None
    value = f.instrument.notional(abs(f.resulting), f.reference)
    if value > limit:
        return Rejection(
            Reason.EXPOSURE_LIMIT, f"resulting exposure {value} in {order.symbol} exceeds the limit {limit}"
        )
    return None


def daily_loss(order: RiskOrder, ctx: RiskContext, f: Figures) -> Rejection | None:
    limit = ctx.limits.daily_loss_limit
    if limit is None or not f.increases_risk:
        return None
    pnl = ctx.account.pnl_today
    if pnl <= -limit:
        return Rejection(
            Reason.DAILY_LOSS_LIMIT,
            f"today's PnL {pnl} reached the daily loss limit of {limit}: only risk-reducing orders pass",
        )
    return None


class SessionCheck:
    """The trading-session check: no orders into a closed market (``shared.market_hours``, at ``ctx.now_ns``)."""

    def __init__(self) -> None:
        self._calendars: dict[str, MarketHours] = {}

    def __call__(self, order: RiskOrder, ctx: RiskContext, f: Figures) -> Rejection | None:
        if not ctx.limits.check_market_hours:
            return None
        calendar = self._calendars.get(order.symbol)
        if calendar is None:
            calendar = self._calendars[order.symbol] = MarketHours({order.symbol: f.instrument.session})
        if not calendar.is_open(order.symbol, ctx.now_ns):
            return Rejection(Reason.MARKET_CLOSED, f"the {f.instrument.session} market of {order.symbol} is closed")
        return None


#: The stateless checks after the session check, in the order the gate runs them.
STATELESS: tuple[Check, ...] = (
    currency,
    quantity,
    restricted,
    reference_price,
    price_collar,
    order_value,
    order_volume,
    account_credit,
    tenant_credit,
    capital,
    position,
    exposure,
    daily_loss,
)

__all__ = ["STATELESS", "Check", "Figures", "Reason", "Rejection", "SessionCheck", "figures"]
