"""pattern-validator's checks, each on its own (pure code): stale and gappy data (market closures
excluded), candlestick patterns, the regime table, PSI against a hand-computed example, drift,
and the seeds' deduplicator."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest

from services.pattern_validator import checks
from services.pattern_validator.inputs import Candle, Inputs
from services.pattern_validator.psi import NoDistributions, TrainingDistribution, psi
from services.pattern_validator.settings import PatternValidatorSettings
from services.pattern_validator.validator import Validator
from shared.dedup import SignalDeduplicator, fingerprint
from shared.events import (
    Contribution,
    FeatureVector,
    Signal,
    Timeframe,
    bar_event_id,
    feature_vector_id,
    now_ns,
    signal_id,
)
from shared.features import drift_monitored
from shared.market_hours import MarketHours
from shared.ml.drift import Distribution, distributions, proportions

M1 = Timeframe.M1
MIN = M1.nanos
WED = 1_767_744_000_000_000_000  # Wednesday 2026-01-07 00:00 UTC
SAT = 1_768_003_200_000_000_000  # Saturday 2026-01-10 00:00 UTC
RULES = checks.RegimeRules()


def signal(action="enter_long", direction="long", strength=0.5, ts=WED, rsi_score=0.0, symbol="EURUSD") -> Signal:
    contributions = [
        Contribution(
            model_id=uuid.uuid4(), model_name="xgb", model_version=1, model_kind="xgboost", score=0.5, weight=0.5
        ),
        Contribution(
            model_id=None, model_name="rsi-14", model_version=1, model_kind="rule", score=rsi_score, weight=0.5
        ),
    ]
    return Signal(
        event_id=signal_id(symbol, M1, ts, "ensemble-1"), ts_event=ts, ts_init=now_ns(), symbol=symbol, timeframe=M1,
        feature_vector_id=uuid.uuid4(), direction=direction, action=action, strength=strength, confidence=0.6,
        strategy="ensemble-1", contributions=contributions,
    )  # fmt: skip


def codes(findings):
    return [(f.reason.code, f.rejects) for f in findings]


# -- stale_data ------------------------------------------------------------------------------------


def test_stale_when_bars_behind_the_newest():
    s = signal()
    assert checks.stale(s, WED + 2 * MIN, WED + 2 * MIN, 2, 60) == []
    assert codes(checks.stale(s, WED + 3 * MIN, WED + 2 * MIN, 2, 60)) == [("stale_data", True)]


def test_stale_when_arriving_long_after_the_bar_closed():
    s = signal()
    closed = WED + MIN
    assert checks.stale(s, WED, closed + 59_000_000_000, 2, 60) == []
    assert codes(checks.stale(s, WED, closed + 61_000_000_000, 2, 60)) == [("stale_data", True)]
    assert codes(checks.stale(signal(action="hold", direction="flat"), WED, closed + 61_000_000_000, 2, 60)) == [
        ("stale_data", True)
    ]


# -- gappy_data ------------------------------------------------------------------------------------


def test_gappy_counts_missing_bars_in_open_market():
    cal = MarketHours()
    have = {WED - i * MIN for i in range(30)} - {WED - 5 * MIN, WED - 6 * MIN}
    assert len(checks.missing_bars("EURUSD", M1, WED, have, 0, 30, cal)) == 2
    assert checks.gappy(signal(), [WED - 5 * MIN, WED - 6 * MIN], 2) == []
    have -= {WED - 7 * MIN}
    missing = checks.missing_bars("EURUSD", M1, WED, have, 0, 30, cal)
    assert codes(checks.gappy(signal(), missing, 2)) == [("gappy_data", True)]
    assert codes(checks.gappy(signal(action="exit_long"), missing, 2)) == [("gappy_data", False)]  # a note


def test_the_weekend_closure_is_not_a_gap_for_fx_but_is_for_crypto():
    cal = MarketHours()
    sunday_open = SAT + 46 * 3600 * 10**9  # Sunday 22:00 UTC: FX reopens
    first = sunday_open + 2 * MIN
    have = {sunday_open, sunday_open + MIN, first}  # three bars since the reopening; before: Friday 22:00
    assert checks.missing_bars("EURUSD", M1, first, have, 0, 30, cal) == []
    assert len(checks.missing_bars("BTCUSD", M1, first, have, 0, 30, cal)) == 27  # crypto never closes


def test_bars_before_the_first_one_seen_are_not_gaps():
    cal = MarketHours()
    have = {WED, WED - MIN}
    assert checks.missing_bars("EURUSD", M1, WED, have, WED - MIN, 30, cal) == []


# -- candlestick patterns --------------------------------------------------------------------------


def candles(rows):
    return [Candle(WED + i * MIN, *row) for i, row in enumerate(rows)]


def downtrend_then(last_two):
    rows = [(1.10 - i * 0.002, 1.101 - i * 0.002, 1.097 - i * 0.002, 1.098 - i * 0.002) for i in range(12)]
    return candles(rows + last_two)


def test_a_bullish_engulfing_confirms_a_long_and_contradicts_a_short():
    bars = downtrend_then([(1.076, 1.0765, 1.073, 1.074), (1.0735, 1.079, 1.073, 1.0785)])
    found = checks.patterns_at_last(bars)
    assert found.get("CDLENGULFING", 0) > 0
    assert ("pattern_confirmation", False) in codes(checks.patterns(signal(), found))
    assert ("pattern_contradiction", True) in codes(checks.patterns(signal("enter_short", "short"), found))
    assert ("pattern_contradiction", False) in codes(checks.patterns(signal("exit_short", "short"), found))


def test_a_bearish_engulfing_rejects_a_long():
    rows = [(1.00 + i * 0.002, 1.003 + i * 0.002, 0.999 + i * 0.002, 1.002 + i * 0.002) for i in range(12)]
    bars = candles([*rows, (1.024, 1.027, 1.0235, 1.026), (1.0265, 1.027, 1.021, 1.0225)])
    found = checks.patterns_at_last(bars)
    assert found.get("CDLENGULFING", 0) < 0
    assert codes(checks.patterns(signal(), found))[0] == ("pattern_contradiction", True)


def test_no_pattern_no_finding():
    assert checks.patterns(signal(), {}) == []
    assert checks.patterns(signal("hold", "flat"), {"CDLENGULFING": -100}) == []


# -- regime ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("adx", "natr", "trend_up", "kwargs", "rejected"),
    [
        (30, 0.1, True, {}, False),  # trend, with it
        (30, 0.1, False, {}, True),  # trend, against it, weak
        (30, 0.1, False, {"strength": 0.7}, False),  # against it, but strong
        (10, 0.1, None, {"strength": 0.2}, True),  # range, weak, RSI not backing
        (10, 0.1, None, {"strength": 0.2, "rsi_score": 1.0}, False),  # range, RSI mean reversion backs it
        (10, 0.1, None, {"strength": 0.4}, False),  # range, strong enough
        (22, 0.1, False, {"strength": 0.1}, False),  # transition: no rule
        (10, 2.0, None, {"strength": 0.5}, True),  # high volatility, weak
        (10, 2.0, None, {"strength": 0.8}, False),  # high volatility, strong
        (None, None, None, {}, False),  # warming up
        (10, 2.0, None, {"action": "exit_long", "strength": 0.1}, False),  # exits are not held to the regime
    ],
)
def test_regime_table(adx, natr, trend_up, kwargs, rejected):
    found = checks.regime(signal(**kwargs), adx, natr, trend_up, RULES)
    assert bool(found) == rejected
    assert all(f.reason.code == "regime_misfit" and f.rejects for f in found)


# -- PSI and drift ---------------------------------------------------------------------------------


def test_psi_against_a_hand_computed_example():
    bins = Distribution(edges=[0.0, 1.0], proportions=[0.25, 0.5, 0.25])  # interior edges, as trained
    values = [-1.0] * 5 + [0.5] * 3 + [2.0] * 2  # shares 0.5, 0.3, 0.2; 0.0 and 1.0 fall in the upper bin
    assert list(proportions(np.asarray(values), bins.edges)) == pytest.approx([0.5, 0.3, 0.2])
    expected = (
        (0.5 - 0.25) * math.log(0.5 / 0.25) + (0.3 - 0.5) * math.log(0.3 / 0.5) + (0.2 - 0.25) * math.log(0.2 / 0.25)
    )
    # 0.25 ln 2 + 0.2 ln(5/3) + 0.05 ln(5/4) = 0.173287 + 0.102165 + 0.011157
    assert expected == pytest.approx(0.286609, abs=1e-6)
    assert psi(bins, values) == pytest.approx(expected, rel=1e-12)
    assert list(proportions(np.asarray([0.0, 1.0]), bins.edges)) == pytest.approx([0.0, 0.5, 0.5])  # left-closed
    assert psi(bins, [-1.0] * 25 + [0.5] * 50 + [3.0] * 25) == pytest.approx(0.0)


def test_an_empty_bin_is_floored_not_infinite():
    bins = Distribution(edges=[1.0], proportions=[0.5, 0.5])
    assert math.isfinite(psi(bins, [0.5] * 10))


def test_drift_rejects_entries_and_notes_the_rest():
    drifted = {"xgb@1": ["rsi_14"]}
    assert codes(checks.drift(signal(), drifted, 0.25)) == [("feature_drift", True)]
    assert codes(checks.drift(signal("exit_long"), drifted, 0.25)) == [("feature_drift", False)]
    assert checks.drift(signal(), {}, 0.25) == []


# -- duplicate -------------------------------------------------------------------------------------


def test_the_fingerprint_is_the_seeds_and_unique_within_the_window():
    a = fingerprint("EURUSD", "long", "ensemble-1", WED + 5_000_000_000)
    assert a == fingerprint("EURUSD", "long", "ensemble-1", WED + 59_000_000_000)  # same minute
    assert a != fingerprint("EURUSD", "long", "ensemble-1", WED + MIN)
    assert a != fingerprint("EURUSD", "short", "ensemble-1", WED)
    assert a != fingerprint("GBPUSD", "long", "ensemble-1", WED)
    assert a != fingerprint("EURUSD", "long", "ensemble-2", WED)
    d = SignalDeduplicator(window_s=300)
    assert not d.check(a, WED)
    assert d.check(a, WED + 299_000_000_000)
    assert not d.check(a, WED + 301_000_000_000)  # the window passed: new again
    assert (d.stats.checked, d.stats.duplicates, d.stats.tracked) == (3, 1, 1)


# -- a verdict that could not be stored ------------------------------------------------------------


class FlakyStore:
    """The verdict store's interface in memory; its first insert fails (PostgreSQL went away)."""

    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, str] = {}
        self.fail_next = True

    async def stored_event(self, signal_id: uuid.UUID) -> str | None:
        return self.rows.get(signal_id)

    async def insert(self, verdict, fingerprint: str | None) -> bool:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("PostgreSQL went away")
        if verdict.signal.event_id in self.rows:
            return False
        self.rows[verdict.signal.event_id] = verdict.model_dump_json()
        return True

    async def recent_fingerprints(self, since_ns: int) -> list[tuple[str, int]]:
        return []


