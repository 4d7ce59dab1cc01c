"""Event time: one tick from the future does not move the watermark; a confirmed jump does.

"From the future" means ahead of its own arrival (``ts_init``) as well as ahead of the
stream: a clock running ahead. A jump that arrived when it happened (a sparse symbol, a
market reopening) moves the watermark at once.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from services.data_bridge.domain.bars import BarBuilder, TickOutcome, bars_from_ticks
from shared.events import MarketBar, MarketTick, Timeframe
from tests.services.data_bridge.test_bar_builder import ALL_TFS, LATENESS, MS, S, dumps, tick

T0_MS = 1_700_000_000_000
LEAD = 5 * S


def steady(start_ms: int, count: int, step_ms: int = 100, first_flag: int = 0) -> list[MarketTick]:
    return [
        tick(start_ms + i * step_ms, Decimal(110_000 + i % 37).scaleb(-5), volume=i % 3, flags=first_flag + i)
        for i in range(count)
    ]


def run(builder: BarBuilder, ticks: list[MarketTick]) -> tuple[list[MarketBar], list[TickOutcome]]:
    closed: list[MarketBar] = []
    outcomes = []
    for t in ticks:
        result = builder.add(t, 0)
        outcomes.append(result.outcome)
        closed.extend(result.closed)
    return closed, outcomes


def closed_reference(ticks: list[MarketTick], closed: list[MarketBar]) -> list[MarketBar]:
    """The reference's bars for the bars the builder closed (same keys), all ticks counted."""
    keys = {(b.ts_event, b.timeframe) for b in closed}
    return [b for b in bars_from_ticks(ticks, ALL_TFS) if (b.ts_event, b.timeframe) in keys]


def test_a_single_tick_50_s_ahead_makes_no_steady_tick_late() -> None:
    stream = steady(T0_MS, 3000)  # 300 s of ticks, 100 ms apart
    arrived = T0_MS + 499 * 100  # received beside the stream's 500th tick, stamped 50 s later
    outlier = tick(arrived + 100 + 50_000, "1.2", flags=99_999, arrived_ms=arrived)
    ticks = [*stream[:500], outlier, *stream[500:]]
    builder = BarBuilder(ALL_TFS, LATENESS)
    closed, outcomes = run(builder, ticks)
    assert outcomes.count(TickOutcome.LATE) == 0
    assert builder.stats.late == 0
    # The watermark followed the steady stream all along, and the bars closed are exactly the reference's.
    assert builder.watermark("EURUSD") == stream[-1].ts_event - LATENESS
    assert {b.timeframe for b in closed} >= {Timeframe.M1, Timeframe.M5}
    assert dumps(closed) == dumps(closed_reference(ticks, closed))
    # The outlier is in its own bar (M1 bars of the stream's range all closed, the outlier's included).
    outlier_m1 = outlier.ts_event - outlier.ts_event % Timeframe.M1.nanos
    bar = next(b for b in closed if b.timeframe is Timeframe.M1 and b.ts_event == outlier_m1)
    assert Decimal("1.2") == bar.high


def test_a_reopening_moves_the_watermark_at_once_and_closes_the_bars_behind_it() -> None:
    friday = steady(T0_MS, 600)
    monday = tick(T0_MS + 2 * 24 * 3_600_000, "1.3", flags=7_001)  # arrived when it happened
    builder = BarBuilder(ALL_TFS, LATENESS)
    before, _ = run(builder, friday)
    reopened = builder.add(monday, 0)
    assert builder.watermark("EURUSD") == monday.ts_event - LATENESS
    assert dumps(before + reopened.closed) == dumps(bars_from_ticks(friday, ALL_TFS))


def test_a_confirmed_jump_moves_the_watermark_and_closes_the_bars_behind_it() -> None:
    friday = steady(T0_MS, 600)
    monday_ms = T0_MS + 2 * 24 * 3_600_000
    sent = friday[-1].ts_event // MS  # a client whose clock jumped two days ahead
    first = tick(monday_ms, "1.3", flags=7_001, arrived_ms=sent)
    second = tick(monday_ms + 250, "1.31", flags=7_002, arrived_ms=sent)
    builder = BarBuilder(ALL_TFS, LATENESS)
    before, _ = run(builder, friday)
    held = builder.add(first, 0)
    assert held == (TickOutcome.ACCEPTED, [])
    assert builder.watermark("EURUSD") == friday[-1].ts_event - LATENESS
    confirmed = builder.add(second, 0)
    assert builder.watermark("EURUSD") == second.ts_event - LATENESS
    # Every bar of Friday is final now, as the reference computes it.
    closed = before + confirmed.closed
    friday_bars = bars_from_ticks(friday, ALL_TFS)
    assert dumps(closed) == dumps(friday_bars)


