"""Deterministic event-time OHLC bar aggregation from ticks.

Bars are built from BID prices (the MT5 convention). Every timeframe is
aggregated directly from ticks -- not M5 from M1 -- and aligned to the Unix
epoch in UTC: a tick at ``ts`` belongs to the bar opening at
``ts - ts % tf.nanos``.

Event time, not arrival time, decides everything, so the bars (and their
deterministic ids) do not depend on how ticks were interleaved or re-delivered:

* per symbol the builder tracks ``max_ts`` (largest tick time seen) and the
  watermark ``max_ts - allowed_lateness_ns``;
* one tick from the future cannot move time far ahead: a tick more than
  ``max_lead_ns`` ahead of ``max_ts`` *and* of its own arrival (``ts_init``, which
  the edge stamps and the event carries) joins its bars but is *held*: ``max_ts``
  moves only when a second such tick confirms the jump (to the earlier of the two),
  and the hold ends once the stream reaches it. A clock-skewed outlier then makes no
  tick late; a real jump (a sparse symbol, a market reopening, a restart hours
  later, a backfill) arrives after its event time and moves the watermark at once.
  It depends only on the ticks' own fields, so a replay rebuilds the same bars;
* a tick below the watermark is *late* and dropped (counted);
* a tick whose ``event_id`` was already accepted is a *duplicate* (ignored);
* open/close are the first/last tick by ``(ts_event, event_id)`` -- ties on
  equal timestamps are broken by id, never by arrival order, because arrival
  order is exactly what a replay or a rebalance changes;
* a bar is final once its end ``open + tf`` is <= the watermark: no tick that
  could still be accepted (``ts >= watermark``) can fall into it.

``bars_from_ticks`` is the batch reference computation of the same thing.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

from shared.events import MarketBar, MarketTick, Timeframe, bar_event_id
from shared.tick_decoder import AnyTick

__all__ = ["DEFAULT_TIMEFRAMES", "AddResult", "BarBuilder", "BarBuilderStats", "TickOutcome", "bars_from_ticks"]

DEFAULT_TIMEFRAMES: tuple[Timeframe, ...] = (Timeframe.M1, Timeframe.M5, Timeframe.M15, Timeframe.H1)
SNAPSHOT_VERSION = 1
#: Default of ``BarBuilder``'s ``max_lead_ns``: larger than the gaps of a live stream (the
#: edge accepts ticks up to 60 s ahead of its clock, so an outlier can be that far).
DEFAULT_MAX_LEAD_NS = 5_000_000_000
#: "No held tick".
_NONE = -1
#: "No open bar": larger than any bar end, so ``watermark >= _NEVER`` is always false.
_NEVER = 1 << 126


class TickOutcome(StrEnum):
    """What ``BarBuilder.add`` did with a tick (stable codes for metrics)."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    LATE = "late"


class AddResult(NamedTuple):
    """Result of ``BarBuilder.add``: the tick's outcome and the bars it made final.

    A NamedTuple rather than a dataclass because one is created per tick and
    tuples are the cheapest object CPython can build.
    """

    outcome: TickOutcome
    closed: list[MarketBar]


@dataclass(slots=True)
class BarBuilderStats:
    """Counters since the builder was created (carried through snapshot/restore)."""

    accepted: int = 0
    duplicate: int = 0
    late: int = 0
    bars_closed: int = 0


