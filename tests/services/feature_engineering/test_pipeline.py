"""The feature pipeline in memory: fake history, checkpoints and publisher. What must hold: one
vector per new bar with the deterministic ids; an older or equal bar is skipped; a new series is
warmed up from stored bars and a gap after a saved state is filled from them; the saved state
continues exactly; a failed publish leaves the state as it was saved, so the redelivered bar gives
the same vector; a failing history does not stop the series."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from services.feature_engineering.checkpoints import SavedState
from services.feature_engineering.pipeline import FeatureMetrics, FeaturePipeline
from shared.events import FeatureVector, Timeframe, feature_vector_id
from shared.features import Bar, FeatureSet
from tests.services.feature_engineering.support import M1, make_bars


class MemoryCheckpoints:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], tuple[int, str]] = {}

    async def load(self, symbol, timeframe, feature_set):
        row = self.rows.get((symbol, timeframe, feature_set))
        return None if row is None else SavedState(row[0], json.loads(row[1]))

    async def save(self, symbol, timeframe, feature_set, last_open_ns, state):
        key = (symbol, timeframe, feature_set)
        if key not in self.rows or self.rows[key][0] < last_open_ns:
            self.rows[key] = (last_open_ns, json.dumps(state))


class FakeHistory:
    def __init__(self, bars, *, fail: bool = False) -> None:
        self.stored = [
            Bar(b.ts_event, float(b.open), float(b.high), float(b.low), float(b.close), b.volume) for b in bars
        ]
        self.asked: list[tuple[int, int]] = []
        self.fail = fail

    async def bars(self, symbol: str, timeframe: Timeframe, start_ns: int, end_ns: int):
        self.asked.append((start_ns, end_ns))
        if self.fail:
            raise ConnectionError("database-service is away")
        return [b for b in self.stored if start_ns <= b.ts_event <= end_ns]


class Published(list[FeatureVector]):
    fail_next = False

    async def __call__(self, events):
        if self.fail_next:
            self.fail_next = False
            raise TimeoutError("broker away")
        self.extend(events)


def pipeline(history=None, checkpoints=None, published=None, warmup_bars=0):
    registry = CollectorRegistry()
    p = FeaturePipeline(
        FeatureSet.core(),
        checkpoints or MemoryCheckpoints(),
        history or FakeHistory([]),
        published if published is not None else Published(),
        FeatureMetrics(registry),
        warmup_bars=warmup_bars,
    )
    return p, registry


def reference(bars) -> list[dict]:
    state = FeatureSet.core().new_state()
    return [state.update(b) for b in bars]


async def test_one_vector_per_new_bar_and_older_or_equal_bars_are_skipped() -> None:
    bars = make_bars("EURUSD", 80)
    published = Published()
    p, registry = pipeline(published=published)
    for bar in bars[:50]:
        await p.on_bar(bar)
    for bar in (bars[49], bars[10], bars[0]):  # a redelivery, older bars
        assert await p.on_bar(bar) is None
    for bar in bars[50:]:
        await p.on_bar(bar)
    assert [v.features for v in published] == reference(bars)
    assert [v.event_id for v in published] == [feature_vector_id("EURUSD", M1, b.ts_event, "core-1") for b in bars]
    assert [v.bar_event_id for v in published] == [b.event_id for b in bars]
    assert all(v.ts_event == b.ts_event for v, b in zip(published, bars, strict=True))
    assert registry.get_sample_value("feature_bars_skipped_total") == 3
    assert registry.get_sample_value("feature_vectors_published_total") == 80


async def test_a_restart_continues_from_the_saved_state() -> None:
    bars = make_bars("EURUSD", 90)
    checkpoints = MemoryCheckpoints()
    first, second = Published(), Published()
    p, _ = pipeline(checkpoints=checkpoints, published=first)
    for bar in bars[:60]:
        await p.on_bar(bar)
    p2, _ = pipeline(checkpoints=checkpoints, published=second)  # a new process
    assert await p2.on_bar(bars[59]) is None  # redelivered after the restart
    for bar in bars[60:]:
        await p2.on_bar(bar)
    assert [v.features for v in first + second] == reference(bars)


async def test_a_new_series_is_warmed_up_from_stored_bars() -> None:
    bars = make_bars("GBPUSD", 120)
    history = FakeHistory(bars[:100])
    published = Published()
    p, registry = pipeline(history=history, published=published, warmup_bars=100)
    for bar in bars[100:]:
        await p.on_bar(bar)
    assert history.asked == [(bars[0].ts_event, bars[99].ts_event)]
    assert [v.features for v in published] == reference(bars)[100:]
    assert registry.get_sample_value("feature_warmup_bars_total") == 100
    assert all(value is not None for value in published[0].features.values())


async def test_a_gap_after_the_saved_state_is_filled_from_stored_bars() -> None:
    bars = make_bars("XAUUSD", 130)
    checkpoints = MemoryCheckpoints()
    p, _ = pipeline(checkpoints=checkpoints)
    for bar in bars[:70]:  # warm (the core set needs 50 bars)
        await p.on_bar(bar)
    history = FakeHistory(bars)  # bars 70..99 reached storage but not this service
    published = Published()
    p2, _ = pipeline(history=history, checkpoints=checkpoints, published=published, warmup_bars=500)
    for bar in bars[100:]:
        await p2.on_bar(bar)
    assert history.asked == [(bars[70].ts_event, bars[99].ts_event)]
    assert [v.features for v in published] == reference(bars)[100:]


async def test_a_failed_publish_leaves_the_state_for_the_redelivered_bar() -> None:
    bars = make_bars("EURUSD", 60)
    checkpoints = MemoryCheckpoints()
    published = Published()
    p, _ = pipeline(checkpoints=checkpoints, published=published)
    for bar in bars[:30]:
        await p.on_bar(bar)
    published.fail_next = True
    with pytest.raises(TimeoutError):
        await p.on_bar(bars[30])
    for bar in bars[30:]:  # redelivered from the failed bar on
        await p.on_bar(bar)
    assert [v.features for v in published] == reference(bars)


async def test_a_failing_history_is_counted_and_the_series_goes_on() -> None:
    bars = make_bars("EURUSD", 10)
    published = Published()
    p, registry = pipeline(history=FakeHistory([], fail=True), published=published, warmup_bars=50)
    for bar in bars:
        await p.on_bar(bar)
    assert [v.features for v in published] == reference(bars)
    assert registry.get_sample_value("feature_history_failures_total") == 1


async def test_a_batch_of_two_series_publishes_once_and_saves_each_series_once() -> None:
    eur, gbp = make_bars("EURUSD", 40), make_bars("GBPUSD", 40, seed=3)
    checkpoints = MemoryCheckpoints()
    saves: list[str] = []
    save = checkpoints.save

    async def counting_save(symbol, *args):
        saves.append(symbol)
        await save(symbol, *args)

    checkpoints.save = counting_save  # type: ignore[method-assign]
    published = Published()
    calls: list[int] = []

    async def publish(events):
        calls.append(len(events))
        await published(events)

    p, _ = pipeline(checkpoints=checkpoints, published=publish)  # type: ignore[arg-type]
    batch = [b for pair in zip(eur[:20], gbp[:20], strict=True) for b in pair] + [eur[5], gbp[19]]
    await p.on_bars(batch)
    assert calls == [40] and sorted(saves) == ["EURUSD", "GBPUSD"]
    published.fail_next = True
    second = [b for pair in zip(eur[20:], gbp[20:], strict=True) for b in pair]
    with pytest.raises(TimeoutError):
        await p.on_bars(second)
    await p.on_bars(second)  # redelivered after the failed publish
    assert [v.features for v in published if v.symbol == "EURUSD"] == reference(eur)
    assert [v.features for v in published if v.symbol == "GBPUSD"] == reference(gbp)


async def test_a_series_that_started_cold_is_rebuilt_once_its_history_is_stored() -> None:
    """First start: live bars came before the collector's backfill was stored. Once storage holds
    the history (and the live bars, which database-service stores too), the series is rebuilt."""
    bars = make_bars("EURUSD", 130)
    history = FakeHistory([])
    published = Published()
    p, registry = pipeline(history=history, published=published, warmup_bars=200)
    p.cold_retry_s = 0.0
    for bar in bars[100:105]:  # no history yet: cold
        await p.on_bar(bar)
    assert published[-1].features["rsi_14"] is None
    history.stored = FakeHistory(bars[:105]).stored  # the backfill and the live bars, stored
    for bar in bars[105:]:
        await p.on_bar(bar)
    assert [v.features for v in published[5:]] == reference(bars)[105:]
    assert registry.get_sample_value("feature_warmup_bars_total") == 105
    history.stored = []  # warm now: storage is not asked again
    asked = len(history.asked)
    await p.on_bar(make_bars("EURUSD", 131)[-1])
    assert len(history.asked) == asked
