"""Positions, realised/unrealised PnL and trades (average cost, netting), and the aggregation per
scope (symbol, strategy, bot, model with weights), hit rate and calibration: hand-computed."""

from __future__ import annotations

import uuid
from decimal import Decimal as D

import pytest

from services.performance_analytics.accounting import FillFact, Position, apply_fill
from services.performance_analytics.analytics import Analytics, SignalFacts, model_weights
from services.performance_analytics.ledger import ACCOUNT, AccountLedger, Quote
from services.performance_analytics.reports import calibration
from shared.events import Contribution, Fill, OrderAttribution, Signal, Timeframe, ValidatedSignal

EURUSD = D(100_000)


def fill(side, qty, price, commission="2", *, symbol="EURUSD", size=EURUSD, ts=0, **attribution) -> FillFact:
    return FillFact(
        fill_id=uuid.uuid4(), tenant="t1", account_id="A1", symbol=symbol, side=side, quantity=D(qty),
        price=D(price), commission=D(commission), ts_ns=ts, contract_size=size, **attribution,
    )  # fmt: skip


def test_average_cost_partial_close_and_flip_by_hand():
    p = Position("EURUSD", EURUSD)
    apply_fill(p, fill("buy", "1", "1.1000", ts=1))
    apply_fill(p, fill("buy", "1", "1.1010", ts=2))
    # average = (1 * 1.1000 + 1 * 1.1010) / 2 = 1.1005
    assert (p.quantity, p.average_price) == (D(2), D("1.1005"))
    a = apply_fill(p, fill("sell", "1.5", "1.1025", ts=3))
    # closes 1.5 lots: 1.5 * 100000 * (1.1025 - 1.1005) = 300; the rest keeps its average
    assert a.bookings[0][1] == D(300)
    assert (p.quantity, p.average_price, a.closed) == (D("0.5"), D("1.1005"), None)
    a = apply_fill(p, fill("sell", "1", "1.0995", "4", ts=4))
    # closes 0.5: 0.5 * 100000 * (1.0995 - 1.1005) = -50; opens 0.5 short at 1.0995 (a flip)
    first = a.closed
    assert first is not None and first.realised == D(250)
    # commissions 2 + 2 + 2 + half of 4 (0.5 of the fill's 1 lot closed) = 8 -> net 250 - 8 = 242
    assert first.commission == D(8) and first.net == D(242)
    assert (first.opened_ns, first.closed_ns, first.peak_quantity) == (1, 4, D(2))
    assert (p.quantity, p.average_price, p.trade.direction, p.trade.commission) == (D("-0.5"), D("1.0995"), "short", 2)
    a = apply_fill(p, fill("buy", "0.5", "1.0990", ts=5))
    # the short closes: 0.5 * 100000 * (1.0990 - 1.0995) * -1 = +25; commissions 2 + 2 -> net 21
    assert a.closed is not None and (a.closed.realised, a.closed.net) == (D(25), D(21))
    assert (p.quantity, p.trade) == (0, None)


def test_unrealised_marks_a_long_at_the_bid_and_a_short_at_the_ask():
    gold = D(100)
    long = Position("XAUUSD", gold)
    apply_fill(long, fill("buy", "1", "2000", symbol="XAUUSD", size=gold))
    # 1 lot * 100 oz * (2010.50 - 2000) = 1050
    assert long.unrealised(D("2010.50"), D("2011.00")) == D(1050)
    short = Position("XAUUSD", gold)
    apply_fill(short, fill("sell", "2", "2000", symbol="XAUUSD", size=gold))
    # -2 * 100 * (2011.00 - 2000) = -2200
    assert short.unrealised(D("2010.50"), D("2011.00")) == D(-2200)
    # no quote yet: the last fill's price, so nothing unrealised
    assert short.unrealised(None, None) == 0


def test_scopes_split_a_trade_by_model_weight_and_count_hits():
    ledger = AccountLedger("t1", "A1")
    weights = {"xgb:3": 0.75, "lstm:1": 0.25}
    ledger.apply(fill("buy", "1", "1.1000", strategy="signals", model_weights=weights, confidence=0.72, ts=1))
    ledger.apply(fill("sell", "1", "1.1010", ts=2))  # +100 gross, 4 commission -> net 96
    ledger.apply(fill("sell", "1", "1.1000", strategy="rsi", model_weights={"xgb:3": 0.5, "rf:2": 0.5}, ts=3))
    ledger.apply(fill("buy", "1", "1.1020", ts=4))  # short loses 1 * 100000 * 0.0020 = 200 -> net -204
    pnl = ledger.pnl({})
    assert pnl[ACCOUNT].realised == D(-100) and pnl[ACCOUNT].commission == D(8) and pnl[ACCOUNT].total == D(-108)
    assert pnl[("strategy", "signals")].total == D(96)
    assert pnl[("strategy", "rsi")].total == D(-204)
    # xgb: 0.75 * 96 + 0.5 * -204 = 72 - 102 = -30; lstm: 0.25 * 96 = 24; rf: 0.5 * -204 = -102
    assert pnl[("model", "xgb:3")].total == D(-30)
    assert pnl[("model", "lstm:1")].total == D(24)
    assert pnl[("model", "rf:2")].total == D(-102)
    xgb = ledger.closed(("model", "xgb:3"))
    assert [r.won for r in xgb] == [True, False]  # hit rate 1 / 2
    assert [r.net for r in xgb] == [D(72), D(-102)]
    assert len(ledger.closed(ACCOUNT)) == 2


