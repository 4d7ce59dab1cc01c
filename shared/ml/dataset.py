"""Bars -> feature matrix, computed by the same ``FeatureSet`` the live feature-engineering runs.

A feature set is anything with the ``FeatureSet`` API of ``shared.features``: ``name``,
``names`` (ordered) and ``new_state()`` whose ``update(bar)`` gives ``{name: float | None}``
for one closed bar, from that bar and earlier ones only. Training goes through exactly that
path, bar by bar, so a model sees in training what it will see live.

Rows of one series are in bar order; several symbols are built one series at a time (each
its own state) and merged by time. A value ``None`` (warm-up) is NaN in the matrix and the
row is not ``complete``: training drops it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from shared.events import MarketBar, Timeframe, bar_event_id

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


class FeatureState(Protocol):
    def update(self, bar: MarketBar) -> Mapping[str, float | None]: ...


class FeatureSetLike(Protocol):
    """What training needs of ``shared.features.FeatureSet``."""

    @property
    def name(self) -> str: ...

    @property
    def names(self) -> Sequence[str]: ...

    def new_state(self) -> FeatureState: ...


#: A zero-argument, importable (picklable) callable returning the feature set: what a training
#: job names, so a worker process builds the very same set.
FeatureSetFactory = Callable[[], FeatureSetLike]


def core_feature_set() -> FeatureSetLike:
    """The platform's live feature set (``core-1``), as feature-engineering computes it."""
    from shared import features

    core: FeatureSetLike = features.FeatureSet.core()
    return core


@dataclass(frozen=True)
class BarSeries:
    """One symbol's bars of one timeframe as arrays (``ts`` = open time, ns), oldest first."""

    symbol: str
    timeframe: Timeframe
    ts: Ints
    open: Floats
    high: Floats
    low: Floats
    close: Floats
    volume: Ints

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @classmethod
    def from_bars(cls, bars: Sequence[MarketBar]) -> BarSeries:
        if not bars:
            raise ValueError("no bars")
        first = bars[0]
        return cls(
            first.symbol,
            first.timeframe,
            np.array([b.ts_event for b in bars], dtype=np.int64),
            np.array([float(b.open) for b in bars]),
            np.array([float(b.high) for b in bars]),
            np.array([float(b.low) for b in bars]),
            np.array([float(b.close) for b in bars]),
            np.array([b.volume for b in bars], dtype=np.int64),
        )

    @classmethod
    def from_rows(cls, symbol: str, timeframe: Timeframe, rows: Iterable[Mapping[str, Any]]) -> BarSeries:
        """From database-service's ``GET /api/v1/market/bars`` objects (``ts`` ISO 8601 UTC)."""
        items = list(rows)
        if not items:
            raise ValueError(f"no bars of {symbol} {timeframe.value}")
        ts = [int(dt.datetime.fromisoformat(str(r["ts"]).replace("Z", "+00:00")).timestamp()) * 10**9 for r in items]
        return cls(
            symbol,
            timeframe,
            np.array(ts, dtype=np.int64),
            np.array([float(r["open"]) for r in items]),
            np.array([float(r["high"]) for r in items]),
            np.array([float(r["low"]) for r in items]),
            np.array([float(r["close"]) for r in items]),
            np.array([int(r["volume"]) for r in items], dtype=np.int64),
        )

    def bars(self) -> list[MarketBar]:
        """The series as the live ``MarketBar`` events (ids as data-bridge gives them)."""

        def price(x: float) -> Decimal:
            return Decimal(str(float(x))).quantize(Decimal("1e-8")).normalize()

        return [
            MarketBar(
                event_id=bar_event_id(self.symbol, self.timeframe, int(t)),
                ts_event=int(t),
                ts_init=int(t),
                symbol=self.symbol,
                timeframe=self.timeframe,
                open=price(o),
                high=price(h),
                low=price(lo),
                close=price(c),
                volume=int(v),
            )
            for t, o, h, lo, c, v in zip(self.ts, self.open, self.high, self.low, self.close, self.volume, strict=True)
        ]


@dataclass(frozen=True)
class FeatureMatrix:
    """The features of one series: row ``i`` describes the close of bar ``i`` (NaN = missing)."""

    symbol: str
    timeframe: Timeframe
    feature_set: str
    names: tuple[str, ...]
    ts: Ints
    close: Floats
    values: Floats

    @property
    def complete(self) -> npt.NDArray[np.bool_]:
        """Rows with every feature present (past warm-up): the only ones a model trains on."""
        return np.asarray(~np.isnan(self.values).any(axis=1))


def build_features(series: BarSeries, feature_set: FeatureSetLike) -> FeatureMatrix:
    """Run ``feature_set`` over ``series`` bar by bar, as live; a ``None`` becomes NaN."""
    names = tuple(feature_set.names)
    state = feature_set.new_state()
    values = np.full((len(series), len(names)), np.nan)
    for i, bar in enumerate(series.bars()):
        row = state.update(bar)
        if list(row) != list(names):
            raise ValueError(f"feature set {feature_set.name} gave {list(row)[:5]}..., not its names in order")
        values[i] = [np.nan if row[n] is None else row[n] for n in names]
    return FeatureMatrix(
        series.symbol, series.timeframe, feature_set.name, names, series.ts.copy(), series.close.copy(), values
    )


def fingerprint(x: Floats, y: Floats) -> str:
    """sha256 of the training matrix and labels (C order, float64): the same data, the same print."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(x, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    return digest.hexdigest()


__all__ = [
    "BarSeries",
    "FeatureMatrix",
    "FeatureSetFactory",
    "FeatureSetLike",
    "FeatureState",
    "build_features",
    "core_feature_set",
    "fingerprint",
]
