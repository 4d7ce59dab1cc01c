"""BarBuilder: event-time bars equal a direct computation, whatever the arrival order."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.data_bridge.domain.bars import BarBuilder, TickOutcome, bars_from_ticks
from shared.events import MarketBar, MarketTick, Timeframe, bar_event_id, tick_event_id

MS = 1_000_000
S = 1_000 * MS
LATENESS = 2 * S
T0_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z: deliberately not on a bar boundary
ALL_TFS = (Timeframe.M1, Timeframe.M5, Timeframe.M15, Timeframe.H1)
#: ``max_lead_ns`` for tests about something else than held ticks: every tick moves the watermark.
NO_HOLD = 24 * 3600 * S


def tick(
    msc: int,
    bid: Decimal | str | int,
    *,
    symbol: str = "EURUSD",
    volume: Decimal | int = 0,
    flags: int = 0,
    extra_ns: int = 0,
    arrived_ms: int | None = None,
) -> MarketTick:
    """A tick at ``msc`` ms (+ ``extra_ns``); ``flags`` makes ids unique when ts and prices repeat.

    ``arrived_ms``: when the edge received it (``ts_init``); by default at its own time.
    """
    b = Decimal(bid)
    a = b + Decimal("0.0002")
    v = Decimal(volume)
    ts = msc * MS + extra_ns
    return MarketTick(
        event_id=tick_event_id(symbol, msc, b, a, None, v, flags),
        ts_event=ts,
        ts_init=ts if arrived_ms is None else arrived_ms * MS,
        symbol=symbol,
        bid=b,
        ask=a,
        volume=v,
        flags=flags,
    )


def feed(builder: BarBuilder, ticks: list[MarketTick], now_ns: int = 0) -> list[MarketBar]:
    closed: list[MarketBar] = []
    for t in ticks:
        closed.extend(builder.add(t, now_ns).closed)
    return closed


def key(bar: MarketBar) -> tuple[str, int, int]:
    return bar.symbol, bar.ts_event, bar.timeframe.nanos


def dumps(bars: list[MarketBar]) -> list[str]:
    """Byte-level form, sorted: catches Decimal representation differences too."""
    return [b.model_dump_json() for b in sorted(bars, key=key)]


def random_walk(n: int, seed: int, *, gaps: bool = True, symbol: str = "EURUSD") -> list[MarketTick]:
    """In-order ticks: ms steps (with ties), occasional multi-minute gaps, 5-digit prices."""
    rng = random.Random(seed)
    msc, points, out = T0_MS, 110_000, []
    for i in range(n):
        r = rng.random()
        if gaps and r < 0.01:
            msc += rng.randint(10 * 60_000, 90 * 60_000)  # market gap: whole bars are skipped
        elif r < 0.05:
            pass  # same ms as the previous tick
        else:
            msc += rng.randint(1, 15_000)
        points += rng.randint(-4, 4)
        out.append(tick(msc, Decimal(points).scaleb(-5), symbol=symbol, volume=rng.randint(0, 9), flags=i))
    return out


def shuffle_within(ticks: list[MarketTick], lateness_ns: int, rng: random.Random) -> list[MarketTick]:
    """Reorder so that no tick arrives more than ``lateness_ns`` behind the newest before it.

    Sorting by ``ts + jitter`` with jitter in [0, lateness] guarantees it: if j
    arrives before i then ts_j + d_j <= ts_i + d_i, so ts_i >= ts_j - lateness.
    """
    return [t for _, _, t in sorted((t.ts_event + rng.randint(0, lateness_ns), i, t) for i, t in enumerate(ticks))]


# --- against an independent pandas computation --------------------------------


@pytest.mark.parametrize("tf", ALL_TFS)
def test_bars_equal_pandas_resample(tf: Timeframe) -> None:
    ticks = random_walk(3000, seed=7)
    span_h = (ticks[-1].ts_event - ticks[0].ts_event) / 3600 / S
    assert span_h > 4  # several hours, with gaps

    builder = BarBuilder(ALL_TFS, LATENESS)
    closed = feed(builder, ticks)
    bars = [b for b in closed + builder.open_bars("EURUSD") if b.timeframe == tf]

    ordered = sorted(ticks, key=lambda t: (t.ts_event, t.event_id.int))
    frame = pd.DataFrame(
        {"bid": [int(t.bid.scaleb(5)) for t in ordered], "vol": [int(t.volume) for t in ordered]},
        index=pd.to_datetime([t.ts_event for t in ordered], unit="ns", utc=True),
    )
    res = frame.resample(f"{tf.seconds}s", origin="epoch", label="left", closed="left")
    expected = res["bid"].agg(["first", "max", "min", "last", "count"])
    expected["vol"] = res["vol"].sum()
    expected = expected[expected["count"] > 0]

    assert len(bars) == len(expected)
    for bar, (when, row) in zip(sorted(bars, key=key), expected.iterrows(), strict=False):
        assert bar.ts_event == when.value
        assert [int(p.scaleb(5)) for p in (bar.open, bar.high, bar.low, bar.close)] == [
            row["first"],
            row["max"],
            row["min"],
            row["last"],
        ]
        assert bar.volume == row["count"]
        assert bar.real_volume == row["vol"]
        assert bar.event_id == bar_event_id("EURUSD", tf, bar.ts_event)


def test_open_bars_are_the_only_bars_not_closed() -> None:
    ticks = random_walk(2000, seed=3)
    builder = BarBuilder(ALL_TFS, LATENESS, max_lead_ns=NO_HOLD)
    closed = feed(builder, ticks)
    wm = builder.watermark("EURUSD")
    assert wm == ticks[-1].ts_event - LATENESS
    assert all(b.ts_event + b.timeframe.nanos <= wm for b in closed)
    assert all(b.ts_event + b.timeframe.nanos > wm for b in builder.open_bars("EURUSD"))
    assert builder.stats.bars_closed == len(closed)


# --- order independence, duplicates, late ticks ------------------------------

price_repr = st.sampled_from([5, 6, 7])  # decimal places: equal values, different representations


@st.composite
def tick_streams(draw: st.DrawFn) -> list[MarketTick]:
    n = draw(st.integers(1, 120))
    msc, points, out = T0_MS, 1000, []
    for i in range(n):
        msc += draw(st.one_of(st.just(0), st.integers(1, 3_000), st.integers(50_000, 700_000)))
        points += draw(st.integers(-2, 2))  # small moves: many equal highs/lows
        bid = Decimal(points).scaleb(-5).quantize(Decimal(1).scaleb(-draw(price_repr)))
        # Volumes at several scales: Decimal("0.00") + x differs from 0 + x in exponent.
        volume = Decimal(draw(st.integers(0, 3))).scaleb(-draw(st.integers(0, 2)))
        out.append(tick(msc, bid, volume=volume, flags=i))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ticks=tick_streams(), seed=st.integers(0, 2**32))
def test_out_of_order_within_lateness_equals_in_order(ticks: list[MarketTick], seed: int) -> None:
    rng = random.Random(seed)
    tfs = (Timeframe.M1, Timeframe.M5)
    in_order = BarBuilder(tfs, LATENESS)
    expected_closed = feed(in_order, ticks)

    shuffled = shuffle_within(ticks, LATENESS, rng)
    reordered = BarBuilder(tfs, LATENESS)
    results = [reordered.add(t, 0) for t in shuffled]
    assert all(r.outcome is TickOutcome.ACCEPTED for r in results)
    got_closed = [b for r in results for b in r.closed]

    assert dumps(got_closed) == dumps(expected_closed)
    assert dumps(reordered.open_bars("EURUSD")) == dumps(in_order.open_bars("EURUSD"))
    # ... and both equal the batch reference, split at the final watermark.
    wm = in_order.watermark("EURUSD")
    assert wm is not None
    reference = bars_from_ticks(shuffled, tfs)
    assert dumps(got_closed) == dumps([b for b in reference if b.ts_event + b.timeframe.nanos <= wm])
    assert dumps(reference) == dumps(got_closed + reordered.open_bars("EURUSD"))


@settings(max_examples=60, deadline=None)
@given(ticks=tick_streams(), seed=st.integers(0, 2**32))
def test_redelivered_ticks_have_no_effect(ticks: list[MarketTick], seed: int) -> None:
    rng = random.Random(seed)
    clean = BarBuilder((Timeframe.M1,), LATENESS)
    expected = feed(clean, ticks)

    # Re-deliver some ticks right after themselves or a little later (still within lateness).
    stream: list[MarketTick] = []
    for i, t in enumerate(ticks):
        stream.append(t)
        if rng.random() < 0.3:
            stream.append(ticks[rng.randint(max(0, i - 3), i)])
    noisy = BarBuilder((Timeframe.M1,), LATENESS)
    got = feed(noisy, stream)
    assert dumps(got) == dumps(expected)
    assert dumps(noisy.open_bars("EURUSD")) == dumps(clean.open_bars("EURUSD"))
    assert noisy.stats.accepted == len(ticks)
    assert noisy.stats.duplicate + noisy.stats.late == len(stream) - len(ticks)


def test_exact_duplicate_is_reported() -> None:
    b = BarBuilder((Timeframe.M1,), LATENESS)
    t = tick(T0_MS, "1.1")
    assert b.add(t, 0).outcome is TickOutcome.ACCEPTED
    res = b.add(t, 0)
    assert res.outcome is TickOutcome.DUPLICATE and res.closed == []
    assert b.open_bars("EURUSD")[0].volume == 1
    assert (b.stats.accepted, b.stats.duplicate) == (1, 1)


def test_late_ticks_are_rejected_and_counted() -> None:
    b = BarBuilder((Timeframe.M1,), LATENESS)
    b.add(tick(T0_MS + 10_000, "1.1"), 0)
    before = b.open_bars("EURUSD")
    wm_ms = T0_MS + 10_000 - LATENESS // MS
    res = b.add(tick(wm_ms - 1, "9.9"), 0)  # 1 ms below the watermark
    assert res.outcome is TickOutcome.LATE and res.closed == []
    assert b.open_bars("EURUSD") == before
    assert b.add(tick(wm_ms, "1.2"), 0).outcome is TickOutcome.ACCEPTED  # exactly at it: in time
    assert (b.stats.accepted, b.stats.late, b.stats.duplicate) == (2, 1, 0)
    # Nanosecond boundary: 1 ns below the watermark is late.
    assert b.add(tick(wm_ms - 1, "1.3", extra_ns=MS - 1), 0).outcome is TickOutcome.LATE


def test_remembered_ids_stay_bounded() -> None:
    """Ids below the watermark are forgotten (white-box: memory is the point)."""
    ticks = random_walk(3000, seed=2, gaps=False)
    b = BarBuilder((Timeframe.M1,), LATENESS)
    feed(b, shuffle_within(ticks, LATENESS, random.Random(2)))
    state = b._states["EURUSD"]
    wm = b.watermark("EURUSD")
    assert wm is not None
    assert len(state.seen) == len(state.seen_fifo)
    assert len(state.seen) <= 1 + sum(t.ts_event >= wm - LATENESS for t in ticks)


def test_late_is_decided_before_duplicate() -> None:
    """An old re-delivery is 'late' whether or not its id is still remembered."""
    b = BarBuilder((Timeframe.M1,), LATENESS)
    old = tick(T0_MS, "1.1")
    b.add(old, 0)
    b.add(tick(T0_MS + 60_000, "1.1"), 0)
    b.add(tick(T0_MS + 60_001, "1.1"), 0)  # confirms the jump
    assert b.add(old, 0).outcome is TickOutcome.LATE


def test_watermarks_are_per_symbol() -> None:
    b = BarBuilder((Timeframe.M1,), LATENESS)
    b.add(tick(T0_MS + 3_600_000, "1.1", symbol="GBPUSD"), 0)
    assert b.add(tick(T0_MS, "1.1", symbol="EURUSD"), 0).outcome is TickOutcome.ACCEPTED
    assert b.symbols() == ["EURUSD", "GBPUSD"]


# --- closing ------------------------------------------------------------------


def test_several_bars_close_at_once_across_a_gap() -> None:
    h = 1_700_002_800_000  # 2023-11-14T23:00:00Z, on an hour boundary (ms)
    b = BarBuilder(ALL_TFS, LATENESS)
    assert b.add(tick(h + 10_000, "1.10"), 0).closed == []
    assert b.add(tick(h + 59_500, "1.12"), 0).closed == []
    # Watermark h+59s: M1@h is still open (its end h+60s is above the watermark).
    assert b.add(tick(h + 61_000, "1.08", volume=2), 0).closed == []

    # A jump of two hours that arrived when it happened (a reopening, not a clock ahead) closes at once.
    res = b.add(tick(h + 2 * 3_600_000 + 30_000, "1.50"), now_ns=123)
    assert res.outcome is TickOutcome.ACCEPTED
    assert [(bar.ts_event - h * MS, bar.timeframe) for bar in res.closed] == [
        (0, Timeframe.M1),
        (0, Timeframe.M5),
        (0, Timeframe.M15),
        (0, Timeframe.H1),
        (60 * S, Timeframe.M1),
    ]
    m1, m5, m15, h1, m1b = res.closed
    assert (m1.open, m1.high, m1.low, m1.close, m1.volume) == (
        Decimal("1.10"),
        Decimal("1.12"),
        Decimal("1.10"),
        Decimal("1.12"),
        2,
    )
    for bar in (m5, m15, h1):
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.real_volume) == (
            Decimal("1.10"),
            Decimal("1.12"),
            Decimal("1.08"),
            Decimal("1.08"),
            3,
            Decimal(2),
        )
    assert m1b.volume == 1 and m1b.open == Decimal("1.08")
    assert all(bar.ts_init == 123 for bar in res.closed)
    assert all(bar.event_id == bar_event_id("EURUSD", bar.timeframe, bar.ts_event) for bar in res.closed)
    # The new tick's bars stay open until the watermark passes their end.
    assert {bar.timeframe for bar in b.open_bars("EURUSD")} == set(ALL_TFS)
    assert b.stats.bars_closed == 5


def test_zero_lateness_closes_on_the_boundary_tick() -> None:
    b = BarBuilder((Timeframe.M1,), 0, max_lead_ns=NO_HOLD)
    m = 1_700_000_040_000  # on a minute boundary (ms)
    b.add(tick(m + 1, "1.1"), 0)
    res = b.add(tick(m + 60_000, "1.2"), 0)
    assert [bar.ts_event for bar in res.closed] == [m * MS]


# --- checkpointing ------------------------------------------------------------


@pytest.mark.parametrize("split", [0, 1, 2, 250, 777, 1499, 1500, *range(3, 1500, 61)])
def test_snapshot_restore_mid_stream_continues_identically(split: int) -> None:
    rng = random.Random(4)  # one stream for every split point
    ticks = shuffle_within(random_walk(1500, seed=11), LATENESS, rng)
    # Sprinkle re-deliveries and genuinely late ticks so all state matters.
    stream = []
    for i, t in enumerate(ticks):
        stream.append(t)
        if i and rng.random() < 0.05:
            stream.append(ticks[i - 1])
        if i > 50 and rng.random() < 0.02:
            stream.append(ticks[i - 50])
    original = BarBuilder(ALL_TFS, LATENESS)
    for t in stream[:split]:
        original.add(t, 0)

    snap = original.snapshot()
    restored = BarBuilder.restore(json.loads(json.dumps(snap)))
    assert restored.snapshot() == snap
    assert restored.stats == original.stats

    for t in stream[split:]:
        a, b = original.add(t, 42), restored.add(t, 42)
        assert a.outcome is b.outcome
        assert [x.model_dump_json() for x in a.closed] == [x.model_dump_json() for x in b.closed]
    assert restored.stats == original.stats
    assert restored.snapshot() == original.snapshot()


def test_restore_remembers_accepted_ids() -> None:
    b = BarBuilder((Timeframe.M1,), LATENESS)
    t = tick(T0_MS, "1.1")
    b.add(t, 0)
    restored = BarBuilder.restore(json.loads(json.dumps(b.snapshot())))
    assert restored.add(t, 0).outcome is TickOutcome.DUPLICATE


def test_restore_rejects_unknown_version() -> None:
    snap = BarBuilder().snapshot()
    snap["version"] = 999
    with pytest.raises(ValueError):
        BarBuilder.restore(snap)


# --- batch reference ----------------------------------------------------------


def test_bars_from_ticks_agrees_with_builder_on_many_symbols() -> None:
    ticks = [t for i, sym in enumerate(["EURUSD", "GBPUSD", "XAUUSD"]) for t in random_walk(800, seed=i, symbol=sym)]
    rng = random.Random(5)
    builder = BarBuilder(ALL_TFS, LATENESS)
    closed = feed(builder, shuffle_within(ticks, LATENESS, rng) + ticks[:100])  # + duplicates/late
    everything = closed + [b for s in builder.symbols() for b in builder.open_bars(s)]
    reference = bars_from_ticks(ticks, ALL_TFS)
    assert reference == sorted(reference, key=key)
    assert dumps(reference) == dumps(everything)


def test_bars_from_ticks_dedupes_and_breaks_ties_by_event_id() -> None:
    a, b = tick(T0_MS, "1.1", flags=1), tick(T0_MS, "1.3", flags=2)
    first, last = sorted([a, b], key=lambda t: t.event_id.int)
    (bar,) = bars_from_ticks([b, a, b, a], (Timeframe.M1,), now_ns=7)
    assert (bar.open, bar.close, bar.volume, bar.ts_init) == (first.bid, last.bid, 2, 7)


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError):
        BarBuilder(())
    with pytest.raises(ValueError):
        BarBuilder(allowed_lateness_ns=-1)
    assert BarBuilder([Timeframe.H1, Timeframe.M1, Timeframe.M1]).timeframes == (Timeframe.M1, Timeframe.H1)