def test_open_trade_counts_unrealised_and_exposure_in_its_scopes():
    ledger = AccountLedger("t1", "A1")
    ledger.apply(fill("buy", "2", "1.1000", commission="0", strategy="s", model_weights={"m:1": 1.0}))
    pnl = ledger.pnl({"EURUSD": Quote(D("1.1010"), D("1.1012"), 0)})
    # 2 * 100000 * (1.1010 - 1.1000) = 200; notional 2 * 100000 * 1.1010 = 220200
    for scope in (ACCOUNT, ("symbol", "EURUSD"), ("strategy", "s"), ("model", "m:1")):
        assert (pnl[scope].unrealised, pnl[scope].gross_exposure, pnl[scope].open_trades) == (D(200), D(220200), 1)


def test_model_weights_from_the_signal_or_equal():
    signal = SignalFacts("s", 0, "EURUSD", 0.7, {"xgb:3": 0.6, "lstm:1": 0.2, "rf:2": 0.2})
    # the order's models, weighted by the signal and normalised: 0.6 / 0.8, 0.2 / 0.8
    assert model_weights(["xgb:3", "lstm:1"], signal) == {"xgb:3": 0.75, "lstm:1": 0.25}
    assert model_weights(["xgb:3", "lstm:1"], None) == {"xgb:3": 0.5, "lstm:1": 0.5}
    assert model_weights([], signal) == {"xgb:3": 0.6, "lstm:1": 0.2, "rf:2": 0.2}
    assert model_weights(["other:1"], signal) == {"other:1": 1.0}  # no weight in the signal: equal
    assert model_weights([], None) == {}


def test_calibration_buckets_by_confidence():
    ledger = AccountLedger("t1", "A1")
    for i, (confidence, exit_price) in enumerate([(0.62, "1.1010"), (0.68, "1.0990"), (0.91, "1.1010"), (None, "1.1")]):
        ledger.apply(fill("buy", "1", "1.1000", "0", model_weights={"m:1": 1.0}, confidence=confidence, ts=2 * i))
        ledger.apply(fill("sell", "1", exit_price, "0", ts=2 * i + 1))
    result = calibration(ledger.closed(("model", "m:1")))
    assert result["without_confidence"] == 1
    # [0.6, 0.7): 0.62 won, 0.68 lost -> hit rate 0.5, mean 0.65; [0.9, 1.0): one win
    assert result["buckets"] == [
        {"from": 0.6, "to": 0.7, "trades": 2, "mean_confidence": pytest.approx(0.65), "hit_rate": 0.5},
        {"from": 0.9, "to": 1.0, "trades": 1, "mean_confidence": 0.91, "hit_rate": 1.0},
    ]


def test_analytics_takes_weights_and_confidence_from_a_seen_signal_and_counts_a_fill_once():
    analytics = Analytics()
    sig = Signal(
        event_id=uuid.uuid4(), ts_event=1, ts_init=1, symbol="EURUSD", timeframe=Timeframe.M1,
        feature_vector_id=uuid.uuid4(), direction="long", action="enter_long", strength=0.5, confidence=0.8,
        strategy="ensemble-1",
        contributions=[
            Contribution(model_id=None, model_name="xgb", model_version=3, model_kind="xgboost", score=0.5, weight=0.9),
            Contribution(model_id=None, model_name="lstm", model_version=1, model_kind="lstm", score=0.2, weight=0.1),
        ],
    )  # fmt: skip
    analytics.remember_signal(SignalFacts.of(ValidatedSignal(event_id=uuid.uuid4(), ts_event=1, ts_init=1, signal=sig)))
    event = Fill(
        event_id=uuid.uuid4(), ts_event=5, ts_init=5, order_id=uuid.uuid4(), client_order_id="c1", tenant="t1",
        account_id="A1", venue="paper", venue_fill_id="d1", symbol="EURUSD", side="buy", quantity=D("0.1"),
        price=D("1.1"), commission=D("0.5"), currency="USD",
        attribution=OrderAttribution(strategy="signals", signal_id=sig.event_id, models=["xgb:3", "lstm:1"]),
    )  # fmt: skip
    fact = analytics.fact_of(event)
    assert fact.model_weights == {"xgb:3": pytest.approx(0.9), "lstm:1": pytest.approx(0.1)}
    assert (fact.confidence, fact.contract_size) == (0.8, EURUSD)
    assert analytics.apply(fact) is True
    assert analytics.apply(fact) is False  # the same fill again changes nothing
    assert analytics.ledger("t1", "A1").fills == 1
    assert analytics.ledger("t2", "A1") is None
