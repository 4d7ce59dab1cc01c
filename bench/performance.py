"""performance-analytics's in-process costs: a fill counted, a snapshot taken, an account's statistics.

``python -m bench.performance`` prints, with their conditions:

1. fills counted per second (``Analytics.fact_of`` + ``apply``: the event's attribution resolved
   against the signals seen, the position and every scope updated), no I/O;
2. one snapshot's equity points for many accounts (what the timer computes every interval);
3. risk/return of a year of one-minute snapshots (what ``GET /accounts/{id}`` computes on the
   curve it reads: hourly returns, Sharpe, Sortino, drawdown over every point).

No figure is a target of the issue; these say how far the single instance goes.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import sys
import time
import uuid
from decimal import Decimal

import numpy as np

from services.performance_analytics.analytics import Analytics, SignalFacts
from services.performance_analytics.metrics import risk_return
from services.performance_analytics.snapshots import equity_points
from shared.events import Fill, OrderAttribution, fill_event_id

BASE_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
SYMBOLS = ("EURUSD", "GBPUSD", "XAUUSD", "BTCUSD")
PRICES = {"EURUSD": Decimal("1.1"), "GBPUSD": Decimal("1.25"), "XAUUSD": Decimal("2000"), "BTCUSD": Decimal("50000")}


def synthetic_fills(n: int, accounts: int, seed: int = 1) -> tuple[list[Fill], list[SignalFacts]]:
    """Alternating buys and sells of random sizes, so trades open, add, close and flip."""
    rng = np.random.default_rng(seed)
    signals = [
        SignalFacts(str(uuid.uuid4()), BASE_NS, "EURUSD", 0.6, {"xgb:3": 0.7, "lstm:1": 0.3}) for _ in range(100)
    ]
    fills = []
    for i in range(n):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        account = f"A{i % accounts}"
        signal = signals[i % len(signals)]
        price = PRICES[symbol] * (1 + Decimal(int(rng.integers(-100, 100))) / 10_000)
        fills.append(
            Fill(
                event_id=fill_event_id("paper", account, f"d{i}"),
                ts_event=BASE_NS + i * 1_000_000_000,
                ts_init=0,
                order_id=uuid.uuid4(),
                client_order_id=f"c{i}",
                tenant="bench",
                account_id=account,
                venue="paper",
                venue_fill_id=f"d{i}",
                symbol=symbol,
                side="buy" if rng.random() < 0.5 else "sell",
                quantity=Decimal(int(rng.integers(1, 100))) / 100,
                price=price.quantize(Decimal("0.00001")),
                commission=Decimal("0.5"),
                currency="USD",
                attribution=OrderAttribution(
                    strategy="signals", signal_id=uuid.UUID(signal.signal_id), models=["xgb:3", "lstm:1"]
                ),
            )
        )
    return fills, signals


def report(fills: int = 50_000, accounts: int = 100) -> None:
    print("== performance-analytics, in process (no broker, no ClickHouse)")
    print(
        f"   one thread of {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}), "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    events, signals = synthetic_fills(fills, accounts)
    analytics = Analytics()
    for s in signals:
        analytics.remember_signal(s)
    started = time.perf_counter()
    for event in events:
        analytics.apply(analytics.fact_of(event))
    elapsed = time.perf_counter() - started
    print(
        f"   fills counted: {fills / elapsed:,.0f}/s ({fills} fills, {accounts} accounts, 4 symbols, "
        f"2 models per trade; {elapsed * 1e6 / fills:.1f} µs each)"
    )

    timings = []
    for _ in range(20):
        t = time.perf_counter()
        points = equity_points(analytics, Decimal(100_000), dt.datetime.now(dt.UTC))
        timings.append((time.perf_counter() - t) * 1000)
    print(
        f"   snapshot: {statistics.median(timings):.1f} ms median for {len(points)} equity points "
        f"({accounts} accounts x their scopes), before the ClickHouse insert"
    )

    minutes = 525_960  # a year of one-minute snapshots
    rng = np.random.default_rng(2)
    ts = BASE_NS + np.arange(minutes, dtype=np.int64) * 60_000_000_000
    equity = (100_000 * np.cumprod(1 + rng.normal(0, 0.0001, minutes))).astype(np.float64)
    timings = []
    for _ in range(5):
        t = time.perf_counter()
        risk_return(ts, equity, 3600)
        timings.append((time.perf_counter() - t) * 1000)
    print(f"   risk/return of a year of minute snapshots ({minutes} points, hourly returns): "
          f"{statistics.median(timings):.0f} ms median")  # fmt: skip


if __name__ == "__main__":
    report(*(int(a) for a in sys.argv[1:3]))
    sys.exit(0)
