"""Deterministic tick generator: every tick is a pure function of (seed, symbol, time).

The price is built hierarchically so that any day can be produced on its own,
in any order, any number of times, with identical results:

1. **Daily anchors.**  ``x[k]`` is the log-price deviation from the symbol's
   reference level at 00:00 UTC of day ``k`` (day 0 = 2020-01-01, the start of
   the simulated history).  It follows a mean-reverting random walk whose
   daily shock is drawn from RNG blocks seeded by (seed, symbol, block) and
   scaled by a hidden 3-state volatility regime (calm / normal / stormy).
   Part of each FX/metal shock comes from a common "US dollar" factor, so
   EURUSD and GBPUSD move together as they do in reality.  Anchors are
   computed sequentially once and cached.

2. **Intraday path.**  A day's ticks come from an RNG seeded by
   (seed, symbol, day).  Tick arrival is a Poisson process whose intensity
   follows the trading sessions, an hourly hidden "quiet/active" regime and
   minute-level activity bursts.  The mid price between ``x[k]`` and
   ``x[k+1]`` is a Brownian bridge in *business time* (cumulative variance),
   so volatility is high when activity is high, and the day still ends
   exactly on the next anchor.  Closed hours carry a little variance but no
   ticks, which is what makes the Sunday-22:00 open gap away from Friday's
   close.

3. **Quotes.**  The spread (in integer points) depends on the hour (tight in
   London/NY, wide at the 21:00-22:00 UTC rollover and in thin hours), the
   regimes and activity.  Bid/ask are integer points around the mid, so
   ``ask > bid`` always and prices have exactly the symbol's digits.

Seeds go through BLAKE2b, never Python's ``hash()``, which is salted per
process.
"""

from __future__ import annotations

import hashlib
import math
import threading
from functools import lru_cache

import numpy as np

from . import constants as c
from .symbols import SymbolSpec, hourly_tables

EPOCH = 1_577_836_800  # 2020-01-01 00:00:00 UTC: first day of simulated history
EPOCH_WEEKDAY = 2  # that day was a Wednesday (Monday = 0)
DAY_SECONDS = 86_400
MINUTES_PER_DAY = 1_440
_BLOCK_DAYS = 512  # daily shocks are drawn in blocks of this many days

# Daily regimes: calm / normal / stormy.  Rows are "from", columns "to"; the
# persistence (~14, ~12 and ~8 days) gives the multi-week vol clustering seen
# in FX.  Vol multipliers are rescaled below so the long-run variance equals
# the symbol's nominal volatility.
_REGIME_TRANSITIONS = np.array(
    [
        [0.93, 0.07, 0.00],
        [0.04, 0.92, 0.04],
        [0.00, 0.12, 0.88],
    ]
)
_RAW_REGIME_VOL = np.array([0.65, 1.0, 1.75])
_REGIME_TICKS = np.array([0.85, 1.0, 1.3])  # stormy days are busier...
_REGIME_SPREAD = np.array([0.9, 1.0, 1.3])  # ...and dealers quote wider
_REGIME_START_ACTIVE = np.array([0.15, 0.3, 0.55])  # P(first hour "active")

# Intraday hourly regime (quiet -> active and active -> active probabilities).
_P_QUIET_TO_ACTIVE = 0.08
_P_ACTIVE_STAYS = 0.7
_ACTIVE_VARIANCE, _ACTIVE_TICKS, _ACTIVE_SPREAD = 2.0, 1.5, 1.25

_TRADES_AT_STANDING_QUOTE = 0.6

# Mean reversion of the daily path towards the reference price: a half-life of
# about a year keeps decades of history in a realistic band around it.
_THETA = 1.0 - 2.0 ** (-1.0 / 250.0)

# Minute activity: log-normal bursts smoothed over ~10 minutes.
_BURST_SIGMA = 0.5
_BURST_KERNEL = 0.9 ** np.arange(60)
_BURST_KERNEL /= np.sqrt(np.sum(_BURST_KERNEL**2))  # unit-variance smoothing