class _Bar:
    """A bar being built. Plain slots object: it is touched 4x per tick.

    Each price remembers the ``(ts, event_id.int)`` key of the tick that set it.
    For open/close that key *is* the rule (first/last by event time). For
    high/low it only picks among equal values: ``Decimal("1.10") == Decimal("1.1")``
    but they serialise differently, and the builder's output must not depend on
    arrival order even byte-wise, so the earliest ``(ts, id)`` wins a tie.
    """

    __slots__ = (
        "close",
        "close_id",
        "close_ts",
        "count",
        "end_ns",
        "high",
        "high_id",
        "high_ts",
        "low",
        "low_id",
        "low_ts",
        "open",
        "open_id",
        "open_ns",
        "open_ts",
        "real_volume",
    )

    def __init__(self, open_ns: int, end_ns: int, price: Decimal, ts: int, eid: int, volume: Decimal) -> None:
        self.open_ns = open_ns
        self.end_ns = end_ns
        self.open = self.high = self.low = self.close = price
        self.open_ts = self.high_ts = self.low_ts = self.close_ts = ts
        self.open_id = self.high_id = self.low_id = self.close_id = eid
        self.count = 1
        self.real_volume = volume

    def to_json(self) -> dict[str, Any]:
        return {
            "open_ns": self.open_ns,
            "end_ns": self.end_ns,
            "open": str(self.open),
            "open_ts": self.open_ts,
            "open_id": _id_to_str(self.open_id),
            "high": str(self.high),
            "high_ts": self.high_ts,
            "high_id": _id_to_str(self.high_id),
            "low": str(self.low),
            "low_ts": self.low_ts,
            "low_id": _id_to_str(self.low_id),
            "close": str(self.close),
            "close_ts": self.close_ts,
            "close_id": _id_to_str(self.close_id),
            "count": self.count,
            "real_volume": str(self.real_volume),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> _Bar:
        bar = cls.__new__(cls)
        bar.open_ns = int(d["open_ns"])
        bar.end_ns = int(d["end_ns"])
        bar.open = Decimal(d["open"])
        bar.open_ts = int(d["open_ts"])
        bar.open_id = _id_from_str(d["open_id"])
        bar.high = Decimal(d["high"])
        bar.high_ts = int(d["high_ts"])
        bar.high_id = _id_from_str(d["high_id"])
        bar.low = Decimal(d["low"])
        bar.low_ts = int(d["low_ts"])
        bar.low_id = _id_from_str(d["low_id"])
        bar.close = Decimal(d["close"])
        bar.close_ts = int(d["close_ts"])
        bar.close_id = _id_from_str(d["close_id"])
        bar.count = int(d["count"])
        bar.real_volume = Decimal(d["real_volume"])
        return bar

    def to_event(self, symbol: str, tf: Timeframe, ts_init: int) -> MarketBar:
        return MarketBar(
            event_id=bar_event_id(symbol, tf, self.open_ns),
            ts_event=self.open_ns,
            ts_init=ts_init,
            symbol=symbol,
            timeframe=tf,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.count,
            real_volume=self.real_volume,
        )


class _SymbolState:
    """Everything the builder knows about one symbol.

    ``seen`` holds ``event_id.int`` of accepted ticks; ``seen_fifo`` the same
    ids with their ts in arrival order, for pruning. Pruning pops from the
    front while the front is below the watermark, so an id can linger a little
    behind an older-arrived, newer-timestamped one; that is harmless because
    the late check runs before the duplicate check, and it keeps pruning O(1).
    ``bars[i]`` maps open time -> open bar of timeframe ``i`` (several can be
    open at once while out-of-order ticks are still acceptable).
    """

    __slots__ = ("bars", "held", "max_ts", "next_close", "seen", "seen_fifo", "watermark")

    def __init__(self, n_timeframes: int, lateness: int, max_ts: int = -1, held: int = _NONE) -> None:
        self.max_ts = max_ts
        #: Time of a tick far ahead of ``max_ts`` that has not moved it (yet), or ``_NONE``.
        self.held = held
        # With max_ts = -1 the watermark is negative: any ts >= 0 is acceptable.
        self.watermark = max_ts - lateness
        self.seen: set[int] = set()
        self.seen_fifo: deque[tuple[int, int]] = deque()
        self.bars: list[dict[int, _Bar]] = [{} for _ in range(n_timeframes)]
        #: Smallest ``end_ns`` of any open bar: lets ``add`` skip the close scan.
        self.next_close = _NEVER


def _id_to_str(eid: int) -> str:
    return f"{eid:032x}"


def _id_from_str(s: str) -> int:
    return int(s, 16)


class BarBuilder:
    """Streaming, event-time bar builder for any number of symbols.

    Feed ticks of a symbol in (roughly) partition order with ``add``; each call
    returns the bars that became final. ``snapshot``/``restore`` checkpoint the
    whole state so a replay after a crash emits identical bars with identical ids.
    """

    __slots__ = ("_lateness", "_max_lead", "_states", "_tf_nanos", "_timeframes", "stats")

    def __init__(
        self,
        timeframes: Sequence[Timeframe] = DEFAULT_TIMEFRAMES,
        allowed_lateness_ns: int = 2_000_000_000,
        max_lead_ns: int = DEFAULT_MAX_LEAD_NS,
    ) -> None:
        """
        :param timeframes: timeframes to build (duplicates ignored; kept shortest first).
        :param allowed_lateness_ns: how far behind the newest tick of its symbol a
            tick may be and still count. Bars close this long after their end.
        :param max_lead_ns: how far ahead of the newest tick of its symbol a tick may
            be and still move the watermark on its own; one further ahead waits for a
            second tick to confirm the jump (so one outlier makes at most
            ``max_lead_ns - allowed_lateness_ns`` of later ticks late).
        """
        tfs = sorted({Timeframe(tf) for tf in timeframes}, key=lambda tf: tf.nanos)
        if not tfs:
            raise ValueError("at least one timeframe is required")
        if allowed_lateness_ns < 0:
            raise ValueError(f"allowed_lateness_ns must be >= 0, got {allowed_lateness_ns}")
        if max_lead_ns < 0:
            raise ValueError(f"max_lead_ns must be >= 0, got {max_lead_ns}")
        self._max_lead = max_lead_ns
        self._timeframes: tuple[Timeframe, ...] = tuple(tfs)
        self._tf_nanos: tuple[int, ...] = tuple(tf.nanos for tf in tfs)
        self._lateness = allowed_lateness_ns
        self._states: dict[str, _SymbolState] = {}
        self.stats = BarBuilderStats()

    @property
    def timeframes(self) -> tuple[Timeframe, ...]:
        return self._timeframes

    @property
    def allowed_lateness_ns(self) -> int:
        return self._lateness

    @property
    def max_lead_ns(self) -> int:
        return self._max_lead

    def watermark(self, symbol: str) -> int | None:
        """Current watermark of ``symbol`` (ticks below it are late), or ``None`` if never seen."""
        st = self._states.get(symbol)
        return None if st is None else st.watermark

    # -- hot path -----------------------------------------------------------

    def add(self, tick: AnyTick, now_ns: int) -> AddResult:
        """Account one tick; return its outcome and the bars it made final.

        ``now_ns`` only stamps ``ts_init`` of the closed bars; it never affects
        what is built. Closed bars are ordered by (open time, timeframe length).
        """
        symbol = tick.symbol
        st = self._states.get(symbol)
        if st is None:
            st = self._states[symbol] = _SymbolState(len(self._tf_nanos), self._lateness)
        ts = tick.ts_event
        # Late is checked before duplicate: the verdict on an old re-delivery
        # then does not depend on whether its id has been pruned yet.
        if ts < st.watermark:
            self.stats.late += 1
            return AddResult(TickOutcome.LATE, [])
        eid = tick.event_id.int
        seen = st.seen
        if eid in seen:
            self.stats.duplicate += 1
            return AddResult(TickOutcome.DUPLICATE, [])
        seen.add(eid)
        st.seen_fifo.append((ts, eid))

        bid = tick.bid
        volume = tick.volume
        for tf_ns, bars in zip(self._tf_nanos, st.bars, strict=False):
            open_ns = ts - ts % tf_ns
            bar = bars.get(open_ns)
            if bar is None:
                end_ns = open_ns + tf_ns
                bars[open_ns] = _Bar(open_ns, end_ns, bid, ts, eid, volume)
                if end_ns < st.next_close:
                    st.next_close = end_ns
                continue
            # In order, ts > close_ts: one comparison each for open and close.
            if ts < bar.open_ts or (ts == bar.open_ts and eid < bar.open_id):
                bar.open = bid
                bar.open_ts = ts
                bar.open_id = eid
            if ts > bar.close_ts or (ts == bar.close_ts and eid > bar.close_id):
                bar.close = bid
                bar.close_ts = ts
                bar.close_id = eid
            # Common case (strictly inside the range) costs two comparisons.
            # The low check inside the high branch only matters for a flat bar
            # (bid == high == low), where the tie-break applies to both.
            if bid >= bar.high:
                if bid > bar.high or ts < bar.high_ts or (ts == bar.high_ts and eid < bar.high_id):
                    bar.high = bid
                    bar.high_ts = ts
                    bar.high_id = eid
                if bid <= bar.low and (ts < bar.low_ts or (ts == bar.low_ts and eid < bar.low_id)):
                    bar.low = bid
                    bar.low_ts = ts
                    bar.low_id = eid
            elif bid <= bar.low and (bid < bar.low or ts < bar.low_ts or (ts == bar.low_ts and eid < bar.low_id)):
                bar.low = bid
                bar.low_ts = ts
                bar.low_id = eid
            bar.count += 1
            # Always add, even zero: a zero like Decimal("0.00") still sets the
            # sum's exponent, and the batch reference sums every tick too.
            bar.real_volume += volume
        self.stats.accepted += 1

        if ts <= st.max_ts:
            return AddResult(TickOutcome.ACCEPTED, [])
        # Held only if also ahead of its own arrival (``ts_init``, stamped by the edge and carried
        # in the event, so a replay decides the same): a tick from a clock that runs ahead. A
        # sparse symbol, a market reopening or a backfill arrive after their event time and
        # move the watermark at once.
        if ts - st.max_ts > self._max_lead and st.max_ts >= 0 and ts - tick.ts_init > self._max_lead:
            ts = self._far_ahead(st, ts)
            if ts < 0:
                return AddResult(TickOutcome.ACCEPTED, [])
        elif st.held != _NONE and ts >= st.held:
            st.held = _NONE  # the stream reached the held tick: nothing is pending any more
        st.max_ts = ts
        wm = st.watermark = ts - self._lateness
        fifo = st.seen_fifo
        # Terminates without an emptiness check: this tick (ts >= wm) is in it.
        while fifo[0][0] < wm:
            seen.discard(fifo.popleft()[1])
        if wm < st.next_close:
            return AddResult(TickOutcome.ACCEPTED, [])
        return AddResult(TickOutcome.ACCEPTED, self._close(symbol, st, wm, now_ns))

    def _far_ahead(self, st: _SymbolState, ts: int) -> int:
        """The new ``max_ts`` after an accepted tick at ``ts`` far ahead of it, or ``_NONE`` to hold the tick.

        The first such tick is held. A second one confirms a jump to the earlier of the
        two; if the later is still far ahead of that, it is held in turn (a sparse stream
        thus moves its watermark one tick behind, never wrongly ahead).
        """
        held = st.held
        if held == _NONE:
            st.held = ts
            return _NONE
        early, late = (ts, held) if ts < held else (held, ts)
        if late - early > self._max_lead:
            st.held = late
            return early
        st.held = _NONE
        return late

    def _close(self, symbol: str, st: _SymbolState, wm: int, now_ns: int) -> list[MarketBar]:
        """Remove and return every bar of ``st`` whose end is <= ``wm`` (rare path)."""
        ready: list[tuple[int, int, Timeframe, _Bar]] = []
        next_close = _NEVER
        for tf, tf_ns, bars in zip(self._timeframes, self._tf_nanos, st.bars, strict=False):
            for open_ns in [o for o, b in bars.items() if b.end_ns <= wm]:
                ready.append((open_ns, tf_ns, tf, bars.pop(open_ns)))
            for bar in bars.values():
                if bar.end_ns < next_close:
                    next_close = bar.end_ns
        st.next_close = next_close
        ready.sort(key=lambda r: (r[0], r[1]))
        self.stats.bars_closed += len(ready)
        return [bar.to_event(symbol, tf, now_ns) for _, _, tf, bar in ready]

    # -- inspection -----------------------------------------------------------

    def symbols(self) -> list[str]:
        """Symbols the builder has state for."""
        return sorted(self._states)

    def open_bars(self, symbol: str, now_ns: int = 0) -> list[MarketBar]:
        """The bars of ``symbol`` still open (not final), as ``MarketBar`` for inspection.

        These are provisional: later ticks may still change them.
        """
        st = self._states.get(symbol)
        if st is None:
            return []
        out = [
            (bar.open_ns, tf_ns, bar.to_event(symbol, tf, now_ns))
            for tf, tf_ns, bars in zip(self._timeframes, self._tf_nanos, st.bars, strict=False)
            for bar in bars.values()
        ]
        out.sort(key=lambda r: (r[0], r[1]))
        return [ev for _, _, ev in out]

    # -- checkpointing ----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The complete state as a JSON-serialisable dict (Decimals and ids as strings).

        ``BarBuilder.restore(b.snapshot())`` behaves exactly like ``b`` from then on.
        """
        symbols: dict[str, Any] = {}
        for symbol, st in sorted(self._states.items()):
            symbols[symbol] = {
                "max_ts": st.max_ts,
                "held": st.held,
                # Arrival order is kept: pruning depends on it.
                "seen": [[ts, _id_to_str(eid)] for ts, eid in st.seen_fifo],
                "bars": {
                    tf.value: [bar.to_json() for bar in bars.values()]
                    for tf, bars in zip(self._timeframes, st.bars, strict=True)
                },
            }
        return {
            "version": SNAPSHOT_VERSION,
            "timeframes": [tf.value for tf in self._timeframes],
            "allowed_lateness_ns": self._lateness,
            "max_lead_ns": self._max_lead,
            "stats": asdict(self.stats),
            "symbols": symbols,
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any]) -> BarBuilder:
        """Rebuild a builder from ``snapshot()`` output (also after a JSON round trip)."""
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported BarBuilder snapshot version {snapshot.get('version')!r}")
        # "max_lead_ns" and "held" came later in version 1: a snapshot without them holds no tick.
        builder = cls(
            [Timeframe(v) for v in snapshot["timeframes"]],
            int(snapshot["allowed_lateness_ns"]),
            int(snapshot.get("max_lead_ns", DEFAULT_MAX_LEAD_NS)),
        )
        builder.stats = BarBuilderStats(**{k: int(v) for k, v in snapshot["stats"].items()})
        n = len(builder._timeframes)
        for symbol, data in snapshot["symbols"].items():
            st = _SymbolState(n, builder._lateness, int(data["max_ts"]), int(data.get("held", _NONE)))
            for ts, sid in data["seen"]:
                eid = _id_from_str(sid)
                st.seen.add(eid)
                st.seen_fifo.append((int(ts), eid))
            for i, tf in enumerate(builder._timeframes):
                for bd in data["bars"].get(tf.value, []):
                    bar = _Bar.from_json(bd)
                    st.bars[i][bar.open_ns] = bar
                    if bar.end_ns < st.next_close:
                        st.next_close = bar.end_ns
            builder._states[symbol] = st
        return builder


def bars_from_ticks(
    ticks: Iterable[MarketTick], timeframes: Sequence[Timeframe] = DEFAULT_TIMEFRAMES, *, now_ns: int = 0
) -> list[MarketBar]:
    """Reference batch computation: every bar (complete or not) of ``ticks``, computed directly.

    Sorts by ``(ts_event, event_id)``, drops repeated event ids (the first in
    that order wins), groups by ``(symbol, timeframe, floor(ts / tf))``.
    Returned ordered by (symbol, open time, timeframe length). Agrees exactly
    with ``BarBuilder``'s closed bars when the builder dropped no tick as late (a
    held far-ahead tick is in its bars in both).
    """
    ordered = sorted(ticks, key=lambda t: (t.ts_event, t.event_id.int))
    unique: list[MarketTick] = []
    seen: set[uuid.UUID] = set()
    for t in ordered:
        if t.event_id not in seen:
            seen.add(t.event_id)
            unique.append(t)
    tfs = sorted({Timeframe(tf) for tf in timeframes}, key=lambda tf: tf.nanos)
    groups: dict[tuple[str, int, Timeframe], list[MarketTick]] = {}
    for t in unique:  # in (ts, id) order, so each group is too
        for tf in tfs:
            open_ns = t.ts_event - t.ts_event % tf.nanos
            groups.setdefault((t.symbol, open_ns, tf), []).append(t)
    bars = []
    for (symbol, open_ns, tf), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2].nanos)):
        bids = [t.bid for t in group]
        # max/min return the first of equal values, i.e. the earliest (ts, id),
        # and the sum starts from the first volume (not Decimal(0)) so that the
        # exponent of the result matches the streaming builder's.
        bars.append(
            MarketBar(
                event_id=bar_event_id(symbol, tf, open_ns),
                ts_event=open_ns,
                ts_init=now_ns,
                symbol=symbol,
                timeframe=tf,
                open=bids[0],
                high=max(bids),
                low=min(bids),
                close=bids[-1],
                volume=len(group),
                real_volume=sum((t.volume for t in group[1:]), group[0].volume),
            )
        )
    return bars
