"""Trading on the simulated terminal: one account's orders, deals and positions.

:class:`TradingDesk` is the simulated trade server behind ``order_send``,
``order_check``, ``orders_get``, ``positions_get`` and ``history_*_get``.  It
executes against the simulated market the terminal generates:

* market deals (``TRADE_ACTION_DEAL``) fill at once, at the ask (buy) or bid
  (sell) of the latest tick; a non-zero ``price`` in the request is checked
  against ``deviation`` points and the request requoted (10004) when the
  market has moved further;
* pending orders (limit, stop, stop-limit) wait for the ticks that trigger
  them, as do a position's stop loss and take profit (closing deals with
  reason SL/TP) and an order's expiry.  The desk catches up on the ticks
  between its last visit and "now" whenever it is called (:meth:`advance`),
  so time is the terminal's clock, never the wall clock's;
* the account is netting (one position per symbol) by default, or hedging;
  balance moves by each deal's profit + commission; equity, margin and free
  margin follow the open positions at the latest prices; a deal whose margin
  does not fit the free margin is refused with NO_MONEY;
* requests are checked as the trade server checks them, in its order, with
  its return codes (INVALID_VOLUME against volume min/max/step, MARKET_CLOSED
  outside the symbol's session, INVALID_FILL, INVALID_PRICE, INVALID_STOPS,
  INVALID_EXPIRATION, PRICE_OFF without quotes...).

Triggers apply in time order across symbols, at the tick that reached them (a
gap fills at the gap's price).  Liquidity is unlimited unless a test limits it
(``liquidity``): a filled order fills its whole volume.  Not simulated: swaps,
stop-out, the broker's own requotes (the deviation check stands in for them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from shared.market_hours import open_hours

from . import constants as c
from .records import (
    AccountInfo,
    OrderCheckResult,
    OrderSendResult,
    Tick,
    TradeDeal,
    TradeOrder,
    TradePosition,
    TradeRequest,
)
from .symbols import SymbolSpec

#: MT5 keeps at most this many characters of an order's comment (the rest is cut off).
COMMENT_LENGTH = 31
#: Version of :meth:`TradingDesk.to_state`'s layout.
STATE_FORMAT = 1
#: Commission charged per lot on every deal (entry and exit), in the account currency.
DEFAULT_COMMISSION_PER_LOT = 3.0

_DAY_MSC = 86_400_000
_BUY_TYPES = frozenset({c.ORDER_TYPE_BUY, c.ORDER_TYPE_BUY_LIMIT, c.ORDER_TYPE_BUY_STOP, c.ORDER_TYPE_BUY_STOP_LIMIT})
_TIME_TYPES = frozenset({c.ORDER_TIME_GTC, c.ORDER_TIME_DAY, c.ORDER_TIME_SPECIFIED, c.ORDER_TIME_SPECIFIED_DAY})
_PENDING_TYPES = frozenset(range(c.ORDER_TYPE_BUY_LIMIT, c.ORDER_TYPE_SELL_STOP_LIMIT + 1))
_INT_FIELDS = frozenset(
    {"action", "magic", "order", "deviation", "type", "type_filling", "type_time", "expiration",
     "position", "position_by"}
)  # fmt: skip
_FLOAT_FIELDS = frozenset({"volume", "price", "stoplimit", "sl", "tp"})
_STR_FIELDS = frozenset({"symbol", "comment"})


#: What a trigger does, given the bid, ask and time (ms) of the tick that fired it.
_Apply = Callable[[float, float, int], None]


class _Feed:
    """A symbol's ticks for one catch-up, and how far the triggers have got through them."""

    def __init__(self, ticks: np.ndarray) -> None:
        quoted = ticks[(ticks["bid"] > 0) & (ticks["ask"] > 0)]
        self.bid, self.ask, self.times = quoted["bid"], quoted["ask"], quoted["time_msc"]
        self.first = 0


class BadRequest(ValueError):
    """The request is not a well-formed MqlTradeRequest (the call fails with "Invalid params")."""


class Market(Protocol):
    """What the desk needs from the terminal's market data."""

    def spec(self, symbol: str) -> SymbolSpec | None: ...

    def tick(self, symbol: str, now_msc: int) -> Tick: ...

    def ticks(self, symbol: str, start_msc: int, end_msc: int) -> np.ndarray: ...


def parse_request(request: object) -> TradeRequest:
    """The ``order_send``/``order_check`` argument as a :class:`TradeRequest`.

    As the real module does, it must be a dict of known fields with values of the
    field's type; the comment is cut to :data:`COMMENT_LENGTH` characters.
    """
    if not isinstance(request, Mapping):
        raise BadRequest("the request must be a dict")
    values: dict[str, Any] = {}
    for key, value in request.items():
        if key in _INT_FIELDS:
            if not _is_int(value):
                raise BadRequest(f"{key} must be an int")
            values[key] = int(value)
        elif key in _FLOAT_FIELDS:
            if not (_is_int(value) or isinstance(value, (float, np.floating))) or not math.isfinite(value):
                raise BadRequest(f"{key} must be a number")
            values[key] = float(value)
        elif key in _STR_FIELDS:
            if not isinstance(value, str):
                raise BadRequest(f"{key} must be a str")
            values[key] = value[:COMMENT_LENGTH] if key == "comment" else value
        else:
            raise BadRequest(f"unknown request field {key!r}")
    return TradeRequest(**values)


