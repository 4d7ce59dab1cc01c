"""The paper venue's execution rules, free of storage: what one tick does to one order, what a fill
costs, how a fill changes a netting position, and when a day order's trading day ends.

Prices (Decimal, the instrument's ``digits``):

* the venue's quote is the tick widened by ``extra_spread_points``: half of it is added to the ask
  and half taken from the bid, each rounded away from the trader to the instrument's point (an odd
  number of points costs the trader the extra half point);
* **market** executions (market orders, and stops once triggered) pay ``slippage_bps`` on top: a buy
  at ``ask * (1 + bps / 10000)`` rounded up to the point, a sell at ``bid * (1 - bps / 10000)``
  rounded down;
* a **limit** buy executes when ask <= limit, at ``min(limit, ask)``; a limit sell when bid >= limit,
  at ``max(limit, bid)``; limits never slip;
* a **stop** buy triggers when ask >= stop (a stop sell when bid <= stop) and executes as a market
  order on the same tick; a **stop_limit** becomes a limit at ``limit_price`` once triggered (also
  checked on the triggering tick); the trigger is remembered across ticks and restarts.

Quantities (lots): each tick fills ``remaining * partial_fill_ratio`` rounded down to the
instrument's ``volume_step``, never less than one step and never more than what remains, so the
last fill completes the order exactly.

Times in force, applied on the first tick the order can execute on (for stops: the tick that
triggers them; until then they rest, whatever their time in force, as MT5 applies its filling
policy when a pending order is executed):

* ``ioc`` fills what that tick allows and cancels the rest (``canceled``, reason ``ioc_remainder``;
  ``ioc_not_marketable`` if nothing could fill);
* ``fok`` fills everything on that tick or nothing (``canceled``, reason ``fok_not_filled``): with a
  ``partial_fill_ratio`` below 1 the simulated liquidity of a tick never covers a whole FOK order;
* ``day`` expires (``expired``) at the end of its trading day, ``day_end_ns``;
* ``gtc`` rests until filled or canceled.

Commission of a fill: ``commission_per_lot * lots + commission_bps / 10000 * notional`` where
``notional = lots * contract_size * price``, rounded half-up to cents (0.01 of the account currency).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Literal

import numpy as np
import numpy.typing as npt

from shared.events import OrderType, Side, TimeInForce
from shared.instruments import Instrument
from shared.market_hours import open_hours

BPS = Decimal(10_000)
CENT = Decimal("0.01")
#: Average prices are kept to 8 decimal places, the precision of the events' prices.
PRICE_PLACES = Decimal("1e-8")
HOUR_NS = 3_600_000_000_000
#: How far ahead ``day_end_ns`` looks for a session's close (a closed weekend, then a whole day).
_DAY_END_HORIZON_HOURS = 8 * 24


@dataclass(frozen=True, slots=True)
class Costs:
    """What trading at the paper venue costs, beyond the tick's own spread."""

    extra_spread_points: Decimal = Decimal(0)
    slippage_bps: Decimal = Decimal(0)
    commission_per_lot: Decimal = Decimal(0)
    commission_bps: Decimal = Decimal(0)
    partial_fill_ratio: Decimal = Decimal(1)


@dataclass(frozen=True, slots=True)
class Quote:
    """The venue's bid and ask on one tick (the tick's, widened by the extra spread)."""

    bid: Decimal
    ask: Decimal


@dataclass(frozen=True, slots=True)
class WorkingOrder:
    """What the rules need of an open order."""

    side: Side
    type: OrderType
    time_in_force: TimeInForce
    quantity: Decimal
    filled_quantity: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    triggered: bool

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity


@dataclass(frozen=True, slots=True)
class Action:
    """What one tick does to one order: trigger it, fill ``quantity`` at ``price``, then close it."""

    triggered: bool
    quantity: Decimal = Decimal(0)
    price: Decimal | None = None
    #: The order ends ``canceled`` after this tick's fill (if any), for ``reason_code``.
    cancel_reason: Literal["ioc_remainder", "ioc_not_marketable", "fok_not_filled"] | None = None


def _to_point(price: Decimal, point: Decimal, rounding: str) -> Decimal:
    return price.quantize(point, rounding=rounding)


def venue_quote(bid: Decimal, ask: Decimal, instrument: Instrument, costs: Costs) -> Quote:
    """The tick's bid and ask widened by half the extra spread each, rounded against the trader."""
    half = costs.extra_spread_points * instrument.point / 2
    point = instrument.point
    return Quote(bid=_to_point(bid - half, point, ROUND_FLOOR), ask=_to_point(ask + half, point, ROUND_CEILING))


def market_price(side: Side, quote: Quote, instrument: Instrument, costs: Costs) -> Decimal:
    """Where a market execution happens: the quote's far side plus slippage, rounded against the trader."""
    slip = costs.slippage_bps / BPS
    if side == "buy":
        return _to_point(quote.ask * (1 + slip), instrument.point, ROUND_CEILING)
    return _to_point(quote.bid * (1 - slip), instrument.point, ROUND_FLOOR)


