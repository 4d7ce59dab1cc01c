"""Feature update per closed bar: every ``core-1`` feature (all the indicators, returns,
volatility, time encodings) for one symbol, one bar at a time, in this process.

``python -m bench.features`` prints it alone; ``make bench`` prints it first.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time

import numpy as np

from shared.features import Bar, FeatureSet

BASE_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def synthetic_bars(n: int, seed: int = 1) -> list[Bar]:
    rng = np.random.default_rng(seed)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 0.0004, n)))
    bars = []
    for i in range(n):
        o = float(close[i - 1] if i else close[0])
        c = float(close[i])
        h = max(o, c) + abs(float(rng.normal(0, 0.0002)))
        low = min(o, c) - abs(float(rng.normal(0, 0.0002)))
        bars.append(Bar(BASE_NS + i * 60_000_000_000, o, h, low, c, float(rng.integers(1, 500))))
    return bars


def feature_update_us(bars: int = 5000, warmup: int = 200, clock=time.perf_counter_ns) -> list[float]:
    """Microseconds of ``FeatureSetState.update`` per bar on ``clock`` (wall by default; the
    thread's CPU time is immune to other processes' load), after ``warmup`` bars (every feature warm)."""
    rows = synthetic_bars(bars + warmup)
    state = FeatureSet.core().new_state()
    for bar in rows[:warmup]:
        state.update(bar)
    timings = []
    for bar in rows[warmup:]:
        started = clock()
        state.update(bar)
        timings.append((clock() - started) / 1000)
    return timings


def report(bars: int = 5000) -> None:
    fs = FeatureSet.core()
    print(f"== feature update per closed bar ({fs.name}: {len(fs.names)} features, all indicators, one symbol)")
    print(
        f"   {bars} M1 bars after a 200-bar warm-up, one thread of {os.cpu_count()} cores "
        f"(load average {os.getloadavg()[0]:.1f}), {platform.python_implementation()} {platform.python_version()}, "
        "no I/O (the state update alone)"
    )
    for label, clock in (("wall", time.perf_counter_ns), ("CPU", time.thread_time_ns)):
        timings = sorted(feature_update_us(bars, clock=clock))
        p50 = statistics.median(timings)
        p99 = timings[min(len(timings) - 1, int(0.99 * len(timings)))]
        print(f"   {label:>4}: p50 {p50:.1f} µs, p99 {p99:.1f} µs, max {timings[-1]:.1f} µs  (target < 1 ms)")


if __name__ == "__main__":
    report(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
    sys.exit(0)