async def test_a_signal_whose_verdict_was_not_stored_is_no_duplicate_of_itself_when_redelivered():
    published = []

    async def publish(verdict) -> None:
        published.append(verdict)

    async def no_drift(event) -> None: ...

    settings = PatternValidatorSettings(input_wait_ms=0, max_delay_s=10**9)
    store = FlakyStore()
    validator = Validator(settings, Inputs(10), store, NoDistributions(), publish, no_drift, lambda: WED / 1e9)  # type: ignore[arg-type]
    s = signal()
    with pytest.raises(ConnectionError):
        await validator.handle(s)  # the batch fails and is redelivered
    verdict = await validator.handle(s)
    assert "duplicate" not in {r.code for r in getattr(verdict, "reasons", getattr(verdict, "notes", []))}
    assert published == [verdict] and s.event_id in store.rows
    again = await validator.handle(s)  # a later redelivery: the stored verdict again
    assert again.event_id == verdict.event_id and again.ts_init == verdict.ts_init


# -- which features drift is judged on, and how often --------------------------------------------


class OneDistribution:
    """Every model was trained on ``features`` (the registry's distributions of one model)."""

    def __init__(self, features: dict[str, Distribution]) -> None:
        self.features = features

    async def of(self, model_id: uuid.UUID) -> TrainingDistribution:
        return TrainingDistribution(model_id, "xgb", 1, self.features)