@dataclass
class _Order:
    ticket: int
    symbol: str
    type: int
    volume_initial: float
    price_open: float
    time_setup_msc: int
    type_time: int = c.ORDER_TIME_GTC
    type_filling: int = c.ORDER_FILLING_FOK
    state: int = c.ORDER_STATE_PLACED
    magic: int = 0
    position_id: int = 0
    position_by_id: int = 0
    reason: int = c.ORDER_REASON_EXPERT
    volume_current: float = 0.0
    sl: float = 0.0
    tp: float = 0.0
    price_stoplimit: float = 0.0
    comment: str = ""
    expiration: int = 0  # seconds, as requested (ORDER_TIME_SPECIFIED[_DAY])
    expires_msc: int = 0  # when the order expires (0: never)
    time_done_msc: int = 0
    price_done: float = 0.0

    def record(self, price_current: float) -> TradeOrder:
        return TradeOrder(
            ticket=self.ticket, time_setup=self.time_setup_msc // 1000,
            time_setup_msc=self.time_setup_msc, time_done=self.time_done_msc // 1000,
            time_done_msc=self.time_done_msc, time_expiration=self.expiration, type=self.type,
            type_time=self.type_time, type_filling=self.type_filling, state=self.state,
            magic=self.magic, position_id=self.position_id, position_by_id=self.position_by_id,
            reason=self.reason, volume_initial=self.volume_initial,
            volume_current=self.volume_current, price_open=self.price_open, sl=self.sl,
            tp=self.tp, price_current=price_current, price_stoplimit=self.price_stoplimit,
            symbol=self.symbol, comment=self.comment,
        )  # fmt: skip


@dataclass
class _Position:
    ticket: int
    symbol: str
    type: int
    volume: float
    price_open: float
    time_msc: int
    time_update_msc: int
    magic: int = 0
    reason: int = c.POSITION_REASON_EXPERT
    sl: float = 0.0
    tp: float = 0.0
    comment: str = ""

    @property
    def is_buy(self) -> bool:
        return self.type == c.POSITION_TYPE_BUY