def test_a_second_tick_confirms_only_up_to_the_earlier_of_the_two() -> None:
    builder = BarBuilder(ALL_TFS, LATENESS)
    run(builder, steady(T0_MS, 10))
    far = tick(T0_MS + 60_000, "1.1", flags=501, arrived_ms=T0_MS + 1_000)
    farther = tick(T0_MS + 3_600_000, "1.1", flags=502, arrived_ms=T0_MS + 1_000)
    builder.add(farther, 0)
    builder.add(far, 0)
    assert builder.watermark("EURUSD") == far.ts_event - LATENESS  # the earlier one; the later is held in turn
    assert builder.add(tick(T0_MS + 61_000, "1.1", flags=503), 0).outcome is TickOutcome.ACCEPTED


@pytest.mark.parametrize("ahead_of_arrival", [False, True])
def test_a_sparse_stream_loses_nothing(ahead_of_arrival: bool) -> None:
    # Every 20 s, beyond the lead. As it happens, each moves the watermark; from a clock running
    # ahead (each stamped 20 s after it was received), the watermark runs one tick behind.
    ticks = [
        tick(T0_MS + i * 20_000, "1.1", flags=i, arrived_ms=T0_MS + (i - 1) * 20_000 if ahead_of_arrival else None)
        for i in range(40)
    ]
    builder = BarBuilder(ALL_TFS, LATENESS)
    closed, outcomes = run(builder, ticks)
    assert set(outcomes) == {TickOutcome.ACCEPTED}
    newest = ticks[-2] if ahead_of_arrival else ticks[-1]
    assert builder.watermark("EURUSD") == newest.ts_event - LATENESS
    assert dumps(closed) == dumps(closed_reference(ticks, closed))
    assert {b.ts_event for b in closed if b.timeframe is Timeframe.M1} == {
        b.ts_event for b in bars_from_ticks(ticks, [Timeframe.M1]) if b.ts_event + 60 * S <= newest.ts_event - LATENESS
    }


def test_a_held_tick_that_the_stream_reached_confirms_nothing_later() -> None:
    builder = BarBuilder(ALL_TFS, LATENESS)
    run(builder, steady(T0_MS, 10))
    builder.add(tick(T0_MS + 10_000, "1.1", flags=900, arrived_ms=T0_MS + 1_000), 0)  # held
    run(builder, steady(T0_MS + 1_000, 120, first_flag=1_000))  # the stream reaches T0 + 12.9 s
    wm = builder.watermark("EURUSD")
    outlier = tick(T0_MS + 70_000, "1.1", flags=901, arrived_ms=T0_MS + 13_000)
    builder.add(outlier, 0)  # a new outlier, alone: held, not confirmed
    assert builder.watermark("EURUSD") == wm


@pytest.mark.parametrize("split", range(495, 510))
def test_the_hold_survives_snapshot_and_restore(split: int) -> None:
    stream = steady(T0_MS, 1500)
    outlier = tick(T0_MS + 50_000 + 50_000, "1.2", flags=99_999, arrived_ms=T0_MS + 49_900)
    ticks = [*stream[:500], outlier, *stream[500:]]
    whole = BarBuilder(ALL_TFS, LATENESS)
    expected, _ = run(whole, ticks)
    first = BarBuilder(ALL_TFS, LATENESS)
    head, _ = run(first, ticks[:split])
    restored = BarBuilder.restore(json.loads(json.dumps(first.snapshot())))
    tail, _ = run(restored, ticks[split:])
    assert dumps(head + tail) == dumps(expected)
    assert restored.snapshot() == whole.snapshot()


def test_a_snapshot_from_before_the_hold_restores_with_nothing_held() -> None:
    builder = BarBuilder(ALL_TFS, LATENESS)
    run(builder, steady(T0_MS, 50))
    old = builder.snapshot()
    del old["max_lead_ns"]
    for data in old["symbols"].values():
        del data["held"]
    restored = BarBuilder.restore(old)
    assert restored.snapshot() == builder.snapshot()
    assert restored.max_lead_ns == LEAD


def test_max_lead_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="max_lead_ns"):
        BarBuilder(ALL_TFS, LATENESS, max_lead_ns=-1)


def test_a_tick_within_the_lead_moves_the_watermark_alone() -> None:
    """A tick within the lead moves the watermark alone: one outlier costs at most lead - lateness."""
    builder = BarBuilder(ALL_TFS, LATENESS)
    run(builder, steady(T0_MS, 10))
    builder.add(tick(T0_MS + 900 + LEAD // MS, "1.1", flags=600), 0)
    assert builder.watermark("EURUSD") == (T0_MS + 900) * MS + LEAD - LATENESS
