"""A symbol's whole signal path, driven through a running mesh's public API: a bar history stored,
a model trained on it and promoted, then live bars that continue the history.

Shared by the end-to-end test (``tests/integration/test_signal_path_mesh.py``) and the bench of
bar -> validated signal (``bench/signal_path.py``): both need a symbol with a champion of its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from shared.events import MarketBar, Timeframe, bar_event_id, now_ns

M1 = Timeframe.M1
#: Prices have 5 decimals, as an FX quote: the bar ingest refuses more than the symbol's precision.
_QUANTUM = Decimal("0.00001")


@dataclass(frozen=True)
class Bar:
    """One M1 bar of a synthetic series: open time (UTC seconds) and OHLC, tick volume."""

    time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int

    def row(self) -> dict[str, Any]:
        """The bar as ``POST /api/v1/ingest/bars`` takes it (MT5's ``copy_rates_*`` fields)."""
        return {
            "time": self.time,
            "open": str(self.open),
            "high": str(self.high),
            "low": str(self.low),
            "close": str(self.close),
            "tick_volume": self.volume,
        }

    def event(self, symbol: str) -> MarketBar:
        """The bar as data-bridge publishes a closed bar on ``market.bars.v1``."""
        ts = self.time * 1_000_000_000
        return MarketBar(
            event_id=bar_event_id(symbol, M1, ts), ts_event=ts, ts_init=now_ns(), symbol=symbol, timeframe=M1,
            open=self.open, high=self.high, low=self.low, close=self.close, volume=self.volume,
        )  # fmt: skip


class RandomWalk:
    """A reproducible M1 random walk (log returns ~ N(0, ``vol``)), one bar after another, so a
    history and the live bars that follow it are one series."""

    def __init__(self, start_time: int, *, seed: int, price: float = 1.1, vol: float = 0.0004) -> None:
        if start_time % 60:
            raise ValueError("start_time must be on the minute")
        self._rng = random.Random(seed)
        self._next_time = start_time
        self._price = price
        self._vol = vol

    def bars(self, count: int) -> list[Bar]:
        return [self._step() for _ in range(count)]

    def _step(self) -> Bar:
        def q(x: float) -> Decimal:
            return Decimal(repr(x)).quantize(_QUANTUM)

        open_ = self._price
        close = open_ * math.exp(self._rng.gauss(0.0, self._vol))
        high = max(open_, close) * (1 + abs(self._rng.gauss(0.0, self._vol / 2)))
        low = min(open_, close) * (1 - abs(self._rng.gauss(0.0, self._vol / 2)))
        bar = Bar(self._next_time, q(open_), q(high), q(low), q(close), self._rng.randint(5, 200))
        self._next_time += 60
        self._price = float(bar.close)
        return bar


def minute(seconds: float) -> int:
    """The open time of the M1 bar ``seconds`` (UTC) falls in."""
    return int(seconds) // 60 * 60


async def store_history(http: httpx.AsyncClient, gateway: str, symbol: str, bars: list[Bar]) -> None:
    """Store ``bars`` through the gateway (``POST /api/v1/ingest/bars``; ``http`` carries a
    ``market:write`` token), in requests of at most 5,000."""
    for i in range(0, len(bars), 5000):
        body = {"symbol": symbol, "timeframe": "M1", "bars": [b.row() for b in bars[i : i + 5000]]}
        r = await http.post(gateway + "/api/v1/ingest/bars", json=body, timeout=120)
        r.raise_for_status()


async def train_and_promote(
    http: httpx.AsyncClient,
    gateway: str,
    *,
    name: str,
    symbol: str,
    start: int,
    end: int,
    kind: str = "xgboost",
    horizon_bars: int = 5,
    folds: int = 3,
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Train a direction model of ``kind`` on ``symbol``'s stored M1 bars in ``[start, end]`` (UTC
    seconds), wait for its job and promote it; ``http`` carries an ``admin`` token. Returns the
    promoted model as ``GET /api/v1/models/{id}`` shows it."""

    def iso(seconds: int) -> str:
        return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()

    spec = {
        "name": name,
        "kind": kind,
        "task": "direction",
        "symbols": [symbol],
        "timeframe": "M1",
        "start": iso(start),
        "end": iso(end),
        "horizon_bars": horizon_bars,
        "folds": folds,
    }
    r = await http.post(gateway + "/api/v1/models/train", json=spec)
    assert r.status_code == 202, r.text
    job_url = gateway + r.json()["status_url"]
    deadline = time.monotonic() + timeout_s
    while True:
        job = (await http.get(job_url)).json()
        if job["state"] in ("done", "failed"):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"training job not done in {timeout_s:.0f} s: {job}")
        await asyncio.sleep(0.5)
    assert job["state"] == "done", job
    model_id = job["model_id"]
    r = await http.post(gateway + f"/api/v1/models/{model_id}/promote")
    assert r.status_code == 200, r.text
    r = await http.get(gateway + f"/api/v1/models/{model_id}")
    assert r.status_code == 200, r.text
    model: dict[str, Any] = r.json()
    assert model["status"] == "champion", model
    return model


__all__ = ["M1", "Bar", "RandomWalk", "minute", "store_history", "train_and_promote"]
