"""Tick-to-bar aggregation with MT5's bar conventions.

MT5 builds bars from bid prices: a bar exists only for a period that had at
least one tick, its time is the period's opening time, ``tick_volume`` counts
ticks and ``spread`` is the spread (in points) of the bar's first tick.
Weekly bars open on Sunday 00:00 and monthly bars on the 1st, server time.

Internally bars carry ``real_volume`` as a float ("work" bars) so that summing
fractional trade sizes (crypto) over a week gives the same total as summing
the ticks directly; it is rounded only when converted to MT5's layout.
"""

from __future__ import annotations

import numpy as np

from . import constants as c

# Bars in the "work" layout: MT5's rates layout with a float real_volume.
WORK_DTYPE = np.dtype(
    [(name, "<f8" if name == "real_volume" else c.RATES_DTYPE[name].str) for name in c.RATES_DTYPE.names or ()]
)

_SUNDAY_EPOCH = 3 * 86_400  # 1970-01-04 00:00 UTC, the first Sunday of Unix time
_WEEK = 7 * 86_400


def timeframe_seconds(timeframe: int) -> int:
    """Nominal length of a timeframe in seconds (W1 = 7 days, MN1 = 31 days)."""
    if timeframe not in c.TIMEFRAMES:
        raise ValueError(f"unknown timeframe {timeframe}")
    if timeframe == c.TIMEFRAME_W1:
        return _WEEK
    if timeframe == c.TIMEFRAME_MN1:
        return 31 * 86_400
    if timeframe & 0x4000:
        return (timeframe & 0x3FFF) * 3600
    return timeframe * 60


def bar_open_time(seconds: np.ndarray | int, timeframe: int) -> np.ndarray:
    """Opening time (Unix seconds) of the bar that contains each timestamp."""
    t = np.asarray(seconds, dtype=np.int64)
    if timeframe == c.TIMEFRAME_W1:
        return (t - _SUNDAY_EPOCH) // _WEEK * _WEEK + _SUNDAY_EPOCH
    if timeframe == c.TIMEFRAME_MN1:
        months = t.astype("datetime64[s]").astype("datetime64[M]")
        return months.astype("datetime64[s]").astype(np.int64)
    step = timeframe_seconds(timeframe)
    return t - t % step


def next_bar_time(open_time: int, timeframe: int) -> int:
    """Opening time of the bar following the one that opens at ``open_time``."""
    if timeframe == c.TIMEFRAME_MN1:
        month = np.datetime64(open_time, "s").astype("datetime64[M]") + 1
        return int(month.astype("datetime64[s]").astype(np.int64))
    return open_time + timeframe_seconds(timeframe)


def _group_starts(keys: np.ndarray) -> np.ndarray:
    """Indices where a run of equal (sorted) keys begins."""
    if keys.size == 0:
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))


def ticks_to_bars(ticks: np.ndarray, timeframe: int, point: float) -> np.ndarray:
    """Aggregate time-sorted ticks (MT5 tick layout) into work bars."""
    keys = bar_open_time(ticks["time"], timeframe)
    starts = _group_starts(keys)
    out = np.empty(starts.size, dtype=WORK_DTYPE)
    if starts.size == 0:
        return out
    bid = ticks["bid"]
    ends = np.append(starts[1:], bid.size)
    out["time"] = keys[starts]
    out["open"] = bid[starts]
    out["high"] = np.maximum.reduceat(bid, starts)
    out["low"] = np.minimum.reduceat(bid, starts)
    out["close"] = bid[ends - 1]
    out["tick_volume"] = ends - starts
    spread = (ticks["ask"][starts] - bid[starts]) / point
    out["spread"] = np.rint(spread).astype(np.int32)
    out["real_volume"] = np.add.reduceat(ticks["volume_real"], starts)
    return out


def aggregate(bars: np.ndarray, timeframe: int) -> np.ndarray:
    """Merge time-sorted work bars of a lower timeframe into ``timeframe`` bars."""
    keys = bar_open_time(bars["time"], timeframe)
    starts = _group_starts(keys)
    out = np.empty(starts.size, dtype=WORK_DTYPE)
    if starts.size == 0:
        return out
    ends = np.append(starts[1:], bars.size)
    out["time"] = keys[starts]
    out["open"] = bars["open"][starts]
    out["high"] = np.maximum.reduceat(bars["high"], starts)
    out["low"] = np.minimum.reduceat(bars["low"], starts)
    out["close"] = bars["close"][ends - 1]
    out["tick_volume"] = np.add.reduceat(bars["tick_volume"], starts)
    out["spread"] = bars["spread"][starts]
    out["real_volume"] = np.add.reduceat(bars["real_volume"], starts)
    return out


def to_rates(bars: np.ndarray) -> np.ndarray:
    """Convert work bars to exactly the array MT5's copy_rates_* returns."""
    out = np.empty(bars.size, dtype=c.RATES_DTYPE)
    for name in c.RATES_DTYPE.names or ():
        if name != "real_volume":
            out[name] = bars[name]
    out["real_volume"] = np.rint(bars["real_volume"]).astype(np.uint64)
    return out