def _stationary(p: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eig(p.T)
    v = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
    return v / v.sum()


_REGIME_VOL = _RAW_REGIME_VOL / math.sqrt(float(np.dot(_stationary(_REGIME_TRANSITIONS), _RAW_REGIME_VOL**2)))
_REGIME_CUM = np.cumsum(_REGIME_TRANSITIONS, axis=1)


def stable_seed(*parts: object) -> int:
    """A 128-bit seed derived from ``parts``, identical across processes and runs."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "little")


def make_rng(*parts: object) -> np.random.Generator:
    """A PCG64 generator for the stream named by ``parts``."""
    return np.random.Generator(np.random.PCG64(stable_seed(*parts)))


def day_index(seconds: float) -> int:
    """Day number (0 = 2020-01-01 UTC) of a Unix timestamp."""
    return int((int(seconds) - EPOCH) // DAY_SECONDS)


def day_start(day: int) -> int:
    """Unix seconds of 00:00 UTC of day ``day``."""
    return EPOCH + day * DAY_SECONDS


def weekday(day: int) -> int:
    """Weekday (Monday = 0) of day ``day``."""
    return (EPOCH_WEEKDAY + day) % 7


@lru_cache(maxsize=64)
def _usd_factor(seed: int, block: int) -> np.ndarray:
    """Common daily US-dollar shocks for one block of days (shared by symbols)."""
    return make_rng(seed, "__usd_factor__", block).standard_normal(_BLOCK_DAYS)


class _DailyPath:
    """Cached daily anchors and regimes of one symbol, extended block by block."""

    def __init__(self, spec: SymbolSpec, seed: int, day_variance: np.ndarray) -> None:
        self._spec = spec
        self._seed = seed
        self._day_variance = day_variance  # per weekday, in units of sigma^2
        # (x, regime): x[k] is the log deviation at the start of day k and
        # regime[k] day k's regime.  Replaced as one tuple so that readers on
        # other threads never see arrays of different lengths.
        self._state = (np.zeros(1), np.ones(1, dtype=np.int8))
        self._lock = threading.Lock()

    def day(self, k: int) -> tuple[float, float, int, float]:
        """(x at day start, x at day end, regime, variance) of day ``k``."""
        x, regimes = self._state
        if x.size <= k + 1:
            with self._lock:
                while self._state[0].size <= k + 1:
                    self._extend()
            x, regimes = self._state
        regime = int(regimes[k])
        return float(x[k]), float(x[k + 1]), regime, self._variance(k, regime)

    def _variance(self, k: int, regime: int) -> float:
        sigma = self._spec.daily_sigma * _REGIME_VOL[regime]
        return sigma * sigma * float(self._day_variance[weekday(k)])

    def _extend(self) -> None:
        # The cache holds x[0..n-1] (n-1 complete days), always a multiple of
        # the block length plus one, so block b covers days b*B .. b*B+B-1.
        old_x, old_regimes = self._state
        first = old_x.size - 1
        block = first // _BLOCK_DAYS
        rng = make_rng(self._seed, self._spec.name, "daily", block)
        own = rng.standard_normal(_BLOCK_DAYS)
        u = rng.random(_BLOCK_DAYS)
        a = self._spec.usd_loading
        shocks = a * _usd_factor(self._seed, block) + math.sqrt(1.0 - a * a) * own

        x = np.empty(_BLOCK_DAYS + 1)
        regimes = np.empty(_BLOCK_DAYS + 1, dtype=np.int8)
        x[0], regimes[0] = old_x[-1], old_regimes[-1]
        for i in range(_BLOCK_DAYS):
            k = first + i
            sd = math.sqrt(self._variance(k, int(regimes[i])))
            x[i + 1] = (1.0 - _THETA) * x[i] + sd * shocks[i]
            regimes[i + 1] = np.searchsorted(_REGIME_CUM[regimes[i]], u[i], side="right")
        self._state = (
            np.concatenate((old_x, x[1:])),
            np.concatenate((old_regimes, regimes[1:])),
        )


class MarketModel:
    """Generator of one symbol's ticks, day by day.

    ``day_ticks(day)`` returns the full UTC day ``day`` (0 = 2020-01-01) in
    MT5's tick layout; it is deterministic and costs a few milliseconds.
    """

    def __init__(self, spec: SymbolSpec, seed: int) -> None:
        self.spec = spec
        self.seed = int(seed)
        self.first_day = 0  # history starts at EPOCH...
        self.last_day: int | None = None  # ...and never ends
        _, weights, ticks = hourly_tables(spec)
        self._hour_variance = weights  # [weekday, hour], share of daily sigma^2
        self._daily = _DailyPath(spec, self.seed, weights.sum(axis=1))
        self._minute_ticks = self._minute_intensity(ticks)
        self._spread_profile = np.asarray(spec.spread_profile, float)
        self._log_ref = math.log(spec.ref_price)

    @staticmethod
    def _minute_intensity(hourly: np.ndarray) -> np.ndarray:
        """Expected ticks per minute [weekday, minute]: hourly rates smoothed
        linearly between hour midpoints, zero whenever the market is closed."""
        centers = np.arange(-1, 25) + 0.5
        minutes = (np.arange(MINUTES_PER_DAY) + 0.5) / 60.0
        rows = []
        for row in hourly:
            wrapped = np.concatenate(([row[-1]], row, [row[0]]))
            smooth = np.interp(minutes, centers, wrapped) / 60.0
            rows.append(np.where(np.repeat(row > 0, 60), smooth, 0.0))
        return np.array(rows)

    def day_ticks(self, day: int) -> np.ndarray:
        """All ticks of UTC day ``day``, time-sorted, in MT5's tick dtype."""
        if day < self.first_day:
            return np.empty(0, dtype=c.TICKS_DTYPE)
        spec = self.spec
        wd = weekday(day)
        x0, x1, regime, day_var = self._daily.day(day)
        rng = make_rng(self.seed, spec.name, "intraday", day)

        active = self._hourly_regime(rng, regime)
        burst = self._bursts(rng)
        hour_of_minute = np.repeat(np.arange(24), 60)
        active_m = active[hour_of_minute]

        # Business time: how the day's variance is spread over its minutes.
        var_m = self._hour_variance[wd][hour_of_minute] * burst
        var_m = np.where(active_m, var_m * _ACTIVE_VARIANCE, var_m)
        var_m *= day_var / var_m.sum()
        var_before = np.concatenate(([0.0], np.cumsum(var_m)[:-1]))

        # Tick arrivals: Poisson counts per minute, uniform within the minute.
        lam = self._minute_ticks[wd] * _REGIME_TICKS[regime] * burst**0.8
        lam = np.where(active_m, lam * _ACTIVE_TICKS, lam)
        counts = rng.poisson(lam)
        n = int(counts.sum())
        if n == 0:
            return np.empty(0, dtype=c.TICKS_DTYPE)
        ms = np.repeat(np.arange(MINUTES_PER_DAY) * 60_000, counts)
        ms += rng.integers(0, 60_000, n)
        ms.sort(kind="stable")  # timsort: the array is already sorted by minute
        minute = ms // 60_000

        # Mid price: Brownian bridge from x0 to x1 in business time.
        tau = var_before[minute] + var_m[minute] * ((ms % 60_000) / 60_000.0)
        steps = np.sqrt(np.diff(tau, prepend=0.0)) * rng.standard_normal(n)
        walk = np.cumsum(steps)
        walk_end = walk[-1] + math.sqrt(max(day_var - tau[-1], 0.0)) * rng.standard_normal()
        log_mid = self._log_ref + x0 + walk - (tau / day_var) * (walk_end - (x1 - x0))
        mid_points = np.exp(log_mid) / spec.point

        # Spread in integer points; thin activity and active regimes widen it.
        hour = minute // 60
        spread = (
            spec.spread_points
            * self._spread_profile[hour]
            * _REGIME_SPREAD[regime]
            * np.where(active[hour], _ACTIVE_SPREAD, 1.0)
            * burst[minute] ** -0.3
            * np.exp(0.2 * rng.standard_normal(n) - 0.02)
        )
        spread = np.maximum(np.rint(spread), spec.min_spread_points).astype(np.int64)
        bid_pts = np.rint(mid_points - spread / 2.0).astype(np.int64)
        ask_pts = bid_pts + spread

        is_trade = None
        if spec.trade_fraction:
            is_trade = rng.random(n) < spec.trade_fraction
            # Most trades execute against the standing quote without moving it:
            # such a tick repeats the previous bid/ask and carries only the trade.
            hold = is_trade & (rng.random(n) < _TRADES_AT_STANDING_QUOTE)
            hold[0] = False
            source = np.maximum.accumulate(np.where(hold, 0, np.arange(n)))
            bid_pts, ask_pts = bid_pts[source], ask_pts[source]
        return self._assemble(day, ms, bid_pts, ask_pts, is_trade, rng, x0)

    def _hourly_regime(self, rng: np.random.Generator, regime: int) -> np.ndarray:
        """Hidden quiet/active state of each hour (a 2-state Markov chain)."""
        u = rng.random(24)
        active = np.empty(24, dtype=bool)
        state = u[0] < _REGIME_START_ACTIVE[regime]
        for h in range(24):
            if h:
                state = u[h] < (_P_ACTIVE_STAYS if state else _P_QUIET_TO_ACTIVE)
            active[h] = state
        return active

    @staticmethod
    def _bursts(rng: np.random.Generator) -> np.ndarray:
        """Per-minute activity multiplier with mean 1 and ~10-minute memory."""
        noise = rng.standard_normal(MINUTES_PER_DAY + _BURST_KERNEL.size - 1)
        smooth = np.convolve(noise, _BURST_KERNEL, mode="valid")
        return np.exp(_BURST_SIGMA * smooth - 0.5 * _BURST_SIGMA**2)

    def _assemble(
        self,
        day: int,
        ms: np.ndarray,
        bid_pts: np.ndarray,
        ask_pts: np.ndarray,
        is_trade: np.ndarray | None,
        rng: np.random.Generator,
        x0: float,
    ) -> np.ndarray:
        """Drop repeated quotes, set flags and trade fields, build the array."""
        spec = self.spec
        bid_changed = np.concatenate(([True], bid_pts[1:] != bid_pts[:-1]))
        ask_changed = np.concatenate(([True], ask_pts[1:] != ask_pts[:-1]))
        # A quote feed only sends a tick when something changed; a repeated
        # bid/ask that is not a trade is not a tick.  Dropping a repeat never
        # changes the "changed" status of the next tick (it repeats its
        # predecessor), so the flags computed above stay correct.
        keep = bid_changed | ask_changed
        if is_trade is not None:
            keep |= is_trade
        n = int(keep.sum())
        out = np.zeros(n, dtype=c.TICKS_DTYPE)
        time_msc = day_start(day) * 1000 + ms[keep]
        out["time_msc"] = time_msc
        out["time"] = time_msc // 1000
        out["bid"] = np.round(bid_pts[keep] * spec.point, spec.digits)
        out["ask"] = np.round(ask_pts[keep] * spec.point, spec.digits)
        flags = np.where(bid_changed[keep], c.TICK_FLAG_BID, 0)
        flags |= np.where(ask_changed[keep], c.TICK_FLAG_ASK, 0)
        if is_trade is not None:
            trade = is_trade[keep]
            buy = rng.random(n) < 0.5
            price = np.where(buy, out["ask"], out["bid"])
            # Exchange-style feeds repeat the last trade price on quote ticks;
            # before the day's first trade that is the price at the day open.
            opening = round(math.exp(self._log_ref + x0), spec.digits)
            idx = np.maximum.accumulate(np.where(trade, np.arange(n), -1))
            out["last"] = np.where(idx >= 0, price[np.maximum(idx, 0)], opening)
            size = np.exp(math.log(0.05) + 1.2 * rng.standard_normal(n))
            size = np.maximum(np.round(size / spec.volume_step) * spec.volume_step, spec.volume_step)
            size = np.round(size, 8)
            out["volume_real"] = np.where(trade, size, 0.0)
            out["volume"] = np.rint(out["volume_real"]).astype(np.uint64)
            side = np.where(buy, c.TICK_FLAG_BUY, c.TICK_FLAG_SELL)
            flags |= np.where(trade, c.TICK_FLAG_LAST | c.TICK_FLAG_VOLUME | side, 0)
        out["flags"] = flags
        return out