class TradingDesk:
    """The trade server of one simulated account (see the module docstring).

    ``market`` gives symbol specs and ticks; ``margin_mode`` is
    ``ACCOUNT_MARGIN_MODE_RETAIL_NETTING`` (default) or ``..._HEDGING``;
    ``deposit`` is the starting balance (a balance deal at ``opened_msc``);
    ``commission_per_lot`` is charged on every deal.
    """

    def __init__(
        self,
        market: Market,
        *,
        opened_msc: int,
        deposit: float,
        margin_mode: int = c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING,
        commission_per_lot: float = DEFAULT_COMMISSION_PER_LOT,
    ) -> None:
        if margin_mode not in (c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING, c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING):
            raise ValueError("margin_mode must be retail netting or retail hedging")
        self.market = market
        self.margin_mode = margin_mode
        self.commission_per_lot = commission_per_lot
        #: Lots a market order on a symbol can find (test facility; default unlimited).
        self.liquidity: dict[str, float] = {}
        self.balance = 0.0
        self._orders: dict[int, _Order] = {}  # active (pending) orders
        self._history: dict[int, _Order] = {}  # filled, canceled, expired, rejected
        self._positions: dict[int, _Position] = {}
        self._deals: list[TradeDeal] = []
        self._next_order = 1_000_001
        self._next_deal = 2_000_001
        self._request_id = 0
        self._seen_msc = opened_msc
        #: Counts changes (a request executed, a trigger applied): what a saved state is compared to.
        self.version = 0
        self._deal(
            order=0, time_msc=opened_msc, type=c.DEAL_TYPE_BALANCE, entry=c.DEAL_ENTRY_IN,
            symbol="", volume=0.0, price=0.0, profit=round(deposit, 2), comment="Deposit",
            position_id=0, magic=0, reason=c.DEAL_REASON_CLIENT, commission=0.0,
        )  # fmt: skip

    @property
    def hedging(self) -> bool:
        return self.margin_mode == c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING

    # --- the account ----------------------------------------------------------------
    def account(self, base: AccountInfo, now_msc: int) -> AccountInfo:
        """``base`` (login, server...) with this account's money figures at ``now_msc``."""
        profit = self._floating_profit(now_msc)
        margin = self._margin(self._positions.values())
        equity = round(self.balance + profit, 2)
        return base._replace(
            margin_mode=self.margin_mode, balance=round(self.balance, 2), profit=profit,
            equity=equity, margin=margin, margin_free=round(equity - margin, 2),
            margin_level=_margin_level(equity, margin), assets=0.0, liabilities=0.0,
        )  # fmt: skip

    # --- requests -----------------------------------------------------------------------
    def send(self, request: TradeRequest, now_msc: int) -> OrderSendResult:
        """Execute ``request`` (order_send): the trade server's answer."""
        self._request_id += 1
        base = OrderSendResult(request_id=self._request_id, request=request)
        retcode, quote = self._check(request, now_msc)
        if retcode:
            comment = c.RETCODE_COMMENTS.get(retcode, "")
            if retcode == c.TRADE_RETCODE_REQUOTE:
                return base._replace(retcode=retcode, bid=quote.bid, ask=quote.ask, comment=comment)
            return base._replace(retcode=retcode, comment=comment)
        self.version += 1
        action = request.action
        if action == c.TRADE_ACTION_DEAL:
            order = self._new_order(request, now_msc, self._market_price(request, quote))
            volume = min(request.volume, self.liquidity.get(request.symbol, request.volume))
            deal = self._execute(order, order.price_open, now_msc, c.DEAL_REASON_EXPERT, request.position, volume)
            done = c.TRADE_RETCODE_DONE if volume == request.volume else c.TRADE_RETCODE_DONE_PARTIAL
            return base._replace(
                retcode=done, deal=deal.ticket, order=order.ticket, volume=deal.volume,
                price=deal.price, comment=c.RETCODE_COMMENTS[done],
            )  # fmt: skip
        if action == c.TRADE_ACTION_PENDING:
            order = self._new_order(request, now_msc, request.price)
            self._orders[order.ticket] = order
            return base._replace(
                retcode=c.TRADE_RETCODE_PLACED, order=order.ticket, volume=order.volume_initial,
                comment=c.RETCODE_COMMENTS[c.TRADE_RETCODE_PLACED],
            )  # fmt: skip
        if action == c.TRADE_ACTION_SLTP:
            position = self._target_position(request)
            assert position is not None  # _check made sure
            position.sl, position.tp = request.sl, request.tp
            position.time_update_msc = now_msc
        elif action == c.TRADE_ACTION_MODIFY:
            order = self._orders[request.order]
            order.price_open, order.sl, order.tp = request.price, request.sl, request.tp
            order.price_stoplimit = request.stoplimit
            order.type_time, order.expiration = request.type_time, request.expiration
            order.expires_msc = _expiry_msc(order.type_time, order.expiration, order.time_setup_msc)
        elif action == c.TRADE_ACTION_REMOVE:
            self._finish(self._orders[request.order], c.ORDER_STATE_CANCELED, now_msc)
        elif action == c.TRADE_ACTION_CLOSE_BY:
            return self._close_by(request, base, now_msc)
        return base._replace(
            retcode=c.TRADE_RETCODE_DONE, order=request.order,
            comment=c.RETCODE_COMMENTS[c.TRADE_RETCODE_DONE],
        )  # fmt: skip

    def check(self, request: TradeRequest, base: AccountInfo, now_msc: int) -> OrderCheckResult:
        """What ``request`` would do to the account (order_check); retcode 0 when it would pass."""
        retcode, quote = self._check(request, now_msc)
        account = self.account(base, now_msc)
        margin = account.margin
        if retcode == 0 and request.action in (c.TRADE_ACTION_DEAL, c.TRADE_ACTION_PENDING):
            price = request.price if request.action == c.TRADE_ACTION_PENDING else self._market_price(request, quote)
            margin = self._margin_after(request, price)
        return OrderCheckResult(
            retcode=retcode, balance=account.balance, equity=account.equity, profit=account.profit,
            margin=margin, margin_free=round(account.equity - margin, 2),
            margin_level=_margin_level(account.equity, margin),
            comment=c.RETCODE_COMMENTS.get(retcode, ""), request=request,
        )  # fmt: skip

    # --- queries ------------------------------------------------------------------------
    def orders(self, now_msc: int) -> list[TradeOrder]:
        """The active orders, oldest first."""
        return [o.record(self._order_price(o, now_msc)) for o in self._orders.values()]

    def positions(self, now_msc: int) -> list[TradePosition]:
        """The open positions, oldest first, priced at the latest tick."""
        return [self._position_record(p, now_msc) for p in self._positions.values()]

    def history_orders(self) -> list[TradeOrder]:
        """Every finished order (filled, canceled, expired, rejected), oldest first."""
        finished = sorted(self._history.values(), key=lambda o: (o.time_setup_msc, o.ticket))
        return [o.record(o.price_done) for o in finished]

    def history_deals(self) -> list[TradeDeal]:
        """Every deal, the opening balance deal first."""
        return list(self._deals)

    def calc_margin(self, type_: int, symbol: str, volume: float, price: float) -> float | None:
        """Margin (account currency) of ``volume`` lots of ``symbol`` at ``price``."""
        spec = self.market.spec(symbol)
        if spec is None or type_ not in (c.ORDER_TYPE_BUY, c.ORDER_TYPE_SELL):
            return None
        return round(volume * spec.contract_size * price * spec.margin_rate, 2)

    def calc_profit(self, type_: int, symbol: str, volume: float, open_: float, close: float) -> float | None:
        """Profit (account currency) of ``volume`` lots bought/sold at ``open_`` and closed at ``close``."""
        spec = self.market.spec(symbol)
        if spec is None or type_ not in (c.ORDER_TYPE_BUY, c.ORDER_TYPE_SELL):
            return None
        return _profit(spec, type_ == c.ORDER_TYPE_BUY, volume, open_, close)

    # --- keeping the account across restarts -------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Everything the trade server knows of the account, as JSON-ready data."""
        return {
            "format": STATE_FORMAT,
            "margin_mode": self.margin_mode,
            "balance": self.balance,
            "orders": [asdict(o) for o in self._orders.values()],
            "history": [asdict(o) for o in self._history.values()],
            "positions": [asdict(p) for p in self._positions.values()],
            "deals": [d._asdict() for d in self._deals],
            "next_order": self._next_order,
            "next_deal": self._next_deal,
            "request_id": self._request_id,
            "seen_msc": self._seen_msc,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take over an account saved by :meth:`to_state` (the trade server outlives the terminal)."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown trade state format {state.get('format')!r}")
        if state["margin_mode"] != self.margin_mode:
            raise ValueError("the saved account has another margin mode")
        self.balance = float(state["balance"])
        self._orders = {o["ticket"]: _Order(**o) for o in state["orders"]}
        self._history = {o["ticket"]: _Order(**o) for o in state["history"]}
        self._positions = {p["ticket"]: _Position(**p) for p in state["positions"]}
        self._deals = [TradeDeal(**d) for d in state["deals"]]
        self._next_order, self._next_deal = int(state["next_order"]), int(state["next_deal"])
        self._request_id, self._seen_msc = int(state["request_id"]), int(state["seen_msc"])
        self.version += 1

    # --- the passage of time ----------------------------------------------------------
    def advance(self, now_msc: int) -> None:
        """Apply every trigger (pending order, stop loss, take profit, expiry) the
        ticks since the last call reached, up to ``now_msc``, in time order across symbols."""
        if now_msc <= self._seen_msc:
            return
        feeds: dict[str, _Feed] = {}
        while True:
            watched = {o.symbol for o in self._orders.values()}
            watched |= {p.symbol for p in self._positions.values() if p.sl or p.tp}
            best: tuple[_Feed, tuple[int, int | None, _Apply]] | None = None
            for symbol in sorted(watched):
                feed = feeds.get(symbol)
                if feed is None:
                    feed = feeds[symbol] = _Feed(self.market.ticks(symbol, self._seen_msc + 1, now_msc))
                event = self._next_event(symbol, feed, now_msc)
                if event is not None and (best is None or event[0] < best[1][0]):
                    best = (feed, event)
            if best is None:
                break
            feed, (when, index, apply) = best
            self.version += 1
            if index is None:
                apply(0.0, 0.0, when)
            else:
                feed.first += index
                apply(float(feed.bid[feed.first]), float(feed.ask[feed.first]), when)
        self._seen_msc = now_msc

    def _next_event(self, symbol: str, feed: _Feed, end_msc: int) -> tuple[int, int | None, _Apply] | None:
        """The earliest trigger among the symbol's orders and positions in the feed's
        ticks still to come: (time, index from ``feed.first``, or None for an expiry,
        and what to do)."""
        start = feed.first
        bid, ask, times = feed.bid[start:], feed.ask[start:], feed.times[start:]
        events: list[tuple[int, int | None, _Apply]] = []

        def first_hit(hit: np.ndarray, apply: _Apply) -> None:
            index = np.flatnonzero(hit)
            if index.size:
                events.append((int(times[index[0]]), int(index[0]), apply))

        for order in [o for o in self._orders.values() if o.symbol == symbol]:
            if order.expires_msc and order.expires_msc <= end_msc:
                # Only ticks before the expiry can still fill it; the expiry comes first otherwise.
                first_hit(_order_triggered(order, bid, ask) & (times < order.expires_msc), self._trigger(order))
                events.append((order.expires_msc, None, self._expirer(order)))
            else:
                first_hit(_order_triggered(order, bid, ask), self._trigger(order))
        for position in [p for p in self._positions.values() if p.symbol == symbol]:
            price = bid if position.is_buy else ask
            if position.sl:
                hit = price <= position.sl if position.is_buy else price >= position.sl
                first_hit(hit, self._stopper(position, c.DEAL_REASON_SL))
            if position.tp:
                hit = price >= position.tp if position.is_buy else price <= position.tp
                first_hit(hit, self._stopper(position, c.DEAL_REASON_TP))
        # Earliest first; at the same moment a tick's triggers come before an expiry.
        return min(events, key=lambda e: (e[0], e[1] is None), default=None)

    def _expirer(self, order: _Order) -> _Apply:
        def apply(_bid: float, _ask: float, when: int) -> None:
            self._finish(order, c.ORDER_STATE_EXPIRED, when)

        return apply

    def _trigger(self, order: _Order) -> _Apply:
        def apply(bid: float, ask: float, when: int) -> None:
            if order.type in (c.ORDER_TYPE_BUY_STOP_LIMIT, c.ORDER_TYPE_SELL_STOP_LIMIT):
                # The stop price was reached: the order becomes a limit at its stop-limit price.
                buy = order.type == c.ORDER_TYPE_BUY_STOP_LIMIT
                order.type = c.ORDER_TYPE_BUY_LIMIT if buy else c.ORDER_TYPE_SELL_LIMIT
                order.price_open, order.price_stoplimit = order.price_stoplimit, 0.0
                return
            price = ask if order.type in _BUY_TYPES else bid
            request = TradeRequest(
                action=c.TRADE_ACTION_DEAL, symbol=order.symbol, volume=order.volume_initial,
                type=c.ORDER_TYPE_BUY if order.type in _BUY_TYPES else c.ORDER_TYPE_SELL,
            )  # fmt: skip
            if self._no_money(request, price, when):
                self._finish(order, c.ORDER_STATE_REJECTED, when)
                return
            del self._orders[order.ticket]
            self._execute(order, price, when, c.DEAL_REASON_EXPERT, 0)

        return apply

    def _stopper(self, position: _Position, reason: int) -> _Apply:
        def apply(bid: float, ask: float, when: int) -> None:
            spec = self._spec(position.symbol)
            level = position.sl if reason == c.DEAL_REASON_SL else position.tp
            tag = "sl" if reason == c.DEAL_REASON_SL else "tp"
            order = _Order(
                ticket=self._take_order_ticket(), symbol=position.symbol,
                type=c.ORDER_TYPE_SELL if position.is_buy else c.ORDER_TYPE_BUY,
                volume_initial=position.volume, price_open=level, time_setup_msc=when,
                magic=position.magic, position_id=position.ticket,
                reason=c.ORDER_REASON_SL if reason == c.DEAL_REASON_SL else c.ORDER_REASON_TP,
                comment=f"[{tag} {level:.{spec.digits}f}]"[:COMMENT_LENGTH],
                type_filling=c.ORDER_FILLING_FOK,
            )  # fmt: skip
            self._execute(order, bid if position.is_buy else ask, when, reason, position.ticket)

        return apply

    # --- checks -------------------------------------------------------------------------
    def _check(self, request: TradeRequest, now_msc: int) -> tuple[int, Tick]:
        """(0 or the retcode refusing ``request``, the quote it was checked against)."""
        action = request.action
        if action == c.TRADE_ACTION_DEAL:
            return self._check_deal(request, now_msc)
        if action == c.TRADE_ACTION_PENDING:
            return self._check_pending(request, now_msc)
        if action == c.TRADE_ACTION_SLTP:
            position = self._target_position(request)
            if position is None:
                return c.TRADE_RETCODE_POSITION_CLOSED, Tick()
            quote = self.market.tick(position.symbol, now_msc)
            if (code := self._session_code(position.symbol, quote, now_msc)) != 0:
                return code, quote
            if (position.sl, position.tp) == (request.sl, request.tp):
                return c.TRADE_RETCODE_NO_CHANGES, quote
            ref = quote.bid if position.is_buy else quote.ask
            return self._stops_code(position.symbol, position.is_buy, ref, request.sl, request.tp), quote
        if action in (c.TRADE_ACTION_MODIFY, c.TRADE_ACTION_REMOVE):
            order = self._orders.get(request.order)
            if order is None:
                return c.TRADE_RETCODE_INVALID, Tick()
            quote = self.market.tick(order.symbol, now_msc)
            if (code := self._session_code(order.symbol, quote, now_msc)) != 0:
                return code, quote
            if action == c.TRADE_ACTION_REMOVE:
                return 0, quote
            changed = replace(
                order, price_open=request.price, sl=request.sl, tp=request.tp,
                price_stoplimit=request.stoplimit, type_time=request.type_time,
                expiration=request.expiration,
            )  # fmt: skip
            if changed == order:
                return c.TRADE_RETCODE_NO_CHANGES, quote
            return self._pending_code(changed.type, order.symbol, request, quote, now_msc), quote
        if action == c.TRADE_ACTION_CLOSE_BY:
            return self._check_close_by(request, now_msc)
        return c.TRADE_RETCODE_INVALID, Tick()

    def _check_deal(self, request: TradeRequest, now_msc: int) -> tuple[int, Tick]:
        spec = self.market.spec(request.symbol)
        if spec is None or request.type not in (c.ORDER_TYPE_BUY, c.ORDER_TYPE_SELL):
            return c.TRADE_RETCODE_INVALID, Tick()
        quote = self.market.tick(request.symbol, now_msc)
        if (code := _volume_code(spec, request.volume)) != 0:
            return code, quote
        if (code := self._session_code(request.symbol, quote, now_msc)) != 0:
            return code, quote
        # Market execution fills market orders all-or-nothing or as much as possible,
        # never by "return" (that policy is for exchange execution and pending orders).
        if request.type_filling not in (c.ORDER_FILLING_FOK, c.ORDER_FILLING_IOC):
            return c.TRADE_RETCODE_INVALID_FILL, quote
        available = self.liquidity.get(request.symbol, math.inf)
        # Fill-or-kill cannot be filled whole; immediate-or-cancel takes what there is.
        short = request.volume > available + 1e-9
        if short and (request.type_filling == c.ORDER_FILLING_FOK or available < spec.volume_min - 1e-9):
            return c.TRADE_RETCODE_REJECT, quote
        closing = None
        if request.position:
            closing = self._positions.get(request.position)
            if closing is None or closing.symbol != request.symbol:
                return c.TRADE_RETCODE_POSITION_CLOSED, quote
            if closing.is_buy == (request.type == c.ORDER_TYPE_BUY):
                return c.TRADE_RETCODE_INVALID, quote
            if request.volume > closing.volume + 1e-9:
                return c.TRADE_RETCODE_INVALID_CLOSE_VOLUME, quote
        buy = request.type == c.ORDER_TYPE_BUY
        market = quote.ask if buy else quote.bid
        if request.price and abs(request.price - market) > request.deviation * spec.point + spec.point / 2:
            return c.TRADE_RETCODE_REQUOTE, quote
        if closing is None and (request.sl or request.tp):
            # sl/tp are checked against the price the new position would be closed at.
            code = self._stops_code(request.symbol, buy, quote.bid if buy else quote.ask, request.sl, request.tp)
            if code:
                return code, quote
        if self._no_money(request, market, now_msc):
            return c.TRADE_RETCODE_NO_MONEY, quote
        return 0, quote

    def _check_pending(self, request: TradeRequest, now_msc: int) -> tuple[int, Tick]:
        spec = self.market.spec(request.symbol)
        if spec is None or request.type not in _PENDING_TYPES:
            return c.TRADE_RETCODE_INVALID, Tick()
        quote = self.market.tick(request.symbol, now_msc)
        if (code := _volume_code(spec, request.volume)) != 0:
            return code, quote
        if (code := self._session_code(request.symbol, quote, now_msc)) != 0:
            return code, quote
        limit = request.type in (c.ORDER_TYPE_BUY_LIMIT, c.ORDER_TYPE_SELL_LIMIT)
        allowed = {c.ORDER_FILLING_FOK, c.ORDER_FILLING_IOC, c.ORDER_FILLING_RETURN}
        if request.type_filling not in allowed | ({c.ORDER_FILLING_BOC} if limit else set()):
            return c.TRADE_RETCODE_INVALID_FILL, quote
        return self._pending_code(request.type, request.symbol, request, quote, now_msc), quote

    def _pending_code(self, type_: int, symbol: str, request: TradeRequest, quote: Tick, now_msc: int) -> int:
        """Checks a pending order's prices, stops and expiry share between placing and modifying."""
        spec = self._spec(symbol)
        price, stoplimit = request.price, request.stoplimit
        gap = spec.stops_level * spec.point
        if price <= 0:
            return c.TRADE_RETCODE_INVALID_PRICE
        side_ok = {
            c.ORDER_TYPE_BUY_LIMIT: price <= quote.ask - gap,
            c.ORDER_TYPE_SELL_LIMIT: price >= quote.bid + gap,
            c.ORDER_TYPE_BUY_STOP: price >= quote.ask + gap,
            c.ORDER_TYPE_SELL_STOP: price <= quote.bid - gap,
            c.ORDER_TYPE_BUY_STOP_LIMIT: price >= quote.ask + gap and 0 < stoplimit < price,
            c.ORDER_TYPE_SELL_STOP_LIMIT: price <= quote.bid - gap and stoplimit > price,
        }[type_]
        if not side_ok:
            return c.TRADE_RETCODE_INVALID_PRICE
        entry = stoplimit if type_ in (c.ORDER_TYPE_BUY_STOP_LIMIT, c.ORDER_TYPE_SELL_STOP_LIMIT) else price
        if code := self._stops_code(symbol, type_ in _BUY_TYPES, entry, request.sl, request.tp):
            return code
        if request.type_time not in _TIME_TYPES:
            return c.TRADE_RETCODE_INVALID_EXPIRATION
        dated = request.type_time in (c.ORDER_TIME_SPECIFIED, c.ORDER_TIME_SPECIFIED_DAY)
        if dated and _expiry_msc(request.type_time, request.expiration, now_msc) <= now_msc:
            return c.TRADE_RETCODE_INVALID_EXPIRATION
        return 0

    def _check_close_by(self, request: TradeRequest, now_msc: int) -> tuple[int, Tick]:
        if not self.hedging:
            return c.TRADE_RETCODE_INVALID, Tick()  # netting has one position per symbol
        one, other = self._positions.get(request.position), self._positions.get(request.position_by)
        if one is None or other is None:
            return c.TRADE_RETCODE_POSITION_CLOSED, Tick()
        if one.symbol != other.symbol or one.is_buy == other.is_buy:
            return c.TRADE_RETCODE_INVALID, Tick()
        quote = self.market.tick(one.symbol, now_msc)
        return self._session_code(one.symbol, quote, now_msc), quote

    def _session_code(self, symbol: str, quote: Tick, now_msc: int) -> int:
        """MARKET_CLOSED outside the symbol's trading hours; PRICE_OFF without a quote."""
        spec = self._spec(symbol)
        at = datetime.fromtimestamp(now_msc / 1000, UTC)
        if not open_hours(spec.session)[at.weekday(), at.hour]:
            return c.TRADE_RETCODE_MARKET_CLOSED
        if not (quote.bid > 0 and quote.ask > 0):
            return c.TRADE_RETCODE_PRICE_OFF
        return 0

    def _stops_code(self, symbol: str, buy: bool, ref: float, sl: float, tp: float) -> int:
        """INVALID_STOPS unless sl/tp (0 = none) are on the right side of ``ref``,
        at least the symbol's stops level away."""
        if sl < 0 or tp < 0:
            return c.TRADE_RETCODE_INVALID_STOPS
        spec = self._spec(symbol)
        gap = spec.stops_level * spec.point
        if buy:
            ok = (not sl or sl <= ref - gap) and (not tp or tp >= ref + gap)
        else:
            ok = (not sl or sl >= ref + gap) and (not tp or tp <= ref - gap)
        return 0 if ok else c.TRADE_RETCODE_INVALID_STOPS

    def _no_money(self, request: TradeRequest, price: float, now_msc: int) -> bool:
        """Whether the deal would raise the margin beyond the equity (free margin below 0)."""
        before = self._margin(self._positions.values())
        after = self._margin_after(request, price)
        equity = self.balance + self._floating_profit(now_msc)
        commission = self.commission_per_lot * request.volume
        return after > before and after > equity - commission

    def _margin_after(self, request: TradeRequest, price: float) -> float:
        """The account's margin were ``request`` filled at ``price``."""
        buy = request.type in _BUY_TYPES
        positions = [replace(p) for p in self._positions.values()]
        if request.position:
            positions = [p for p in positions if p.ticket != request.position] + [
                replace(p, volume=p.volume - request.volume)
                for p in positions
                if p.ticket == request.position and p.volume - request.volume > 1e-9
            ]
        elif self.hedging:
            positions.append(self._blank_position(request.symbol, buy, request.volume, price))
        else:
            current = next((p for p in positions if p.symbol == request.symbol), None)
            positions = [p for p in positions if p is not current]
            netted = _net(current, buy, request.volume, price)
            if netted is not None:
                positions.append(self._blank_position(request.symbol, netted[0], netted[1], netted[2]))
        return self._margin(positions)

    # --- execution ----------------------------------------------------------------------
    def _new_order(self, request: TradeRequest, now_msc: int, price: float) -> _Order:
        spec = self._spec(request.symbol)
        order = _Order(
            ticket=self._take_order_ticket(), symbol=request.symbol, type=request.type,
            volume_initial=request.volume, volume_current=request.volume,
            price_open=round(price, spec.digits), time_setup_msc=now_msc,
            type_time=request.type_time, type_filling=request.type_filling, magic=request.magic,
            sl=request.sl, tp=request.tp, price_stoplimit=request.stoplimit,
            comment=request.comment, position_id=request.position,
        )  # fmt: skip
        if request.action == c.TRADE_ACTION_PENDING and request.type_time != c.ORDER_TIME_GTC:
            order.expiration = request.expiration if request.type_time != c.ORDER_TIME_DAY else 0
            order.expires_msc = _expiry_msc(request.type_time, request.expiration, now_msc)
        return order

    def _execute(
        self, order: _Order, price: float, when: int, reason: int, close_ticket: int, volume: float | None = None
    ) -> TradeDeal:
        """Fill ``volume`` lots (default: all) of ``order`` at ``price``: its deal, the
        position change, the money.  An unfilled rest is canceled (immediate-or-cancel)."""
        spec = self._spec(order.symbol)
        buy = order.type in _BUY_TYPES
        volume = order.volume_initial if volume is None else volume
        commission = -round(self.commission_per_lot * volume, 2)
        target = self._positions.get(close_ticket) if close_ticket else None
        if target is None and not self.hedging:
            target = next((p for p in self._positions.values() if p.symbol == order.symbol), None)
        if target is None or target.is_buy == buy:
            entry, profit = c.DEAL_ENTRY_IN, 0.0
            if target is None:
                target = self._blank_position(order.symbol, buy, 0.0, price)
                target.ticket, target.time_msc, target.magic = order.ticket, when, order.magic
                target.comment = order.comment
                self._positions[target.ticket] = target
            total = target.volume + volume
            target.price_open = round((target.price_open * target.volume + price * volume) / total, spec.digits + 3)
            target.volume = _lots(total)
            if order.sl or order.tp:
                target.sl, target.tp = order.sl, order.tp
        else:
            closed = min(volume, target.volume)
            profit = _profit(spec, target.is_buy, closed, target.price_open, price)
            left = _lots(target.volume - closed)
            if volume > target.volume + 1e-9:  # a reversal (netting only)
                entry = c.DEAL_ENTRY_INOUT
                del self._positions[target.ticket]
                reversed_ = self._blank_position(order.symbol, buy, _lots(volume - closed), price)
                reversed_.ticket, reversed_.time_msc, reversed_.magic = order.ticket, when, order.magic
                reversed_.comment, reversed_.sl, reversed_.tp = order.comment, order.sl, order.tp
                self._positions[reversed_.ticket] = reversed_
                target = reversed_
            else:
                entry = c.DEAL_ENTRY_OUT
                target.volume = left
                if left <= 0:
                    del self._positions[target.ticket]
        target.time_update_msc = when
        order.position_id = target.ticket
        order.price_done = price
        order.volume_current = _lots(order.volume_initial - volume)
        self._finish(order, c.ORDER_STATE_CANCELED if order.volume_current else c.ORDER_STATE_FILLED, when)
        return self._deal(
            order=order.ticket, time_msc=when,
            type=c.DEAL_TYPE_BUY if buy else c.DEAL_TYPE_SELL, entry=entry, symbol=order.symbol,
            volume=volume, price=price, profit=profit, commission=commission,
            comment=order.comment, position_id=target.ticket, magic=order.magic, reason=reason,
        )  # fmt: skip

    def _close_by(self, request: TradeRequest, base: OrderSendResult, now_msc: int) -> OrderSendResult:
        """Close two opposite positions against each other (hedging): both at the
        counter position's open price, so the profit is the difference of the opens."""
        one, other = self._positions[request.position], self._positions[request.position_by]
        spec = self._spec(one.symbol)
        volume = min(one.volume, other.volume)
        order = _Order(
            ticket=self._take_order_ticket(), symbol=one.symbol, type=c.ORDER_TYPE_CLOSE_BY,
            volume_initial=volume, price_open=0.0, time_setup_msc=now_msc, magic=request.magic,
            position_id=one.ticket, position_by_id=other.ticket, comment=request.comment,
        )  # fmt: skip
        deals = []
        for position, price in ((one, other.price_open), (other, other.price_open)):
            profit = _profit(spec, position.is_buy, volume, position.price_open, price)
            deal = self._deal(
                order=order.ticket, time_msc=now_msc,
                type=c.DEAL_TYPE_SELL if position.is_buy else c.DEAL_TYPE_BUY,
                entry=c.DEAL_ENTRY_OUT_BY, symbol=position.symbol, volume=volume, price=price,
                profit=profit, commission=0.0, comment=request.comment,
                position_id=position.ticket, magic=request.magic, reason=c.DEAL_REASON_EXPERT,
            )  # fmt: skip
            deals.append(deal)
            position.volume = _lots(position.volume - volume)
            position.time_update_msc = now_msc
            if position.volume <= 0:
                del self._positions[position.ticket]
        self._finish(order, c.ORDER_STATE_FILLED, now_msc)
        return base._replace(
            retcode=c.TRADE_RETCODE_DONE, deal=deals[0].ticket, order=order.ticket, volume=volume,
            price=other.price_open, comment=c.RETCODE_COMMENTS[c.TRADE_RETCODE_DONE],
        )  # fmt: skip

    def _finish(self, order: _Order, state: int, when: int) -> None:
        self._orders.pop(order.ticket, None)
        order.state, order.time_done_msc = state, when
        if state != c.ORDER_STATE_FILLED:
            order.price_done = order.price_open
        self._history[order.ticket] = order

    def _deal(self, *, order: int, time_msc: int, type: int, entry: int, symbol: str, volume: float,
              price: float, profit: float, commission: float, comment: str, position_id: int,
              magic: int, reason: int) -> TradeDeal:  # fmt: skip
        deal = TradeDeal(
            ticket=self._next_deal, order=order, time=time_msc // 1000, time_msc=time_msc, type=type,
            entry=entry, magic=magic, position_id=position_id, reason=reason, volume=volume,
            price=price, commission=commission, swap=0.0, profit=profit, fee=0.0, symbol=symbol,
            comment=comment,
        )  # fmt: skip
        self._next_deal += 1
        self._deals.append(deal)
        self.balance = round(self.balance + profit + commission, 2)
        return deal

    # --- helpers ------------------------------------------------------------------------
    def _take_order_ticket(self) -> int:
        ticket = self._next_order
        self._next_order += 1
        return ticket

    def _spec(self, symbol: str) -> SymbolSpec:
        spec = self.market.spec(symbol)
        if spec is None:
            raise KeyError(symbol)
        return spec

    def _target_position(self, request: TradeRequest) -> _Position | None:
        """The position a request names by ticket, or (netting) by symbol."""
        if request.position:
            return self._positions.get(request.position)
        if not self.hedging and request.symbol:
            return next((p for p in self._positions.values() if p.symbol == request.symbol), None)
        return None

    @staticmethod
    def _blank_position(symbol: str, buy: bool, volume: float, price: float) -> _Position:
        kind = c.POSITION_TYPE_BUY if buy else c.POSITION_TYPE_SELL
        return _Position(0, symbol, kind, volume, price, 0, 0)

    def _market_price(self, request: TradeRequest, quote: Tick) -> float:
        return quote.ask if request.type == c.ORDER_TYPE_BUY else quote.bid

    def _order_price(self, order: _Order, now_msc: int) -> float:
        quote = self.market.tick(order.symbol, now_msc)
        return quote.ask if order.type in _BUY_TYPES else quote.bid

    def _position_record(self, position: _Position, now_msc: int) -> TradePosition:
        spec = self._spec(position.symbol)
        quote = self.market.tick(position.symbol, now_msc)
        current = quote.bid if position.is_buy else quote.ask
        profit = _profit(spec, position.is_buy, position.volume, position.price_open, current) if current else 0.0
        return TradePosition(
            ticket=position.ticket, time=position.time_msc // 1000, time_msc=position.time_msc,
            time_update=position.time_update_msc // 1000, time_update_msc=position.time_update_msc,
            type=position.type, magic=position.magic, identifier=position.ticket,
            reason=position.reason, volume=position.volume,
            price_open=round(position.price_open, spec.digits + 3), sl=position.sl, tp=position.tp,
            price_current=current, swap=0.0, profit=profit, symbol=position.symbol,
            comment=position.comment,
        )  # fmt: skip

    def _floating_profit(self, now_msc: int) -> float:
        return round(sum((p.profit for p in self.positions(now_msc)), 0.0), 2)

    def _margin(self, positions: Iterable[_Position]) -> float:
        total = 0.0
        for p in positions:
            spec = self._spec(p.symbol)
            total += p.volume * spec.contract_size * p.price_open * spec.margin_rate
        return round(total, 2)


