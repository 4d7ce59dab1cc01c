"""Trading on SimulatedTerminal as on the MetaTrader5 module: order_send and its retcodes,
netting, pending orders and stops triggered by the generated ticks, the account's money,
the lost-answer fault and finding the order again by its comment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from client.metatrader_connector.terminal import SimulatedTerminal
from client.metatrader_connector.terminal import constants as c
from client.metatrader_connector.terminal.records import TradeDeal, TradeOrder, TradePosition
from shared.instruments import INSTRUMENTS

NOW = datetime(2024, 3, 13, 15, 30, 12, 500_000, tzinfo=UTC)  # a Wednesday, London/New York hours
INVALID_PARAMS = (-2, "Terminal: Invalid params")
IPC_TIMEOUT = (-10005, "IPC timeout")
OK = (1, "Success")


class Clock:
    """A settable clock, injected instead of time.time."""

    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now

    def set_msc(self, msc: int) -> None:
        self.now = msc / 1000

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta).total_seconds()


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def term(clock: Clock) -> SimulatedTerminal:
    t = SimulatedTerminal(clock=clock)
    assert t.initialize()
    return t


def deal(t: SimulatedTerminal, kind: int, volume: float, symbol: str = "EURUSD", **fields):
    request = {
        "action": c.TRADE_ACTION_DEAL, "symbol": symbol, "volume": volume, "type": kind,
        "type_filling": c.ORDER_FILLING_IOC, "magic": 4242, **fields,
    }  # fmt: skip
    return t.order_send(request)


def pending(t: SimulatedTerminal, kind: int, volume: float, price: float, symbol: str = "EURUSD", **fields):
    request = {
        "action": c.TRADE_ACTION_PENDING, "symbol": symbol, "volume": volume, "type": kind,
        "price": price, "type_filling": c.ORDER_FILLING_RETURN, "type_time": c.ORDER_TIME_GTC, **fields,
    }  # fmt: skip
    return t.order_send(request)


def ticks_between(symbol: str, start: datetime, end: datetime) -> np.ndarray:
    """The ticks the terminal will generate (read from a twin terminal whose clock is at ``end``)."""
    twin = SimulatedTerminal(clock=Clock(end))
    twin.initialize()
    return twin.copy_ticks_range(symbol, start, end, c.COPY_TICKS_ALL)


def test_records_and_constants_are_the_modules():
    assert TradeOrder._fields[:4] == ("ticket", "time_setup", "time_setup_msc", "time_done")
    assert TradePosition._fields[-4:] == ("profit", "symbol", "comment", "external_id")
    assert TradeDeal._fields[:6] == ("ticket", "order", "time", "time_msc", "type", "entry")
    codes = (c.TRADE_RETCODE_PLACED, c.TRADE_RETCODE_DONE, c.TRADE_RETCODE_DONE_PARTIAL, c.TRADE_RETCODE_REJECT,
             c.TRADE_RETCODE_INVALID, c.TRADE_RETCODE_INVALID_VOLUME, c.TRADE_RETCODE_INVALID_PRICE,
             c.TRADE_RETCODE_INVALID_STOPS, c.TRADE_RETCODE_MARKET_CLOSED, c.TRADE_RETCODE_NO_MONEY,
             c.TRADE_RETCODE_PRICE_OFF, c.TRADE_RETCODE_INVALID_FILL, c.TRADE_RETCODE_TIMEOUT)  # fmt: skip
    assert codes == (10008, 10009, 10010, 10006, 10013, 10014, 10015, 10016, 10018, 10019, 10021, 10030, 10012)
    assert (c.TRADE_ACTION_DEAL, c.TRADE_ACTION_PENDING, c.TRADE_ACTION_SLTP, c.TRADE_ACTION_CLOSE_BY) == (1, 5, 6, 10)
    assert SimulatedTerminal.ORDER_TYPE_SELL_STOP_LIMIT == 7 and SimulatedTerminal.DEAL_ENTRY_INOUT == 2


def test_built_in_symbols_report_the_platforms_trading_facts(term):
    for symbol, facts in INSTRUMENTS.items():
        info = term.symbol_info(symbol)
        assert info.digits == facts.digits and info.trade_contract_size == float(facts.contract_size)
        assert (info.volume_min, info.volume_max, info.volume_step) == (
            float(facts.volume_min), float(facts.volume_max), float(facts.volume_step)
        )  # fmt: skip
        margin = term.order_calc_margin(c.ORDER_TYPE_BUY, symbol, 1.0, 100.0)
        assert Decimal(str(margin)) == (facts.notional(Decimal(1), Decimal(100)) * facts.margin_rate).quantize(
            Decimal("0.01")
        )


def test_market_buys_and_sells_net_into_one_position_and_book_profit_minus_commission(term, clock):
    start = term.account_info()
    assert (start.balance, start.margin_mode, start.margin) == (10_000.0, c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING, 0.0)
    ask = term.symbol_info_tick("EURUSD").ask
    first = deal(term, c.ORDER_TYPE_BUY, 1.0, comment="cid-1")
    assert (first.retcode, first.volume, first.price, first.comment) == (10009, 1.0, ask, "Request executed")
    assert first.order and first.deal and first.request.comment == "cid-1"

    clock.advance(minutes=20)
    ask2 = term.symbol_info_tick("EURUSD").ask
    assert deal(term, c.ORDER_TYPE_BUY, 0.5).retcode == c.TRADE_RETCODE_DONE
    (position,) = term.positions_get(symbol="EURUSD")
    average = (ask * 1.0 + ask2 * 0.5) / 1.5
    assert position.ticket == first.order and position.identifier == first.order  # still the first position
    assert position.type == c.POSITION_TYPE_BUY and position.volume == 1.5
    assert position.price_open == pytest.approx(average, abs=1e-7) and position.magic == 4242
    assert position.comment == "cid-1"

    clock.advance(minutes=40)
    bid3 = term.symbol_info_tick("EURUSD").bid
    partial = deal(term, c.ORDER_TYPE_SELL, 0.5)
    clock.advance(hours=2)
    bid4 = term.symbol_info_tick("EURUSD").bid
    last = deal(term, c.ORDER_TYPE_SELL, 1.0)
    assert (partial.price, last.price) == (bid3, bid4)
    assert term.positions_get() == () and term.positions_total() == 0

    deals = term.history_deals_get(NOW - timedelta(minutes=1), NOW + timedelta(days=1))
    trades = [d for d in deals if d.type in (c.DEAL_TYPE_BUY, c.DEAL_TYPE_SELL)]
    assert [d.entry for d in trades] == [c.DEAL_ENTRY_IN, c.DEAL_ENTRY_IN, c.DEAL_ENTRY_OUT, c.DEAL_ENTRY_OUT]
    assert {d.position_id for d in trades} == {first.order}
    assert [d.profit for d in trades] == [
        0.0, 0.0, round((bid3 - average) * 0.5 * 100_000, 2), round((bid4 - average) * 1.0 * 100_000, 2)
    ]  # fmt: skip
    assert [d.commission for d in trades] == [-3.0, -1.5, -1.5, -3.0]
    booked = sum(d.profit for d in trades) + sum(d.commission for d in trades)
    end = term.account_info()
    assert end.balance == pytest.approx(10_000.0 + booked, abs=0.005)
    assert end.equity == end.balance and end.margin == 0.0 and end.margin_free == end.balance


def test_an_opposite_deal_larger_than_the_position_reverses_it(term, clock):
    opened = deal(term, c.ORDER_TYPE_BUY, 1.0)
    clock.advance(minutes=5)
    reverse = deal(term, c.ORDER_TYPE_SELL, 3.0)
    (position,) = term.positions_get()
    assert position.type == c.POSITION_TYPE_SELL and position.volume == 2.0
    assert position.price_open == reverse.price and position.ticket == reverse.order != opened.order
    (inout,) = term.history_deals_get(ticket=reverse.order)
    assert inout.entry == c.DEAL_ENTRY_INOUT and inout.volume == 3.0
    assert inout.profit == round((reverse.price - opened.price) * 100_000, 2)
    account = term.account_info()
    assert account.margin == round(2.0 * 100_000 * reverse.price * 0.0333, 2)
    assert account.profit == position.profit == round((reverse.price - position.price_current) * 200_000, 2)
    assert account.equity == pytest.approx(account.balance + account.profit)


def test_a_buy_limit_waits_for_the_ticks_that_reach_it(term, clock):
    now_ask = term.symbol_info_tick("EURUSD").ask
    future = ticks_between("EURUSD", NOW, NOW + timedelta(hours=3))
    later = future[future["time_msc"] > NOW.timestamp() * 1000 + 60_000]
    limit = round(float(later["ask"].min()) + 0.00003, 5)
    assert limit < now_ask  # a real limit below the market
    hit = later[later["ask"] <= limit][0]
    placed = pending(term, c.ORDER_TYPE_BUY_LIMIT, 0.3, limit, comment="limit-1", magic=9)
    assert (placed.retcode, placed.comment, placed.deal) == (10008, "Order placed", 0)
    (order,) = term.orders_get(ticket=placed.order)
    assert (order.state, order.type, order.price_open, order.comment) == (
        c.ORDER_STATE_PLACED, c.ORDER_TYPE_BUY_LIMIT, limit, "limit-1"
    )  # fmt: skip
    assert term.orders_get(symbol="GBPUSD") == () and term.orders_get(group="*USD") == (order._replace(
        price_current=term.symbol_info_tick("EURUSD").ask),)  # fmt: skip

    clock.set_msc(int(hit["time_msc"]) - 1)
    assert term.orders_total() == 1 and term.positions_total() == 0
    clock.set_msc(int(hit["time_msc"]))
    assert term.orders_total() == 0
    (position,) = term.positions_get()
    assert (position.volume, position.price_open, position.ticket) == (0.3, float(hit["ask"]), placed.order)
    assert position.time_msc == int(hit["time_msc"]) and position.magic == 9
    (done,) = term.history_orders_get(ticket=placed.order)
    assert done.state == c.ORDER_STATE_FILLED and done.time_done_msc == int(hit["time_msc"])
    (fill,) = term.history_deals_get(position=placed.order)
    assert (fill.entry, fill.price, fill.comment, fill.order) == (
        c.DEAL_ENTRY_IN,
        float(hit["ask"]),
        "limit-1",
        placed.order,
    )


def test_a_stop_loss_closes_the_position_at_the_first_tick_through_it(term, clock):
    future = ticks_between("EURUSD", NOW, NOW + timedelta(hours=6))
    later = future[future["time_msc"] > NOW.timestamp() * 1000 + 1000]
    bid_now = term.symbol_info_tick("EURUSD").bid
    sl = round(float(later["bid"].min()) + 0.00005, 5)
    assert sl < bid_now
    hit = later[later["bid"] <= sl][0]
    opened = deal(term, c.ORDER_TYPE_BUY, 1.0, sl=sl, comment="with-sl")
    assert opened.retcode == c.TRADE_RETCODE_DONE
    (position,) = term.positions_get()
    assert position.sl == sl
    clock.set_msc(int(hit["time_msc"]) + 3_600_000)
    assert term.positions_get() == ()
    closing = term.history_deals_get(position=opened.order)[-1]
    assert (closing.entry, closing.reason, closing.price, closing.time_msc) == (
        c.DEAL_ENTRY_OUT, c.DEAL_REASON_SL, float(hit["bid"]), int(hit["time_msc"])
    )  # fmt: skip
    assert closing.comment == f"[sl {sl:.5f}]" and closing.profit == round((closing.price - opened.price) * 100_000, 2)
    (sl_order,) = term.history_orders_get(ticket=closing.order)
    assert sl_order.reason == c.ORDER_REASON_SL and sl_order.position_id == opened.order
    assert term.account_info().balance == round(10_000 + closing.profit - 6.0, 2)


def test_sltp_modifies_a_position_and_take_profit_triggers(term, clock):
    future = ticks_between("EURUSD", NOW, NOW + timedelta(hours=6))
    later = future[future["time_msc"] > NOW.timestamp() * 1000 + 1000]
    opened = deal(term, c.ORDER_TYPE_SELL, 0.1)
    tp = round(float(later["ask"].min()) + 0.00005, 5)
    hit = later[later["ask"] <= tp][0]
    sltp = {"action": c.TRADE_ACTION_SLTP, "symbol": "EURUSD", "position": opened.order, "tp": tp}
    assert term.order_send(sltp).retcode == c.TRADE_RETCODE_DONE
    assert term.order_send(sltp).retcode == c.TRADE_RETCODE_NO_CHANGES
    wrong_side = {**sltp, "tp": round(term.symbol_info_tick("EURUSD").ask + 0.001, 5)}
    assert term.order_send(wrong_side).retcode == c.TRADE_RETCODE_INVALID_STOPS
    assert term.order_send({**sltp, "position": 123}).retcode == c.TRADE_RETCODE_POSITION_CLOSED
    clock.set_msc(int(hit["time_msc"]))
    assert term.positions_total() == 0
    closing = term.history_deals_get(position=opened.order)[-1]
    assert (closing.reason, closing.price, closing.type) == (c.DEAL_REASON_TP, float(hit["ask"]), c.DEAL_TYPE_BUY)


def test_no_money_when_the_margin_does_not_fit(clock):
    term = SimulatedTerminal(clock=clock, deposit=1_000.0)
    term.initialize()
    # 1 lot of EURUSD holds ~3,600 USD of margin at 1:30.
    check = term.order_check({"action": c.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 1.0, "type": 0,
                              "type_filling": c.ORDER_FILLING_FOK})  # fmt: skip
    assert (check.retcode, check.comment, check.balance) == (10019, "No money", 1_000.0)
    refused = deal(term, c.ORDER_TYPE_BUY, 1.0)
    assert (refused.retcode, refused.deal, refused.order) == (10019, 0, 0)
    assert term.positions_total() == 0 and term.account_info().balance == 1_000.0
    fits = term.order_check({"action": c.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.2, "type": 0,
                             "type_filling": c.ORDER_FILLING_FOK})  # fmt: skip
    assert fits.retcode == 0 and fits.comment == "Done"
    assert fits.margin == term.order_calc_margin(c.ORDER_TYPE_BUY, "EURUSD", 0.2, term.symbol_info_tick("EURUSD").ask)
    assert fits.margin_free == round(1_000.0 - fits.margin, 2)
    assert deal(term, c.ORDER_TYPE_BUY, 0.2).retcode == c.TRADE_RETCODE_DONE
    # Reducing a position never needs money, even when the account could not open it again.
    assert deal(term, c.ORDER_TYPE_SELL, 0.1).retcode == c.TRADE_RETCODE_DONE


def test_market_closed_at_the_weekend_except_for_crypto():
    saturday = Clock(datetime(2024, 3, 16, 12, 0, tzinfo=UTC))
    term = SimulatedTerminal(clock=saturday)
    term.initialize()
    assert deal(term, c.ORDER_TYPE_BUY, 0.1).retcode == c.TRADE_RETCODE_MARKET_CLOSED
    assert pending(term, c.ORDER_TYPE_BUY_LIMIT, 0.1, 1.0).retcode == c.TRADE_RETCODE_MARKET_CLOSED
    assert deal(term, c.ORDER_TYPE_BUY, 0.1, symbol="XAUUSD").comment == "Market closed"
    assert deal(term, c.ORDER_TYPE_BUY, 0.01, symbol="BTCUSD").retcode == c.TRADE_RETCODE_DONE
    saturday.now = datetime(2024, 3, 18, 9, 0, tzinfo=UTC).timestamp()  # Monday morning
    assert deal(term, c.ORDER_TYPE_BUY, 0.1).retcode == c.TRADE_RETCODE_DONE


@pytest.mark.parametrize("volume", [0.0, 0.001, 0.015, 500.01, -1.0])
def test_volume_outside_min_max_step_is_invalid_volume(term, volume):
    result = deal(term, c.ORDER_TYPE_BUY, volume)
    assert (result.retcode, result.comment) == (10014, "Invalid volume")


def test_bad_requests_get_the_servers_retcodes(term):
    tick = term.symbol_info_tick("EURUSD")
    assert term.order_send({"action": 99, "symbol": "EURUSD"}).retcode == c.TRADE_RETCODE_INVALID
    assert deal(term, c.ORDER_TYPE_BUY, 0.1, symbol="NOPE").retcode == c.TRADE_RETCODE_INVALID
    assert deal(term, c.ORDER_TYPE_BUY_LIMIT, 0.1).retcode == c.TRADE_RETCODE_INVALID
    assert (
        deal(term, c.ORDER_TYPE_BUY, 0.1, type_filling=c.ORDER_FILLING_RETURN).retcode == c.TRADE_RETCODE_INVALID_FILL
    )
    requote = deal(term, c.ORDER_TYPE_BUY, 0.1, price=round(tick.ask - 0.0005, 5), deviation=10)
    assert (requote.retcode, requote.bid, requote.ask) == (c.TRADE_RETCODE_REQUOTE, tick.bid, tick.ask)
    assert deal(term, c.ORDER_TYPE_BUY, 0.1, price=round(tick.ask - 0.0005, 5), deviation=60).retcode == 10009
    assert deal(term, c.ORDER_TYPE_SELL, 0.1, sl=round(tick.bid - 0.001, 5)).retcode == c.TRADE_RETCODE_INVALID_STOPS
    above = round(tick.ask + 0.001, 5)
    assert pending(term, c.ORDER_TYPE_BUY_LIMIT, 0.1, above).retcode == c.TRADE_RETCODE_INVALID_PRICE
    assert pending(term, c.ORDER_TYPE_BUY_STOP, 0.1, above, sl=above + 0.001).retcode == c.TRADE_RETCODE_INVALID_STOPS
    assert pending(term, c.ORDER_TYPE_BUY_STOP, 0.1, above, type_filling=7).retcode == c.TRADE_RETCODE_INVALID_FILL
    past = int(NOW.timestamp()) - 60
    expired = pending(term, c.ORDER_TYPE_BUY_STOP, 0.1, above, type_time=c.ORDER_TIME_SPECIFIED, expiration=past)
    assert expired.retcode == c.TRADE_RETCODE_INVALID_EXPIRATION
    assert term.order_send({"action": c.TRADE_ACTION_REMOVE, "order": 1}).retcode == c.TRADE_RETCODE_INVALID
    assert term.order_send({"action": c.TRADE_ACTION_CLOSE_BY, "position": 1, "position_by": 2}).retcode == 10013
    assert term.last_error() == OK  # a refused request is an answer, not a failed call
    assert term.orders_total() == 0


def test_malformed_arguments_fail_the_call_with_last_error(term):
    assert term.order_send("buy") is None and term.last_error() == INVALID_PARAMS
    assert term.order_send({"action": "1"}) is None and term.last_error() == INVALID_PARAMS
    assert term.order_send({"action": 1, "colour": "red"}) is None and term.last_error() == INVALID_PARAMS
    assert term.order_check({"volume": "1"}) is None and term.last_error() == INVALID_PARAMS
    assert term.orders_get(symbol=1) is None and term.last_error() == INVALID_PARAMS
    assert term.positions_get(symbol="EURUSD", ticket=1) is None and term.last_error() == INVALID_PARAMS
    assert term.history_orders_get(NOW) is None and term.last_error() == INVALID_PARAMS
    assert term.history_deals_get(ticket="1") is None and term.last_error() == INVALID_PARAMS
    assert term.history_deals_get(NOW, NOW, ticket=1) is None and term.last_error() == INVALID_PARAMS
    assert term.order_calc_margin(c.ORDER_TYPE_BUY_LIMIT, "EURUSD", 1.0, 1.1) is None
    assert term.positions_get(ticket=5) == () and term.last_error() == OK
    term.shutdown()
    assert term.order_send({"action": 1}) is None and term.last_error() == (-10004, "No IPC connection")
    assert term.positions_get() is None and term.history_deals_get(NOW, NOW) is None


def test_long_comments_are_cut_to_31_characters(term):
    result = deal(term, c.ORDER_TYPE_BUY, 0.1, comment="c" * 40)
    assert result.request.comment == "c" * 31 and term.positions_get()[0].comment == "c" * 31


def test_pending_orders_are_modified_removed_and_expire(term, clock):
    tick = term.symbol_info_tick("EURUSD")
    far = round(tick.bid + 0.05, 5)
    placed = pending(term, c.ORDER_TYPE_SELL_LIMIT, 0.2, far)
    modify = {"action": c.TRADE_ACTION_MODIFY, "order": placed.order, "price": far + 0.001, "tp": far - 0.002}
    assert term.order_send(modify).retcode == c.TRADE_RETCODE_DONE
    assert term.order_send(modify).retcode == c.TRADE_RETCODE_NO_CHANGES
    (order,) = term.orders_get()
    assert (order.price_open, order.tp) == (far + 0.001, far - 0.002)
    assert term.order_send({"action": c.TRADE_ACTION_REMOVE, "order": placed.order}).retcode == 10009
    (canceled,) = term.history_orders_get(ticket=placed.order)
    assert canceled.state == c.ORDER_STATE_CANCELED and term.orders_total() == 0

    today = pending(term, c.ORDER_TYPE_SELL_LIMIT, 0.2, far, type_time=c.ORDER_TIME_DAY)
    midnight = datetime(2024, 3, 14, tzinfo=UTC)
    clock.now = midnight.timestamp() - 1
    assert term.orders_total() == 1
    clock.advance(seconds=2)
    (expired,) = term.history_orders_get(ticket=today.order)
    assert expired.state == c.ORDER_STATE_EXPIRED and expired.time_done_msc == midnight.timestamp() * 1000


def test_a_stop_limit_becomes_a_limit_when_its_stop_is_reached(term, clock):
    future = ticks_between("EURUSD", NOW, NOW + timedelta(hours=6))
    later = future[future["time_msc"] > NOW.timestamp() * 1000 + 1000]
    ask_now = term.symbol_info_tick("EURUSD").ask
    stop = round(ask_now + 0.0003, 5)
    reached = later[later["ask"] >= stop]
    assert reached.size
    at = int(reached[0]["time_msc"])
    limit = round(stop - 0.0002, 5)
    placed = pending(term, c.ORDER_TYPE_BUY_STOP_LIMIT, 0.1, stop, stoplimit=limit)
    assert placed.retcode == c.TRADE_RETCODE_PLACED
    clock.set_msc(at)
    (order,) = term.orders_get()
    assert (order.type, order.price_open, order.ticket) == (c.ORDER_TYPE_BUY_LIMIT, limit, placed.order)
    after = later[(later["time_msc"] > at) & (later["ask"] <= limit)]
    if after.size:  # the limit itself fills on a later dip
        clock.set_msc(int(after[0]["time_msc"]))
        assert term.positions_get()[0].price_open == float(after[0]["ask"])


def test_an_order_whose_answer_was_lost_turns_up_at_the_terminal_by_its_comment(term):
    request = {"action": c.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.4, "type": c.ORDER_TYPE_BUY,
               "type_filling": c.ORDER_FILLING_FOK, "comment": "cid-7f3a", "magic": 77}  # fmt: skip
    term.fail_next_order_send(executed=True)
    assert term.order_send(request) is None and term.last_error() == IPC_TIMEOUT
    # The caller cannot know; the terminal can: the order was filled and carries the comment.
    window = (NOW - timedelta(minutes=5), NOW + timedelta(minutes=5))
    (found,) = [o for o in term.history_orders_get(*window) if o.comment == "cid-7f3a"]
    assert found.state == c.ORDER_STATE_FILLED and found.magic == 77 and found.volume_initial == 0.4
    (position,) = term.positions_get(symbol="EURUSD")
    assert position.comment == "cid-7f3a" and position.identifier == found.ticket
    (fill,) = term.history_deals_get(ticket=found.ticket)
    assert fill.comment == "cid-7f3a" and fill.volume == 0.4

    term.fail_next_order_send(executed=False)
    assert term.order_send({**request, "comment": "cid-lost"}) is None and term.last_error() == IPC_TIMEOUT
    assert not [o for o in term.history_orders_get(*window) if o.comment == "cid-lost"]
    assert term.positions_get()[0].volume == 0.4
    assert term.order_send({**request, "comment": "cid-again"}).retcode == c.TRADE_RETCODE_DONE  # faults are one-shot


def test_hedging_account_keeps_positions_apart_and_closes_by(clock):
    term = SimulatedTerminal(clock=clock, margin_mode=c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING)
    term.initialize()
    assert term.account_info().margin_mode == c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING
    long_ = deal(term, c.ORDER_TYPE_BUY, 1.0)
    clock.advance(minutes=10)
    short = deal(term, c.ORDER_TYPE_SELL, 0.4)
    assert term.positions_total() == 2
    partial = deal(term, c.ORDER_TYPE_SELL, 0.2, position=long_.order)
    assert partial.retcode == 10009 and term.positions_get(ticket=long_.order)[0].volume == 0.8
    too_much = deal(term, c.ORDER_TYPE_SELL, 0.9, position=long_.order)
    assert too_much.retcode == c.TRADE_RETCODE_INVALID_CLOSE_VOLUME
    close_by = {"action": c.TRADE_ACTION_CLOSE_BY, "position": long_.order, "position_by": short.order}
    assert term.order_send(close_by).retcode == c.TRADE_RETCODE_DONE
    (left,) = term.positions_get()
    assert left.ticket == long_.order and left.volume == pytest.approx(0.4)
    by_deals = [d for d in term.history_deals_get(*(NOW, NOW + timedelta(hours=1))) if d.entry == c.DEAL_ENTRY_OUT_BY]
    assert sum(d.profit for d in by_deals) == pytest.approx(round((short.price - long_.price) * 40_000, 2), abs=0.011)


def test_thin_liquidity_rejects_fill_or_kill_and_partially_fills_immediate_or_cancel(term):
    term.limit_liquidity("EURUSD", 0.3)
    fok = deal(term, c.ORDER_TYPE_BUY, 1.0, type_filling=c.ORDER_FILLING_FOK)
    assert (fok.retcode, fok.deal) == (c.TRADE_RETCODE_REJECT, 0) and term.positions_total() == 0
    ioc = deal(term, c.ORDER_TYPE_BUY, 1.0, type_filling=c.ORDER_FILLING_IOC, comment="cid-part")
    assert (ioc.retcode, ioc.volume, ioc.comment) == (10010, 0.3, "Request executed partially")
    assert term.positions_get()[0].volume == 0.3
    (order,) = term.history_orders_get(ticket=ioc.order)
    assert (order.state, order.volume_initial, order.volume_current) == (c.ORDER_STATE_CANCELED, 1.0, 0.7)
    (fill,) = term.history_deals_get(ticket=ioc.order)
    assert fill.volume == 0.3 and fill.commission == -0.9
    term.limit_liquidity("EURUSD", None)
    assert deal(term, c.ORDER_TYPE_BUY, 1.0).retcode == c.TRADE_RETCODE_DONE


def test_history_totals_and_group_filters(term, clock):
    deal(term, c.ORDER_TYPE_BUY, 0.1)
    deal(term, c.ORDER_TYPE_BUY, 0.01, symbol="BTCUSD")
    clock.advance(minutes=1)
    window = (NOW - timedelta(minutes=1), NOW + timedelta(minutes=2))
    assert term.history_orders_total(*window) == 2 and term.history_deals_total(*window) == 3  # + the deposit
    assert [d.symbol for d in term.history_deals_get(*window, group="*USD,!BTC*")] == ["EURUSD"]
    assert [o.symbol for o in term.history_orders_get(*window, group="Crypto\\*")] == ["BTCUSD"]
    assert term.history_orders_get(NOW - timedelta(days=2), NOW - timedelta(days=1)) == ()
    assert term.history_deals_total(NOW, "soon") is None and term.last_error() == INVALID_PARAMS
    assert {p.symbol for p in term.positions_get(group="*")} == {"EURUSD", "BTCUSD"}


def test_a_pending_order_that_no_longer_fits_the_margin_is_rejected_when_triggered(clock):
    term = SimulatedTerminal(clock=clock, deposit=500.0)
    term.initialize()
    future = ticks_between("EURUSD", NOW, NOW + timedelta(hours=3))
    later = future[future["time_msc"] > NOW.timestamp() * 1000 + 60_000]
    limit = round(float(later["ask"].min()) + 0.00003, 5)
    hit = later[later["ask"] <= limit][0]
    placed = pending(term, c.ORDER_TYPE_BUY_LIMIT, 1.0, limit)  # ~3,600 USD of margin once filled
    assert placed.retcode == c.TRADE_RETCODE_PLACED
    clock.set_msc(int(hit["time_msc"]))
    assert term.positions_total() == 0 and term.orders_total() == 0
    (order,) = term.history_orders_get(ticket=placed.order)
    assert order.state == c.ORDER_STATE_REJECTED and order.time_done_msc == int(hit["time_msc"])
    assert term.account_info().balance == 500.0


def test_triggers_on_different_symbols_apply_in_time_order(term, clock):
    end = NOW + timedelta(hours=8)
    after = NOW.timestamp() * 1000 + 1000

    def first_hit(symbol: str, sl: float) -> int | None:
        ticks = ticks_between(symbol, NOW, end)
        hits = ticks[(ticks["time_msc"] > after) & (ticks["bid"] <= sl)]
        return int(hits[0]["time_msc"]) if hits.size else None

    gbp_sl = round(term.symbol_info_tick("GBPUSD").bid - 0.0005, 5)
    gbp_at = first_hit("GBPUSD", gbp_sl)
    assert gbp_at is not None
    # A EURUSD stop reached later than GBPUSD's, though EURUSD sorts first.
    eur_bid = term.symbol_info_tick("EURUSD").bid
    eur_sl, eur_at = next(
        (sl, at)
        for sl in (round(eur_bid - 0.0001 * k, 5) for k in range(1, 200))
        if (at := first_hit("EURUSD", sl)) is not None and at > gbp_at
    )
    eur = deal(term, c.ORDER_TYPE_BUY, 0.1, sl=eur_sl)
    gbp = deal(term, c.ORDER_TYPE_BUY, 0.1, symbol="GBPUSD", sl=gbp_sl)
    clock.now = end.timestamp()
    assert term.positions_total() == 0
    closes = [d for d in term.history_deals_get(NOW, end) if d.reason == c.DEAL_REASON_SL]
    assert [(d.position_id, d.time_msc) for d in closes] == [(gbp.order, gbp_at), (eur.order, eur_at)]
    assert closes[0].ticket < closes[1].ticket


def test_the_account_outlives_a_terminal_restart_with_trade_state(tmp_path, clock):
    state = tmp_path / "trades.json"
    first = SimulatedTerminal(clock=clock, trade_state=state)
    first.initialize()
    opened = deal(first, c.ORDER_TYPE_BUY, 0.5, comment="cid-before")
    far = round(first.symbol_info_tick("EURUSD").bid + 0.05, 5)
    resting = pending(first, c.ORDER_TYPE_SELL_LIMIT, 0.2, far, comment="cid-resting")
    before = (first.positions_get(), first.orders_get(), first.history_deals_get(NOW, NOW + timedelta(minutes=1)))
    balance = first.account_info().balance
    first.fail_next_order_send(executed=True)  # the last order's answer is lost as the terminal dies
    assert deal(first, c.ORDER_TYPE_BUY, 0.1, symbol="XAUUSD", comment="cid-mid-order") is None
    del first  # killed: nothing but the state file survives

    second = SimulatedTerminal(clock=clock, trade_state=state)
    second.initialize()
    assert second.positions_get()[:1] == before[0] and second.orders_get() == before[1]
    assert second.history_deals_get(NOW, NOW + timedelta(minutes=1))[:-1] == before[2]
    assert [p.comment for p in second.positions_get()] == ["cid-before", "cid-mid-order"]
    assert second.account_info().balance == round(balance - 0.3, 2)  # the lost order's commission
    assert second.order_send({"action": c.TRADE_ACTION_REMOVE, "order": resting.order}).retcode == 10009
    again = deal(second, c.ORDER_TYPE_SELL, 0.5, comment="cid-after")
    assert again.order > resting.order and again.deal > max(d.ticket for d in before[2])  # tickets go on
    assert [p.ticket for p in second.positions_get()] == [second.positions_get(symbol="XAUUSD")[0].ticket]
    assert opened.order in {d.position_id for d in second.history_deals_get(position=opened.order)}
    with pytest.raises(ValueError, match="margin mode"):
        SimulatedTerminal(clock=clock, trade_state=state, margin_mode=c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING)