def limit_price(side: Side, limit: Decimal, quote: Quote) -> Decimal | None:
    """Where a limit executes on ``quote``, or ``None`` if the quote does not reach it."""
    if side == "buy":
        return min(limit, quote.ask) if quote.ask <= limit else None
    return max(limit, quote.bid) if quote.bid >= limit else None


def stop_reached(side: Side, stop: Decimal, quote: Quote) -> bool:
    """Whether ``quote`` triggers a stop (a buy stop at the ask, a sell stop at the bid)."""
    return quote.ask >= stop if side == "buy" else quote.bid <= stop


def fill_quantity(remaining: Decimal, ratio: Decimal, step: Decimal) -> Decimal:
    """The lots one tick fills: ``remaining * ratio`` down to the step, at least one step, at most all."""
    share = (remaining * ratio / step).to_integral_value(rounding=ROUND_DOWN) * step
    return min(remaining, max(step, share))


def commission(quantity: Decimal, price: Decimal, instrument: Instrument, costs: Costs) -> Decimal:
    """Fees of one fill, in the account's currency, rounded half-up to cents."""
    fee = costs.commission_per_lot * quantity + costs.commission_bps / BPS * instrument.notional(quantity, price)
    return fee.quantize(CENT, rounding=ROUND_HALF_UP)


def on_tick(order: WorkingOrder, quote: Quote, instrument: Instrument, costs: Costs) -> Action:
    """What ``quote`` does to ``order`` (already eligible: its latency has passed)."""
    triggered = order.triggered
    if order.type in ("stop", "stop_limit") and not triggered:
        assert order.stop_price is not None
        if not stop_reached(order.side, order.stop_price, quote):
            return Action(triggered=False)
        triggered = True
    price: Decimal | None
    if order.type in ("market", "stop"):
        price = market_price(order.side, quote, instrument, costs)
    else:
        assert order.limit_price is not None
        price = limit_price(order.side, order.limit_price, quote)
    tif = order.time_in_force
    if price is None:
        if tif == "ioc":
            return Action(triggered, cancel_reason="ioc_not_marketable")
        if tif == "fok":
            return Action(triggered, cancel_reason="fok_not_filled")
        return Action(triggered)
    quantity = fill_quantity(order.remaining, costs.partial_fill_ratio, instrument.volume_step)
    if tif == "fok" and quantity < order.remaining:
        return Action(triggered, cancel_reason="fok_not_filled")
    if tif == "ioc" and quantity < order.remaining:
        return Action(triggered, quantity, price, cancel_reason="ioc_remainder")
    return Action(triggered, quantity, price)


@dataclass(frozen=True, slots=True)
class Position:
    """A netting position: signed lots (> 0 long) at an average price, and the profit realised so far."""

    quantity: Decimal = Decimal(0)
    average_price: Decimal = Decimal(0)
    realized_pnl: Decimal = Decimal(0)


def apply_fill(position: Position, side: Side, quantity: Decimal, price: Decimal, contract_size: Decimal) -> Position:
    """``position`` after a fill: adding averages the price in (to 8 decimal places, half-even);
    reducing keeps it and realises
    ``closed lots * contract_size * (price - average)`` (sign of the side held); going through zero
    opens the rest at ``price``; a closed position has average price 0."""
    signed = quantity if side == "buy" else -quantity
    held = position.quantity
    new = held + signed
    if held == 0 or (held > 0) == (signed > 0):
        average = ((abs(held) * position.average_price + quantity * price) / abs(new)).quantize(PRICE_PLACES)
        return Position(new, average, position.realized_pnl)
    closed = min(quantity, abs(held))
    direction = 1 if held > 0 else -1
    realized = position.realized_pnl + closed * contract_size * (price - position.average_price) * direction
    if new == 0:
        return Position(Decimal(0), Decimal(0), realized)
    if (new > 0) == (held > 0):
        return Position(new, position.average_price, realized)
    return Position(new, price, realized)


@functools.cache
def _open_hours(session: str) -> npt.NDArray[np.bool_]:
    return open_hours(session)


def day_end_ns(session: str, submitted_ns: int, day_end_utc_hour: int) -> int:
    """When a day order submitted at ``submitted_ns`` in ``session`` (``shared.market_hours``) expires:
    the first hour boundary after it at which the session closes or the trading day rolls over
    (``day_end_utc_hour`` UTC, 22:00 by default: 17:00 New York, where FX and metals end their day;
    crypto, which never closes, uses it too). An order submitted while the market is closed lives
    through the next session's day."""
    table = _open_hours(session)

    def is_open(t_ns: int) -> tuple[bool, int]:
        at = dt.datetime.fromtimestamp(t_ns // 1_000_000_000, dt.UTC)
        return bool(table[at.weekday(), at.hour]), at.hour

    seen_open = is_open(submitted_ns)[0]
    boundary = (submitted_ns // HOUR_NS + 1) * HOUR_NS
    for _ in range(_DAY_END_HORIZON_HOURS):
        now_open, hour = is_open(boundary)
        if seen_open and (not now_open or hour == day_end_utc_hour):
            return boundary
        seen_open = seen_open or now_open
        boundary += HOUR_NS
    return boundary