def _net(current: _Position | None, buy: bool, volume: float, price: float) -> tuple[bool, float, float] | None:
    """(is buy, volume, open price) of a netting position after a deal; None when flat."""
    if current is None:
        return buy, volume, price
    if current.is_buy == buy:
        total = current.volume + volume
        return buy, total, (current.price_open * current.volume + price * volume) / total
    left = current.volume - volume
    if abs(left) < 1e-9:
        return None
    if left > 0:
        return current.is_buy, left, current.price_open
    return buy, -left, price


def _order_triggered(order: _Order, bid: np.ndarray, ask: np.ndarray) -> np.ndarray:
    price = order.price_open
    if order.type == c.ORDER_TYPE_BUY_LIMIT:
        return ask <= price
    if order.type == c.ORDER_TYPE_SELL_LIMIT:
        return bid >= price
    if order.type in (c.ORDER_TYPE_BUY_STOP, c.ORDER_TYPE_BUY_STOP_LIMIT):
        return ask >= price
    return bid <= price  # sell stop, sell stop limit


def _profit(spec: SymbolSpec, buy: bool, volume: float, open_: float, close: float) -> float:
    """Profit in USD (the account currency) of a position of ``volume`` lots."""
    per_unit = spec.contract_size
    if spec.currency_profit != "USD" and spec.currency_base == "USD" and close:
        per_unit /= close  # e.g. USDJPY: profit in JPY, converted at the closing rate
    return round((close - open_) * (1 if buy else -1) * volume * per_unit, 2)


