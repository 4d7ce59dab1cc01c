"""The ``core-1`` feature set: order and names, agreement with the batch indicators (and so
with TA-Lib), JSON state round trips, no look-ahead, the time encodings."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime

import numpy as np
import talib

from shared.events import FeatureVector, Timeframe
from shared.features import Bar, FeatureSet
from shared.indicators import compute

M1 = 60 * 10**9
START = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp()) * 10**9  # a Monday, 00:00 UTC


def bars(n: int = 300, seed: int = 3) -> list[Bar]:
    rng = np.random.default_rng(seed)
    c = 1.1 + np.cumsum(rng.normal(0, 0.001, n))
    out = []
    for i in range(n):
        o = c[i - 1] if i else c[0]
        h = max(o, c[i]) + abs(rng.normal(0, 0.0005))
        low = min(o, c[i]) - abs(rng.normal(0, 0.0005))
        out.append(Bar(START + i * M1, float(o), float(h), float(low), float(c[i]), float(rng.integers(1, 500))))
    return out


def run(rows: list[Bar]) -> list[dict]:
    state = FeatureSet.core().new_state()
    return [state.update(bar) for bar in rows]


def test_names_are_ordered_unique_and_valid_feature_names() -> None:
    fs = FeatureSet.core()
    assert fs.name == "core-1"
    assert len(set(fs.names)) == len(fs.names)
    assert fs.names[0] == "close"
    for name in ("rsi_14", "sma_20", "ema_50", "macd_macdsignal", "bbands_upperband", "stoch_slowd", "obv"):
        assert name in fs.names
    assert fs.names[-8:] == ("logret_1", "logret_5", "logret_20", "rvol_20", "tod_sin", "tod_cos", "dow_sin", "dow_cos")
    values = run(bars(5))[-1]
    assert list(values) == list(fs.names)
    FeatureVector(  # the event accepts the names and values
        event_id=uuid.uuid4(), ts_event=START, ts_init=START, symbol="EURUSD", timeframe=Timeframe.M1,
        bar_event_id=uuid.uuid4(), feature_set=fs.name, features=values,
    )  # fmt: skip


def test_indicator_features_equal_the_batch_path_and_talib() -> None:
    rows = bars()
    got = run(rows)
    cols = [np.array([getattr(b, f) for b in rows], dtype=float) for f in ("open", "high", "low", "close", "volume")]
    fs = FeatureSet.core()
    for feature in fs.indicators:
        batch = compute(feature.indicator, feature.params, *cols)
        for name, column in zip(feature.names, batch.values(), strict=True):
            assert [row[name] for row in got] == column, name
    rsi = talib.RSI(cols[3], 14)
    assert got[13]["rsi_14"] is None and math.isnan(rsi[13])
    assert math.isclose(got[-1]["rsi_14"], rsi[-1], rel_tol=1e-12)
    assert all(v is not None for v in got[fs.warmup_bars - 1].values())
    assert any(v is None for v in got[fs.warmup_bars - 2].values())


def test_returns_and_realised_volatility() -> None:
    rows = bars(40)
    got = run(rows)
    c = [b.close for b in rows]
    assert got[0]["logret_1"] is None and got[4]["logret_5"] is None
    assert got[5]["logret_5"] == math.log(c[5] / c[0])
    assert got[20]["logret_20"] == math.log(c[20] / c[0])
    assert got[19]["rvol_20"] is None
    expected = math.sqrt(sum(math.log(c[i] / c[i - 1]) ** 2 for i in range(1, 21)))
    assert math.isclose(got[20]["rvol_20"], expected, rel_tol=1e-12)


def test_time_features_from_the_bar_open_in_utc() -> None:
    noon_wednesday = START + 2 * 86_400 * 10**9 + 12 * 3600 * 10**9
    got = FeatureSet.core().new_state().update(Bar(noon_wednesday, 1, 1, 1, 1, 0))
    values = {k: v for k, v in got.items() if v is not None}
    assert math.isclose(values["tod_sin"], 0.0, abs_tol=1e-12) and math.isclose(values["tod_cos"], -1.0)
    assert math.isclose(values["dow_sin"], math.sin(2 * math.pi * 2 / 7))
    assert math.isclose(values["dow_cos"], math.cos(2 * math.pi * 2 / 7))


def test_state_round_trip_mid_series_gives_the_same_features() -> None:
    rows = bars()
    whole = run(rows)
    fs = FeatureSet.core()
    for cut in (1, 30, 200):
        state = fs.new_state()
        before = [state.update(b) for b in rows[:cut]]
        restored = fs.restore(json.loads(json.dumps(state.state())))
        assert before + [restored.update(b) for b in rows[cut:]] == whole


def test_no_look_ahead() -> None:
    rows = bars(200)
    base = run(rows)
    for cut in (50, 150):
        changed = rows[:cut] + [
            b._replace(close=b.close * 1.01, high=b.high * 1.02, volume=b.volume + 7) for b in rows[cut:]
        ]
        assert run(changed)[:cut] == base[:cut]
