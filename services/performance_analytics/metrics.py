"""Risk/return statistics of an equity curve and of closed trades: pure functions, numpy.

Every formula is written out in docs/performance.md; the tests check them against
hand-computed cases and against empyrical where it defines the same statistic
(``sharpe_ratio``, ``sortino_ratio``, ``max_drawdown``). Statistics that are undefined on
their input (fewer than two returns, no dispersion, no losing trade) are ``None``, never a
made-up 0 or infinity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SECONDS_PER_YEAR = 365.25 * 86_400


def periods_per_year(period_s: float) -> float:
    """The annualisation factor of returns taken every ``period_s`` seconds of calendar time
    (the curve is sampled around the clock, weekends included): 365.25 days / the period."""
    if period_s <= 0:
        raise ValueError("period_s must be positive")
    return SECONDS_PER_YEAR / period_s


def resample_last(ts_ns: IntArray, values: FloatArray, period_ns: int) -> tuple[IntArray, FloatArray]:
    """The last value of each period ``[k*period, (k+1)*period)`` that has one, with the period's start.

    ``ts_ns`` must be ascending. Periods without a sample are left out (not filled), so a
    return always spans from one sampled period to the next.
    """
    if len(ts_ns) == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    buckets = ts_ns // period_ns
    last_of_bucket = np.flatnonzero(np.append(buckets[1:] != buckets[:-1], True))
    return buckets[last_of_bucket] * period_ns, values[last_of_bucket]


def simple_returns(equity: FloatArray) -> FloatArray:
    """``r_i = E_i / E_{i-1} - 1`` for i = 1..n-1 (one fewer than the points)."""
    if len(equity) < 2:
        return np.empty(0, np.float64)
    result: FloatArray = equity[1:] / equity[:-1] - 1.0
    return result


def sharpe_ratio(returns: FloatArray, annualisation: float) -> float | None:
    """``mean(r) / std(r, ddof=1) * sqrt(annualisation)``, risk-free rate 0."""
    if len(returns) < 2:
        return None
    std = float(np.std(returns, ddof=1))
    if std == 0.0 or not math.isfinite(std):
        return None
    return float(np.mean(returns)) / std * math.sqrt(annualisation)


def sortino_ratio(returns: FloatArray, annualisation: float) -> float | None:
    """``mean(r) * A / (sqrt(mean(min(r, 0)^2)) * sqrt(A))``: target return 0, downside deviation
    over *every* period (a period without a loss counts as 0 downside), as empyrical defines it."""
    if len(returns) < 2:
        return None
    downside = math.sqrt(float(np.mean(np.square(np.minimum(returns, 0.0))))) * math.sqrt(annualisation)
    if downside == 0.0:
        return None
    return float(np.mean(returns)) * annualisation / downside


@dataclass(frozen=True, slots=True)
class Drawdown:
    """The deepest fall of an equity curve from a running peak, and the longest time under water."""

    #: ``min(E_t / max_{s<=t} E_s - 1)``: 0 or negative (-0.25 = a quarter of the peak lost).
    max_fraction: float
    #: The same fall in money: ``min(E_t - max_{s<=t} E_s)``, 0 or negative.
    max_amount: float
    #: When the peak of the deepest drawdown was set, and when its trough was reached (ns).
    peak_ns: int | None
    trough_ns: int | None
    #: Longest time from a peak until the curve first got back to it (or to the last point, if
    #: it has not yet), ns.
    longest_ns: int
    #: The curve is below its peak at its last point.
    underwater: bool


def drawdown(ts_ns: IntArray, equity: FloatArray) -> Drawdown:
    """Drawdown statistics of ``equity`` sampled at ascending ``ts_ns``."""
    if len(equity) == 0:
        return Drawdown(0.0, 0.0, None, None, 0, False)
    peaks = np.maximum.accumulate(equity)
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(peaks > 0, equity / peaks - 1.0, 0.0)
    amount = equity - peaks
    trough = int(np.argmin(fraction))
    peak = int(np.argmax(equity[: trough + 1])) if fraction[trough] < 0 else None
    # Under water where below the running peak; each episode starts at the peak's sample.
    longest = 0
    start: int | None = None
    for i in range(len(equity)):
        if equity[i] < peaks[i]:
            if start is None:
                start = i - 1
        elif start is not None:
            longest = max(longest, int(ts_ns[i] - ts_ns[start]))
            start = None
    underwater = start is not None
    if start is not None:
        longest = max(longest, int(ts_ns[-1] - ts_ns[start]))
    return Drawdown(
        max_fraction=float(fraction[trough]),
        max_amount=float(np.min(amount)),
        peak_ns=int(ts_ns[peak]) if peak is not None else None,
        trough_ns=int(ts_ns[trough]) if peak is not None else None,
        longest_ns=longest,
        underwater=underwater,
    )


@dataclass(frozen=True, slots=True)
class TradeStats:
    """Statistics of closed trades' net results (a trade = a round trip, flat to flat)."""

    trades: int
    wins: int
    losses: int
    #: wins / trades (a trade of exactly 0 is neither a win nor a loss but counts as a trade).
    win_rate: float | None
    #: sum of wins / |sum of losses|; None without a losing trade.
    profit_factor: float | None
    average_win: float | None
    average_loss: float | None
    gross_profit: float
    gross_loss: float


def trade_stats(results: Sequence[float]) -> TradeStats:
    """Win rate, profit factor and averages of closed trades' net results (money)."""
    pnl = np.asarray(results, dtype=np.float64)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    gross_profit, gross_loss = float(wins.sum()), float(losses.sum())
    return TradeStats(
        trades=len(pnl),
        wins=len(wins),
        losses=len(losses),
        win_rate=len(wins) / len(pnl) if len(pnl) else None,
        profit_factor=gross_profit / -gross_loss if len(losses) else None,
        average_win=gross_profit / len(wins) if len(wins) else None,
        average_loss=gross_loss / len(losses) if len(losses) else None,
        gross_profit=gross_profit,
        gross_loss=gross_loss,
    )


@dataclass(frozen=True, slots=True)
class RiskReturn:
    """What one equity curve says: returns-based ratios and drawdown."""

    period_s: float
    annualisation: float
    returns: int
    sharpe: float | None
    sortino: float | None
    drawdown: Drawdown


def risk_return(ts_ns: IntArray, equity: FloatArray, period_s: float) -> RiskReturn:
    """Sharpe and Sortino of the curve's returns per ``period_s`` (last value of each period),
    and the drawdown of the curve at every sample."""
    annualisation = periods_per_year(period_s)
    _, sampled = resample_last(ts_ns, equity, int(period_s * 1_000_000_000))
    returns = simple_returns(sampled)
    return RiskReturn(
        period_s=period_s,
        annualisation=annualisation,
        returns=len(returns),
        sharpe=sharpe_ratio(returns, annualisation),
        sortino=sortino_ratio(returns, annualisation),
        drawdown=drawdown(ts_ns, equity),
    )