def _volume_code(spec: SymbolSpec, volume: float) -> int:
    """INVALID_VOLUME unless ``volume`` is within min/max and a multiple of the step."""
    if not (spec.volume_min - 1e-9 <= volume <= spec.volume_max + 1e-9):
        return c.TRADE_RETCODE_INVALID_VOLUME
    steps = volume / spec.volume_step
    if abs(steps - round(steps)) > 1e-6:
        return c.TRADE_RETCODE_INVALID_VOLUME
    return 0


def _expiry_msc(type_time: int, expiration: int, setup_msc: int) -> int:
    """When an order of ``type_time`` expires (0: never); DAY orders end with the server's day."""
    if type_time == c.ORDER_TIME_DAY:
        return (setup_msc // _DAY_MSC + 1) * _DAY_MSC
    if type_time == c.ORDER_TIME_SPECIFIED:
        return expiration * 1000
    if type_time == c.ORDER_TIME_SPECIFIED_DAY:
        return (expiration * 1000 // _DAY_MSC + 1) * _DAY_MSC
    return 0


def _margin_level(equity: float, margin: float) -> float:
    return round(equity / margin * 100.0, 2) if margin else 0.0


def _lots(volume: float) -> float:
    """A volume without float dust (lots have at most 8 decimals)."""
    return round(volume, 8)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
