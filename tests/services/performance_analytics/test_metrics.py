"""The statistics of services.performance_analytics.metrics: hand-computed cases (the arithmetic is
written out) and agreement with empyrical where it defines the same statistic."""

from __future__ import annotations

import math

import empyrical
import numpy as np
import pytest

from services.performance_analytics.metrics import (
    drawdown,
    periods_per_year,
    resample_last,
    risk_return,
    sharpe_ratio,
    simple_returns,
    sortino_ratio,
    trade_stats,
)

MIN_NS = 60_000_000_000
RETURNS = np.array([0.01, -0.02, 0.03, 0.00])


def test_sharpe_by_hand():
    # mean = (0.01 - 0.02 + 0.03 + 0) / 4 = 0.005
    # deviations 0.005, -0.025, 0.025, -0.005 -> squares sum 0.000025 + 0.000625 + 0.000625 + 0.000025 = 0.0013
    # sample std = sqrt(0.0013 / 3); annualised over 252 periods
    expected = 0.005 / math.sqrt(0.0013 / 3) * math.sqrt(252)
    assert sharpe_ratio(RETURNS, 252) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(3.8129, abs=1e-4)


def test_sortino_by_hand():
    # downside: min(r, 0) = 0, -0.02, 0, 0 -> mean of squares = 0.0004 / 4 = 0.0001 -> sqrt = 0.01
    # sortino = mean * A / (0.01 * sqrt(A)) = 0.005 / 0.01 * sqrt(A) = 0.5 * sqrt(A)
    assert sortino_ratio(RETURNS, 252) == pytest.approx(0.5 * math.sqrt(252), rel=1e-12)


def test_undefined_statistics_are_none():
    assert sharpe_ratio(np.array([0.01]), 252) is None  # one return: no sample deviation
    assert sharpe_ratio(np.array([0.01, 0.01, 0.01]), 252) is None  # no dispersion
    assert sortino_ratio(np.array([0.01, 0.02]), 252) is None  # no losing period
    assert trade_stats([10.0, 5.0]).profit_factor is None  # no losing trade
    assert trade_stats([]).win_rate is None


def test_drawdown_by_hand():
    ts = np.arange(6, dtype=np.int64) * MIN_NS
    equity = np.array([100.0, 110.0, 99.0, 105.0, 121.0, 120.0])
    d = drawdown(ts, equity)
    # running peaks 100, 110, 110, 110, 121, 121: deepest 99 / 110 - 1 = -0.1 (11 lost), peak t1, trough t2
    assert d.max_fraction == pytest.approx(-0.1)
    assert d.max_amount == pytest.approx(-11.0)
    assert (d.peak_ns, d.trough_ns) == (1 * MIN_NS, 2 * MIN_NS)
    # under water from the peak at t1 until 121 >= 110 at t4 (3 min); again from t4, still at t5 (1 min)
    assert d.longest_ns == 3 * MIN_NS
    assert d.underwater is True


def test_drawdown_of_a_rising_curve_is_zero():
    d = drawdown(np.arange(3, dtype=np.int64), np.array([1.0, 2.0, 3.0]))
    assert (d.max_fraction, d.max_amount, d.longest_ns, d.underwater, d.peak_ns) == (0.0, 0.0, 0, False, None)


def test_trade_stats_by_hand():
    s = trade_stats([50.0, -20.0, 30.0, -10.0, 0.0])
    # 5 trades, wins 50 + 30 = 80 (2), losses -20 - 10 = -30 (2), one flat trade
    assert (s.trades, s.wins, s.losses) == (5, 2, 2)
    assert s.win_rate == pytest.approx(2 / 5)
    assert s.profit_factor == pytest.approx(80 / 30)
    assert (s.average_win, s.average_loss) == (pytest.approx(40.0), pytest.approx(-15.0))


def test_resample_keeps_the_last_value_of_each_period():
    s = 1_000_000_000
    ts = np.array([0, 30 * s, 59 * s, 60 * s, 150 * s], dtype=np.int64)
    starts, values = resample_last(ts, np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 60 * s)
    # periods [0, 60): last is 3.0 at 59 s; [60, 120): 4.0; [120, 180): 5.0
    assert starts.tolist() == [0, 60 * s, 120 * s]
    assert values.tolist() == [3.0, 4.0, 5.0]


def test_simple_returns_and_annualisation():
    assert simple_returns(np.array([100.0, 110.0, 99.0])).tolist() == pytest.approx([0.1, -0.1])
    assert periods_per_year(3600) == pytest.approx(365.25 * 24)
    assert periods_per_year(86_400) == pytest.approx(365.25)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_agrees_with_empyrical(seed):
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0004, 0.01, 500)
    annualisation = periods_per_year(3600)
    assert sharpe_ratio(returns, annualisation) == pytest.approx(
        empyrical.sharpe_ratio(returns, annualization=annualisation), rel=1e-9
    )
    assert sortino_ratio(returns, annualisation) == pytest.approx(
        empyrical.sortino_ratio(returns, annualization=annualisation), rel=1e-9
    )
    equity = 100_000 * np.cumprod(np.concatenate([[1.0], 1.0 + returns]))
    ts = np.arange(len(equity), dtype=np.int64) * MIN_NS
    assert drawdown(ts, equity).max_fraction == pytest.approx(empyrical.max_drawdown(returns), rel=1e-9)


def test_risk_return_samples_the_curve_per_period():
    # one point per 30 minutes for 5 hours; hourly returns use the last point of each hour
    ts = np.arange(10, dtype=np.int64) * 30 * MIN_NS
    equity = np.array([100.0, 101.0, 102.0, 100.0, 104.0, 103.0, 101.0, 105.0, 106.0, 107.0])
    r = risk_return(ts, equity, 3600)
    hourly = np.array([101.0, 100.0, 103.0, 105.0, 107.0])  # the second point of each hour
    returns = hourly[1:] / hourly[:-1] - 1
    assert r.returns == 4
    assert r.sharpe == pytest.approx(empyrical.sharpe_ratio(returns, annualization=365.25 * 24), rel=1e-9)
    # the 30-minute curve: 102 -> 100 is -1.96 %, 104 -> 101 is deeper
    assert r.drawdown.max_fraction == pytest.approx(101.0 / 104.0 - 1)
