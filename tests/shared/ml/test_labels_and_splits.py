"""Labels see only their own interval, features and predictions only the past; walk-forward folds never train on a
label that overlaps the test window, nor on one starting within the embargo after it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.ml.dataset import BarSeries, build_features
from shared.ml.kinds import kind_of, window_of
from shared.ml.labels import Labelling, forward_returns, make_labels, rolling_volatility
from shared.ml.sequence import windows
from shared.ml.validation import walk_forward
from tests.shared.ml.stand_in import StandInFeatureSet, random_walk

LABELLINGS = [
    Labelling(),
    Labelling(dead_zone=0.0003),
    Labelling(method="triple_barrier", upper=1.0, lower=1.5, vol_window=10),
]


def test_forward_return_and_direction_with_a_dead_zone():
    close = np.array([100.0, 101.0, 100.0, 100.01, 103.0])
    value, end, valid = forward_returns(close, 2)
    assert np.allclose(value[:3], np.log([100 / 100, 100.01 / 101, 103 / 100]))
    assert list(end) == [2, 3, 4, 4, 4] and list(valid) == [True, True, True, False, False]
    labels = make_labels(close, 2, Labelling(dead_zone=0.001))
    assert list(labels.valid) == [False, True, True, False, False]  # bar 0: |r| = 0 is in the dead zone
    assert labels.direction[1] == 0.0 and labels.direction[2] == 1.0


def test_triple_barrier_takes_the_first_barrier_touched():
    # Volatility of the 1-bar log returns over 3 bars is ~0.01 at bar 3; barriers at +-2 vol.
    close = np.array([100.0, 101.0, 100.0, 101.0, 101.5, 103.5, 90.0, 90.0])
    labels = make_labels(close, 4, Labelling(method="triple_barrier", upper=2.0, lower=2.0, vol_window=3))
    vol = rolling_volatility(close, 3)[3]
    assert np.log(103.5 / 101) >= 2 * vol > np.log(101.5 / 101)
    assert labels.valid[3] and labels.direction[3] == 1.0 and labels.end[3] == 5  # upper at bar 5, not the crash
    assert not labels.valid[:3].any()  # volatility not warm yet


def test_changing_a_future_bar_changes_no_past_feature_or_label():
    series = random_walk(300, seed=3)
    k = 200
    changed_close = series.close.copy()
    changed_close[k] *= 1.01
    changed = BarSeries(
        series.symbol,
        series.timeframe,
        series.ts,
        series.open,
        np.maximum(series.high, changed_close),
        np.minimum(series.low, changed_close),
        changed_close,
        series.volume,
    )
    fs = StandInFeatureSet()
    before, after = build_features(series, fs), build_features(changed, fs)
    assert np.array_equal(before.values[:k], after.values[:k], equal_nan=True)
    assert not np.array_equal(before.values[k], after.values[k], equal_nan=True)
    for labelling in LABELLINGS:
        a, b = make_labels(series.close, 10, labelling), make_labels(changed_close, 10, labelling)
        differs = ~np.isclose(a.value, b.value, equal_nan=True) | (a.valid != b.valid)
        # Only labels whose interval [t, t1] reaches bar k may change.
        assert not differs[a.end < k].any(), labelling
        assert differs.any(), labelling


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("xgboost", {"n_estimators": 20}),
        ("lightgbm", {"n_estimators": 20}),
        ("lstm", {"window": 6, "hidden": 8, "epochs": 2, "batch_size": 64}),
    ],
)
def test_changing_a_future_bar_changes_no_past_prediction(kind, params):
    """A trained model's prediction at bar t reads the features up to t only (a row; a sequence
    model the window ending at t): changing bar k changes no prediction before k."""
    series = random_walk(300, seed=5)
    k = 220
    changed_close = series.close.copy()
    changed_close[k:] *= 1.02
    changed = BarSeries(
        series.symbol, series.timeframe, series.ts, series.open,
        np.maximum(series.high, changed_close), np.minimum(series.low, changed_close), changed_close, series.volume,
    )  # fmt: skip
    fs = StandInFeatureSet()
    before, after = build_features(series, fs).values, build_features(changed, fs).values
    model_kind = kind_of(kind)
    full = model_kind.hyperparameters(params)
    window = window_of(model_kind, full)
    labels = make_labels(series.close, 5, Labelling())

    def inputs(values):
        x, complete = (values, ~np.isnan(values).any(axis=1)) if window is None else windows(values, window)
        return x, complete

    x, complete = inputs(before)
    train = complete & labels.valid
    model = model_kind.fit("direction", x[train], labels.direction[train], full, seed=1, threads=1)
    x_after, complete_after = inputs(after)
    rows = np.flatnonzero(complete & complete_after)
    past, future = rows[rows < k], rows[rows >= k]
    assert past.size > 100 and future.size > 10
    assert np.array_equal(model.predict(x[past]), model.predict(x_after[past]))
    assert not np.array_equal(model.predict(x[future]), model.predict(x_after[future]))  # the change is seen


@st.composite
def samples(draw):
    n = draw(st.integers(10, 120))
    gaps = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    start = np.cumsum(np.array(gaps, dtype=np.int64))
    spans = draw(st.lists(st.integers(0, 15), min_size=n, max_size=n))
    end = start + np.array(spans, dtype=np.int64)
    folds = draw(st.integers(1, min(6, n - 1)))
    embargo = draw(st.integers(0, 10))
    return start, end, folds, embargo


@settings(max_examples=300, deadline=None)
@given(samples(), st.booleans())
def test_no_training_label_overlaps_a_test_window_and_the_embargo_holds(case, past_only):
    start, end, folds, embargo = case
    out = walk_forward(start, end, folds, embargo, past_only=past_only)
    assert len(out) == folds
    previous_test_end = -1
    for fold in out:
        t0, t1 = fold.test_window
        assert t0 == start[fold.test].min() and t1 == end[fold.test].max()
        assert fold.test.min() > previous_test_end  # test windows move forward
        previous_test_end = fold.test.max()
        tr = fold.train
        assert not np.intersect1d(tr, fold.test).size
        assert not ((start[tr] <= t1) & (end[tr] >= t0)).any()  # purge
        assert not ((start[tr] > t1) & (start[tr] <= t1 + embargo)).any()  # embargo
        if past_only:
            assert (tr < fold.test.min()).all()
        # Nothing more is dropped than the rules demand.
        others = np.setdiff1d(np.arange(start.size), fold.test)
        if past_only:
            others = others[others < fold.test.min()]
        allowed = others[
            ~((start[others] <= t1) & (end[others] >= t0)) & ~((start[others] > t1) & (start[others] <= t1 + embargo))
        ]
        assert np.array_equal(np.sort(tr), allowed)
