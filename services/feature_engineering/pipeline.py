"""Bars in, feature vectors out: one streaming feature state per (symbol, timeframe).

Order and idempotency: per series only a bar newer than the last one applied advances the
state. An older or equal bar (a redelivery, a rebuilt bar) is skipped and counted; a gap is
fine (markets close), and is filled from stored bars first when storage has them.

The crash window, and the choice made: a bar's vector is **published first, then the state is
saved** (with the bar's open time). A crash between the two leaves the saved state one bar
behind; the bar is redelivered (its offset was not committed), is newer than the saved state,
and is applied again to the same state, giving the same values and the same deterministic
event id (``feature_vector_id``): a duplicate downstream recognises. The other order (save,
then publish) could lose a vector for good: the redelivered bar would be "older or equal" and
skipped. A batch of bars is published at once, then each series it advanced is saved once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.feature_engineering.checkpoints import FeatureCheckpoints
from services.feature_engineering.history import BarHistory
from shared.events import FeatureVector, MarketBar, Timeframe, feature_vector_id, now_ns
from shared.features import FeatureSet, FeatureSetState

log = logging.getLogger(__name__)

#: A series still short of its warm-up asks storage again this often (seconds): on a first start
#: its history may be stored (the collector's backfill) only after its first live bars arrived.
COLD_RETRY_S = 30.0

Publish = Callable[[Sequence[FeatureVector]], Awaitable[object]]


class FeatureMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.bars = Counter("feature_bars_processed_total", "Bars that advanced a feature state", registry=registry)
        self.vectors = Counter("feature_vectors_published_total", "Feature vectors published", registry=registry)
        self.skipped = Counter(
            "feature_bars_skipped_total", "Bars not newer than their series' last one (redelivered, rebuilt)",
            registry=registry,
        )  # fmt: skip
        self.warmed = Counter("feature_warmup_bars_total", "Stored bars applied to warm a series up", registry=registry)
        self.history_failures = Counter(
            "feature_history_failures_total", "Warm-ups that could not read stored bars", registry=registry
        )
        self.update_seconds = Histogram(
            "feature_update_seconds",
            "Time to update one series' features with one bar",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
            registry=registry,
        )


@dataclass
class Series:
    last_open_ns: int
    state: FeatureSetState


class FeaturePipeline:
    def __init__(
        self,
        feature_set: FeatureSet,
        checkpoints: FeatureCheckpoints,
        history: BarHistory,
        publish: Publish,
        metrics: FeatureMetrics,
        *,
        warmup_bars: int,
    ) -> None:
        self.feature_set = feature_set
        self._checkpoints = checkpoints
        self._history = history
        self._publish = publish
        self._metrics = metrics
        self._warmup_bars = warmup_bars
        self._series: dict[tuple[str, Timeframe], Series] = {}
        #: When a cold series may next be rebuilt from storage (monotonic seconds), by series.
        self._cold_retry_at: dict[tuple[str, Timeframe], float] = {}
        self.cold_retry_s = COLD_RETRY_S

    async def on_bar(self, bar: MarketBar) -> FeatureVector | None:
        """Apply one closed bar; publish and return its vector, or ``None`` if the bar is not new."""
        vectors = await self.on_bars([bar])
        return vectors[0] if vectors else None

    async def on_bars(self, bars: Sequence[MarketBar]) -> list[FeatureVector]:
        """Apply a batch of closed bars in order; publish their vectors at once, then save the state
        of every series they advanced (once each). Returns the vectors published."""
        vectors: list[FeatureVector] = []
        touched: dict[tuple[str, Timeframe], Series] = {}
        try:
            for bar in bars:
                key = (bar.symbol, bar.timeframe)
                series = self._series.get(key) or await self._load(bar.symbol, bar.timeframe)
                if series is not None and bar.ts_event <= series.last_open_ns:
                    self._metrics.skipped.inc()
                    continue
                series = await self._warm_up(bar, series)
                self._series[key] = touched[key] = series
                vectors.append(self._apply(bar, series))
            if vectors:
                await self._publish(vectors)  # first (see the module docstring), then the states
        except BaseException:
            # These states may hold bars whose vectors are not out: the redelivered bars must meet
            # the last saved states, not these (they would count a bar twice).
            for key in touched:
                self._series.pop(key, None)
            raise
        self._metrics.vectors.inc(len(vectors))
        self._metrics.bars.inc(len(vectors))
        for (symbol, timeframe), series in touched.items():
            await self._checkpoints.save(
                symbol, timeframe.value, self.feature_set.name, series.last_open_ns, series.state.state()
            )
        return vectors

    def _apply(self, bar: MarketBar, series: Series) -> FeatureVector:
        started = time.perf_counter()
        values = series.state.update(bar)
        series.last_open_ns = bar.ts_event
        self._metrics.update_seconds.observe(time.perf_counter() - started)
        return FeatureVector(
            event_id=feature_vector_id(bar.symbol, bar.timeframe, bar.ts_event, self.feature_set.name),
            ts_event=bar.ts_event,
            ts_init=now_ns(),
            symbol=bar.symbol,
            timeframe=bar.timeframe,
            bar_event_id=bar.event_id,
            feature_set=self.feature_set.name,
            features=values,
        )

    def forget(self) -> None:
        """Drop the in-memory states (after a rebalance another instance may have advanced them)."""
        self._series.clear()

    async def _load(self, symbol: str, timeframe: Timeframe) -> Series | None:
        saved = await self._checkpoints.load(symbol, timeframe.value, self.feature_set.name)
        if saved is None:
            return None
        return Series(saved.last_open_ns, self.feature_set.restore(saved.state))

    async def _warm_up(self, bar: MarketBar, series: Series | None) -> Series:
        """A new series starts from up to ``warmup_bars`` stored bars before ``bar``; a saved one
        more than one bar behind gets the stored bars in between (up to ``warmup_bars`` of them)."""
        step = bar.timeframe.nanos
        if series is not None and series.state.bars < self.feature_set.warmup_bars:
            return await self._rebuild_cold(bar, series)
        if series is None:
            series = Series(-1, self.feature_set.new_state())
            start = bar.ts_event - self._warmup_bars * step
            # Warmed up from what storage holds now; if that is short, asked again later, not at once.
            self._cold_retry_at[(bar.symbol, bar.timeframe)] = time.monotonic() + self.cold_retry_s
        elif bar.ts_event - series.last_open_ns > step:
            start = max(series.last_open_ns + step, bar.ts_event - self._warmup_bars * step)
        else:
            return series
        end = bar.ts_event - step
        if self._warmup_bars == 0 or end < start:
            return series
        try:
            stored = await self._history.bars(bar.symbol, bar.timeframe, start, end)
        except Exception as exc:  # storage away: go on without, and say so
            self._metrics.history_failures.inc()
            log.warning("warm-up of %s %s from stored bars failed: %r", bar.symbol, bar.timeframe.value, exc)
            return series
        for old in stored:
            if series.last_open_ns < old.ts_event < bar.ts_event:
                series.state.update(old)
                series.last_open_ns = old.ts_event
                self._metrics.warmed.inc()
        return series

    async def _rebuild_cold(self, bar: MarketBar, series: Series) -> Series:
        """A series short of its warm-up is rebuilt from the stored bars before ``bar`` when storage
        holds more of them than the series has seen, and reaches at least as far (its own live bars
        are stored too, so nothing it applied is lost); asked at most every ``cold_retry_s``."""
        key = (bar.symbol, bar.timeframe)
        now = time.monotonic()
        if self._warmup_bars == 0 or now < self._cold_retry_at.get(key, 0.0):
            return series
        self._cold_retry_at[key] = now + self.cold_retry_s
        step = bar.timeframe.nanos
        try:
            stored = await self._history.bars(
                bar.symbol, bar.timeframe, bar.ts_event - self._warmup_bars * step, bar.ts_event - step
            )
        except Exception as exc:  # storage away: go on cold, and ask again later
            self._metrics.history_failures.inc()
            log.warning("warm-up of %s %s from stored bars failed: %r", bar.symbol, bar.timeframe.value, exc)
            return series
        before = [old for old in stored if old.ts_event < bar.ts_event]
        if len(before) <= series.state.bars or before[-1].ts_event < series.last_open_ns:
            return series
        rebuilt = Series(-1, self.feature_set.new_state())
        for old in before:
            rebuilt.state.update(old)
            rebuilt.last_open_ns = old.ts_event
        self._metrics.warmed.inc(len(before))
        log.info("%s %s rebuilt from %d stored bars", bar.symbol, bar.timeframe.value, len(before))
        return rebuilt
