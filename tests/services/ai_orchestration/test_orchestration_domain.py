"""ai-orchestration's domain: the RSI rule, scoring without look-ahead, hit-rate weights, the
action rule and the confidence calibration (no infrastructure: pure code)."""

from __future__ import annotations

import random

import pytest

from services.ai_orchestration.calibration import Calibrator
from services.ai_orchestration.ensemble import Book, EntryRule, Situation, Vote, combine
from services.ai_orchestration.outcomes import Call, HitRates, Realiser
from shared.strategies.rsi import RsiSeries, RsiThresholds, trend_of

RULES = RsiThresholds(maturity_bars=3)
MIN = 60_000_000_000


def mature(series: RsiSeries) -> RsiSeries:
    for _ in range(RULES.maturity_bars - 1):
        series.propose(50.0, None, RULES)
    return series


# -- the RSI rule --------------------------------------------------------------------------------


def test_rsi_enters_and_exits_at_the_seeds_thresholds():
    s = mature(RsiSeries())
    assert s.propose(29.0, None, RULES).action == "enter_long"
    s.commit("enter_long")
    assert s.propose(64.9, None, RULES).action == "hold"
    assert s.propose(65.0, None, RULES).action == "exit_long"
    s.commit("exit_long")
    assert s.propose(70.9, None, RULES).action == "hold"
    p = s.propose(71.0, None, RULES)
    assert (p.action, p.score) == ("enter_short", -1.0)
    s.commit("enter_short")
    assert s.propose(35.1, None, RULES).action == "hold"
    assert s.propose(35.0, None, RULES).action == "exit_short"


def test_rsi_does_not_trade_before_maturity():
    s = RsiSeries()
    first = s.propose(10.0, None, RULES)
    assert not first.mature and first.action == "hold"
    s.propose(10.0, None, RULES)
    assert s.propose(10.0, None, RULES).action == "enter_long"  # the third bar: mature


def test_trend_filter_blocks_entries_against_the_higher_timeframe():
    s = mature(RsiSeries())
    assert trend_of(1.0, 1.1) == "down" and trend_of(1.2, 1.1) == "up" and trend_of(None, 1.0) is None
    assert s.propose(20.0, "down", RULES).action == "hold"
    assert s.propose(20.0, "up", RULES).action == "enter_long"
    assert s.propose(80.0, "up", RULES).action == "hold"
    assert s.propose(80.0, "down", RULES).action == "enter_short"
    strict = RsiThresholds(maturity_bars=0, trend_required=True)
    assert RsiSeries().propose(20.0, None, strict).action == "hold"


def test_the_rule_keeps_its_own_position_as_the_seeds_strategy_alone_would():
    s = mature(RsiSeries())
    p = s.propose(20.0, None, RULES)
    assert (p.action, p.score) == ("enter_long", 1.0)
    s.commit(p.action)
    assert s.position == "long"
    assert s.propose(50.0, None, RULES).score == 1.0  # it keeps voting its long until its exit


ENTRY = EntryRule(min_strength=0.3, min_confidence=0.55)


def now(score: float, confidence: float = 0.6, *, mature=True, long_ok=True, short_ok=True, vote=0, rule="hold"):
    return Situation(combine([Vote("m", score, 1.0)], dead_zone=0.1), confidence, mature, long_ok, short_ok, vote, rule)


def test_the_models_alone_open_a_position_when_strong_and_confident_enough():
    book = Book()
    assert book.decide(now(0.29), ENTRY) == "hold"  # too weak
    assert book.decide(now(0.5, confidence=0.54), ENTRY) == "hold"  # not confident enough
    assert book.decide(now(0.3, confidence=0.55), ENTRY) == "enter_long"  # both thresholds reached
    assert (book.position, book.owner) == ("long", "ensemble")
    assert book.decide(now(0.9), ENTRY) == "hold"  # already long
    book = Book()
    assert book.decide(now(-0.6), ENTRY) == "enter_short"


def test_maturity_and_trend_filter_every_entry():
    assert Book().decide(now(0.9, mature=False), ENTRY) == "hold"
    assert Book().decide(now(0.9, long_ok=False), ENTRY) == "hold"
    assert Book().decide(now(-0.9, short_ok=False), ENTRY) == "hold"
    assert Book().decide(now(-0.9, long_ok=False), ENTRY) == "enter_short"


def test_a_reversal_exits_any_position_and_the_rules_exit_only_its_own():
    book = Book()
    assert book.decide(now(0.8, vote=1, rule="enter_long"), ENTRY) == "enter_long"
    assert book.owner == "rule"  # the rule voted for it
    assert book.decide(now(0.8, vote=0, rule="exit_long"), ENTRY) == "exit_long"  # the rule's exit closes it
    models = Book()
    assert models.decide(now(0.8, vote=0), ENTRY) == "enter_long"
    assert models.owner == "ensemble"
    assert models.decide(now(0.8, rule="exit_long"), ENTRY) == "hold"  # not the rule's position
    assert models.decide(now(0.05), ENTRY) == "hold"  # flat is no reversal
    assert models.decide(now(-0.2), ENTRY) == "exit_long"  # the ensemble turned short
    assert models.position == "flat"


