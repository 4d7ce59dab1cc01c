"""Synthetic ticks in the ingest wire format, for the benchmark and the tests."""

from __future__ import annotations

import random
from decimal import Decimal


def synthetic_ticks(
    symbol: str, start_ms: int, count: int, *, step_ms: int = 1500, seed: int = 7, price: str = "1.10000"
) -> list[dict]:
    """A seeded random walk of bid/ask quotes, strictly increasing times with irregular spacing."""
    rng = random.Random(seed)
    bid = Decimal(price)
    t = start_ms
    out = []
    for _ in range(count):
        t += rng.randint(1, 2 * step_ms)
        bid = max(Decimal("0.5"), bid + Decimal(rng.randint(-20, 20)) / Decimal(100000))
        ask = bid + Decimal(rng.randint(1, 5)) / Decimal(100000)
        out.append(
            {"symbol": symbol, "time_msc": t, "bid": str(bid), "ask": str(ask), "last": None, "volume": "0", "flags": 6}
        )
    return out