def core_vector(i: int, close: float, rsi: float) -> FeatureVector:
    ts = WED + i * MIN
    return FeatureVector(
        event_id=feature_vector_id("EURUSD", M1, ts, "core-1"), ts_event=ts, ts_init=ts, symbol="EURUSD",
        timeframe=M1, bar_event_id=bar_event_id("EURUSD", M1, ts), feature_set="core-1",
        features={"close": close, "rsi_14": rsi},
    )  # fmt: skip


async def test_drift_is_judged_on_scale_free_features_and_recomputed_every_few_bars():
    rng = np.random.default_rng(7)
    training = np.column_stack([rng.normal(1.10, 0.01, 2000), rng.uniform(30, 70, 2000)])
    model = OneDistribution(distributions(training, ["close", "rsi_14"]))
    settings = PatternValidatorSettings(psi_window=100, psi_min_bars=50, psi_recheck_bars=60)
    inputs = Inputs(settings.psi_window)

    async def ignore(event) -> None: ...

    validator = Validator(settings, inputs, FlakyStore(), model, ignore, ignore, lambda: WED / 1e9)  # type: ignore[arg-type]
    # The price moved far from where the model was trained (a price level always does, in time);
    # the RSI's distribution did not: no drift.
    vectors = [core_vector(i, 1.5 + i * 1e-4, float(rng.uniform(30, 70))) for i in range(100)]
    for v in vectors:
        inputs.add_vector(v)
    s = signal(ts=vectors[-1].ts_event)
    assert drift_monitored("core-1") is not None and "close" not in drift_monitored("core-1")
    assert await validator._drifted(s, vectors[-1]) == {}
    # The RSI drifts: seen at the next recomputation, 60 vectors on, not before.
    for i in range(100, 159):
        inputs.add_vector(core_vector(i, 1.5, 95.0))
    assert await validator._drifted(s, vectors[-1]) == {}  # kept: 59 new vectors
    inputs.add_vector(core_vector(159, 1.5, 95.0))
    assert await validator._drifted(s, vectors[-1]) == {"xgb@1": ["rsi_14"]}