def test_the_book_survives_its_checkpoint():
    book = Book("short", "rule")
    assert Book.from_json(book.to_json()) == book
    assert Book.from_json({}) == Book()


# -- outcomes without look-ahead -----------------------------------------------------------------


def test_a_call_is_scored_only_once_its_horizon_has_closed():
    r = Realiser()
    r.on_bar(0, 1.00)
    r.expect(Call(0, 3, "m", +1))
    assert r.on_bar(1 * MIN, 0.90) == []  # down first: must not be scored yet
    assert r.on_bar(2 * MIN, 0.95) == []
    [outcome] = r.on_bar(3 * MIN, 1.05)  # the third bar after: up from 1.00
    assert outcome.correct and outcome.call.who == "m"
    assert r.pending == []


def test_a_call_against_the_move_is_wrong_and_flat_calls_are_not_scored():
    r = Realiser()
    r.on_bar(0, 1.00)
    r.expect(Call(0, 1, "up", +1))
    r.expect(Call(0, 1, "down", -1))
    r.expect(Call(0, 1, "flat", 0))
    outcomes = {o.call.who: o.correct for o in r.on_bar(MIN, 0.99)}
    assert outcomes == {"up": False, "down": True}


def test_pending_calls_survive_a_checkpoint():
    r = Realiser()
    for i in range(100):
        r.on_bar(i * MIN, 1.0 + i / 1000)
    r.expect(Call(10 * MIN, 200, "m", +1))  # an old call with a long horizon
    restored = Realiser.from_json(r.to_json())
    for i in range(100, 211):
        outcomes = restored.on_bar(i * MIN, 2.0)
        if outcomes:
            assert i == 210 and outcomes[0].correct
            return
    pytest.fail("the restored call was never scored")


# -- weights -------------------------------------------------------------------------------------


def test_weights_follow_hit_rates_with_a_prior_for_thin_history():
    hits = HitRates(window=100, min_outcomes=20, prior_hit_rate=0.55)
    for i in range(100):
        hits.record("good", i % 10 < 8)  # 80 %
        hits.record("coin", i % 2 == 0)  # 50 %
    hits.record("new", True)
    assert hits.hit_rate("good") == pytest.approx(0.8)
    assert hits.hit_rate("new") is None
    assert hits.raw_weight("good") == pytest.approx(0.3)
    assert hits.raw_weight("new") == pytest.approx(0.05)  # the prior's edge
    assert hits.raw_weight("coin") == 0.0
    combined = combine([Vote(w, s, hits.raw_weight(w)) for w, s in (("good", 1.0), ("new", -1.0), ("coin", -1.0))], 0.1)
    assert combined.weights == pytest.approx([0.3 / 0.35, 0.05 / 0.35, 0.0])
    assert combined.direction == "long" and combined.score == pytest.approx((0.3 - 0.05) / 0.35)


def test_the_window_rolls():
    hits = HitRates(window=10, min_outcomes=10, prior_hit_rate=0.55)
    for _ in range(10):
        hits.record("m", False)
    for _ in range(10):
        hits.record("m", True)
    assert hits.hit_rate("m") == 1.0


def test_no_weight_is_flat():
    assert combine([Vote("a", 1.0, 0.0)], 0.1).direction == "flat"
    assert combine([Vote("a", 0.05, 1.0)], 0.1).direction == "flat"
    assert combine([Vote("a", -0.5, 1.0)], 0.1).direction == "short"


# -- calibration ---------------------------------------------------------------------------------


def true_rate(strength: float) -> float:
    return 0.5 + 0.4 * strength


def test_confidence_is_calibrated_on_synthetic_signals_with_a_known_hit_rate():
    rng = random.Random(7)
    cal = Calibrator(bins=10, window=5000, prior=10.0)
    assert cal.confidence(0.9) == 0.5  # nothing observed: a coin
    for _ in range(30_000):
        s = rng.random()
        cal.record(s, rng.random() < true_rate(s))
    for b in range(10):
        mid = (b + 0.5) / 10
        assert cal.confidence(mid) == pytest.approx(true_rate(mid), abs=0.03), b
    # And calibrated in the reliability sense on fresh signals: of those given confidence c, c were right.
    fresh = [(s := rng.random(), rng.random() < true_rate(s)) for _ in range(20_000)]
    by_bin: dict[int, list[tuple[float, bool]]] = {}
    for s, ok in fresh:
        by_bin.setdefault(cal.bin_of(s), []).append((cal.confidence(s), ok))
    ece = sum(abs(sum(c for c, _ in v) / len(v) - sum(ok for _, ok in v) / len(v)) * len(v) for v in by_bin.values())
    assert ece / len(fresh) < 0.02


def test_a_thin_bin_is_shrunk_towards_a_coin_and_the_curve_never_falls():
    cal = Calibrator(bins=4, window=100, prior=10.0)
    for _ in range(2):
        cal.record(0.9, True)
    assert 0.5 < cal.confidence(0.9) < 0.7  # two right calls say little
    for _ in range(50):
        cal.record(0.1, True)
    assert cal.confidence(0.9) >= cal.confidence(0.1)  # isotonic: stronger is never less likely right
