"""Market data in ClickHouse: the SQL lives here and nowhere else."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import orjson
from aiokafka import ConsumerRecord

from shared.clickhouse import ClickHouse, literal
from shared.events import MarketBar, Timeframe
from shared.tick_decoder import AnyTick

TICK_COLUMNS = ("symbol", "ts", "event_id", "bid", "ask", "last", "volume", "flags", "source", "received_at")
BAR_COLUMNS = (
    "symbol",
    "timeframe",
    "ts",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "real_volume",
    "event_id",
    "built_at",
)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _utc(ns: int) -> dt.datetime:
    """Exact to the microsecond (no float rounding), which is what DateTime64(6) keeps."""
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


#: ``built_at`` of a bar stored from history (``insert_missing_bars``): older than any live bar's.
HISTORY_BUILT_AT = _EPOCH


def _bar_row(b: MarketBar, built_at: dt.datetime) -> tuple:
    """A bar as a row of ``BAR_COLUMNS``."""
    return (
        b.symbol,
        b.timeframe.value,
        _utc(b.ts_event),
        b.open,
        b.high,
        b.low,
        b.close,
        b.volume,
        b.real_volume,
        b.event_id,
        built_at,
    )


def tick_row(t: AnyTick) -> tuple:
    """A tick as a row of ``TICK_COLUMNS``."""
    return (t.symbol, _utc(t.ts_event), t.event_id, t.bid, t.ask, t.last, t.volume, t.flags, t.source, _utc(t.ts_init))


def _tick_key(t: AnyTick) -> tuple[str, int, int]:
    """The key of a tick's row, ``(symbol, ts, event_id)``: ts in µs as stored, the id as an int (cheaper than text)."""
    return (t.symbol, t.ts_event // 1000, t.event_id.int)


@dataclass(frozen=True, slots=True)
class BarRow:
    """A stored bar as the API serves it; ``ts_ms`` is the open time in epoch milliseconds.

    ``json`` is the bar's JSON object, rendered once when the row is made: the bars
    API answers mostly from memory, and rendering 100 bars per request (datetime
    formatting, Decimal -> float) was half of its CPU time.
    """

    ts_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    real_volume: Decimal
    json: bytes = field(default=b"", init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Decimal -> float for JSON numbers: bar prices carry at most 8 decimals, which
        # a double represents and prints back exactly.
        object.__setattr__(
            self,
            "json",
            orjson.dumps(
                {
                    "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.ts_ms // 1000)),
                    "open": float(self.open),
                    "high": float(self.high),
                    "low": float(self.low),
                    "close": float(self.close),
                    "volume": self.volume,
                    "real_volume": float(self.real_volume),
                }
            ),
        )

    @classmethod
    def of(cls, bar: MarketBar) -> BarRow:
        return cls(bar.ts_event // 1_000_000, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.real_volume)


def render_bars(rows: Sequence[BarRow]) -> bytes:
    """The bars API's JSON array: the rows' pre-rendered objects, joined."""
    return b"[" + b",".join([row.json for row in rows]) + b"]"


class MarketRepository:
    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch
        #: Per symbol, the newest stored tick time (µs; -1: none), read from ``tick_summary`` once,
        #: then kept by this process's own inserts. Exact while this process is the symbol's only
        #: writer, which the consumer group makes it until a rebalance: ``forget_newest`` then.
        self._newest: dict[str, int] = {}

    def forget_newest(self) -> None:
        """Drop what this process knows of the newest stored ticks (another writer may store them now)."""
        self._newest.clear()

    async def insert_refused(self, group: str, reason: str, refused: Sequence[tuple[ConsumerRecord, str]]) -> None:
        """Keep records the store refused (with the store's error) in ``market.refused_events``."""
        await self.ch.insert(
            "market.refused_events",
            ("consumer_group", "topic", "partition", "offset", "reason", "error", "key", "value"),
            [
                (
                    group,
                    r.topic,
                    r.partition,
                    r.offset,
                    reason,
                    error,
                    (r.key or b"").decode(errors="replace"),
                    (r.value or b"").decode(errors="replace"),
                )
                for r, error in refused
            ],
        )

    async def insert_ticks(self, ticks: Sequence[AnyTick]) -> None:
        """Store the ticks that are not stored yet, each once: what ``tick_summary`` counts is ticks.

        A tick is its row's key ``(symbol, ts, event_id)``. Readers with ``FINAL`` see a
        tick stored twice once anyway, but the summary's count would see it twice (a
        tick re-sent after a broker restart, or replayed after a crash of this service).
        When every tick is stored already, the last one is written again, marked
        ``rewrite`` (the summary does not count it): an insert always writes to
        ``market.ticks``, which the store's control write relies on (``storing.py``).
        """
        if not ticks:
            return
        fresh = await self._unstored(ticks)
        try:
            if fresh:
                await self.ch.insert("market.ticks", TICK_COLUMNS, [tick_row(t) for t in fresh])
            else:
                await self.ch.insert("market.ticks", (*TICK_COLUMNS, "rewrite"), [(*tick_row(ticks[-1]), 1)])
        except BaseException:
            for t in ticks:  # the insert may have stored some of them: read the summary again
                self._newest.pop(t.symbol, None)
            raise
        for t in fresh:
            ts = t.ts_event // 1000
            if ts > self._newest.get(t.symbol, -1):
                self._newest[t.symbol] = ts

    async def _unstored(self, ticks: Sequence[AnyTick]) -> list[AnyTick]:
        """``ticks`` without the ones already stored (or repeated in ``ticks``), in their order.

        Only a tick at or before its symbol's newest stored time can be stored already;
        a live stream is past it, so this usually reads nothing: that time is read from
        ``tick_summary`` (a few rows) once per symbol and then kept in memory (a read per
        batch cost the bench's tick -> bar p99 ~10-30 ms on two cores). The others are
        looked up in the primary-key range they span per symbol: the read grows with that
        span (a client's unconfirmed window), not with history.
        Exact while one writer stores a symbol at a time, as the consumer group makes it
        (a symbol is a partition key); two writers racing on one tick could both store it.
        And an insert that fails after ``market.ticks`` took its rows, before the view did
        (ClickHouse does not make them atomic), leaves those ticks uncounted on its retry.
        """
        unique: dict[tuple[str, int, int], AnyTick] = {}
        for t in ticks:
            unique.setdefault(_tick_key(t), t)
        unknown = {t.symbol for t in ticks} - self._newest.keys()
        if unknown:
            names = ",".join(literal(s) for s in unknown)
            read = dict(
                await self.ch.rows(
                    f"SELECT symbol, toUnixTimestamp64Micro(max(last_ts)) FROM market.tick_summary "
                    f"WHERE symbol IN ({names}) GROUP BY symbol"
                )
            )
            self._newest |= {symbol: int(read.get(symbol, -1)) for symbol in unknown}
        newest = self._newest
        maybe = [key for key in unique if key[1] <= newest[key[0]]]
        if not maybe:
            return list(unique.values())
        spans: dict[str, tuple[int, int]] = {}
        for symbol, ts, _ in maybe:
            first, last = spans.get(symbol, (ts, ts))
            spans[symbol] = (min(first, ts), max(last, ts))
        ranges = " OR ".join(
            f"(symbol = {literal(s)} AND ts BETWEEN fromUnixTimestamp64Micro({first}) "
            f"AND fromUnixTimestamp64Micro({last}))"
            for s, (first, last) in spans.items()
        )
        stored = {
            (r[0], int(r[1]), uuid.UUID(r[2]).int)
            for r in await self.ch.rows(
                f"SELECT symbol, toUnixTimestamp64Micro(ts), toString(event_id) FROM market.ticks WHERE {ranges}"
            )
        }
        return [t for key, t in unique.items() if key not in stored]

    async def insert_bars(self, bars: Sequence[MarketBar]) -> None:
        await self.ch.insert("market.bars", BAR_COLUMNS, [_bar_row(b, _utc(b.ts_init)) for b in bars])

    async def insert_missing_bars(self, bars: Sequence[MarketBar]) -> list[MarketBar]:
        """Store the historical ``bars`` (one series) whose open time is not stored yet; returns them.

        History never replaces a stored bar: a live bar is what live features were computed
        from. The rows it writes carry ``built_at`` = the epoch (``HISTORY_BUILT_AT``), the
        lowest version ``ReplacingMergeTree(built_at)`` can see, so a live bar of the same
        minute stored later (or racing this insert) replaces the historical one, never the
        reverse. The caller serialises imports (two racing on one key would both insert).
        """
        if not bars:
            return []
        symbol, timeframe = bars[0].symbol, bars[0].timeframe
        first = min(b.ts_event for b in bars) // 1_000_000
        last = max(b.ts_event for b in bars) // 1_000_000
        stored = {
            int(r[0])
            for r in await self.ch.rows(
                f"SELECT toUnixTimestamp64Milli(ts) FROM market.bars WHERE symbol = {literal(symbol)} "
                f"AND timeframe = {literal(timeframe.value)} AND ts BETWEEN fromUnixTimestamp64Milli({first}) "
                f"AND fromUnixTimestamp64Milli({last})"
            )
        }
        fresh: dict[int, MarketBar] = {}
        for b in bars:
            ts_ms = b.ts_event // 1_000_000
            if ts_ms not in stored:
                fresh.setdefault(ts_ms, b)
        if fresh:
            await self.ch.insert("market.bars", BAR_COLUMNS, [_bar_row(b, HISTORY_BUILT_AT) for b in fresh.values()])
        return list(fresh.values())

    async def bars(
        self, symbol: str, timeframe: Timeframe, *, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[BarRow]:
        """Bars oldest first: from ``start`` forward if given, else the latest ``limit`` up to ``end``."""
        where = [f"symbol = {literal(symbol)}", f"timeframe = {literal(timeframe.value)}"]
        if start_ms is not None:
            where.append(f"ts >= fromUnixTimestamp64Milli({int(start_ms)})")
        if end_ms is not None:
            where.append(f"ts <= fromUnixTimestamp64Milli({int(end_ms)})")
        order = "ASC" if start_ms is not None else "DESC"
        sql = (
            f"SELECT toUnixTimestamp64Milli(ts), toString(open), toString(high), toString(low), "
            f"toString(close), volume, toString(real_volume) FROM market.bars FINAL "
            f"WHERE {' AND '.join(where)} ORDER BY ts {order} LIMIT {int(limit)}"
        )
        rows = [
            BarRow(int(r[0]), Decimal(r[1]), Decimal(r[2]), Decimal(r[3]), Decimal(r[4]), int(r[5]), Decimal(r[6]))
            for r in await self.ch.rows(sql)
        ]
        return rows if order == "ASC" else rows[::-1]

    async def ticks(self, symbol: str, *, start_ms: int, end_ms: int | None, limit: int) -> list[dict]:
        """Stored ticks of ``symbol`` from ``start_ms`` (inclusive) to ``end_ms`` (exclusive), oldest first,
        each once (``FINAL``): a range of the table's primary key (symbol, ts), however long the history."""
        where = [f"symbol = {literal(symbol)}", f"ts >= fromUnixTimestamp64Milli({int(start_ms)})"]
        if end_ms is not None:
            where.append(f"ts < fromUnixTimestamp64Milli({int(end_ms)})")
        sql = (
            "SELECT toUnixTimestamp64Micro(ts), toString(event_id), toString(bid), toString(ask), "
            "if(isNull(last), NULL, toString(last)), toString(volume), flags, source "
            f"FROM market.ticks FINAL WHERE {' AND '.join(where)} ORDER BY ts, event_id LIMIT {int(limit)}"
        )
        return [
            {
                "time_msc": int(r[0]) // 1000,
                "event_id": r[1],
                "bid": r[2],
                "ask": r[3],
                "last": r[4],
                "volume": r[5],
                "flags": int(r[6]),
                "source": r[7],
            }
            for r in await self.ch.rows(sql)
        ]

    async def symbols(self) -> list[dict]:
        """Every symbol with ticks: how many, first and last tick time, and its bar timeframes.

        Read from the summaries that materialized views keep on insert (migrations 003 and
        005): a few rows per symbol, however long the history. ``ticks`` counts distinct
        ticks, since ``insert_ticks`` stores each once.
        """
        rows = await self.ch.rows(
            "SELECT symbol, sum(ticks), toUnixTimestamp64Milli(min(first_ts)), toUnixTimestamp64Milli(max(last_ts)) "
            "FROM market.tick_summary GROUP BY symbol ORDER BY symbol"
        )
        timeframes = await self.ch.rows(
            "SELECT symbol, groupUniqArray(timeframe) FROM market.bar_series GROUP BY symbol"
        )
        by_symbol = {s: sorted(tfs, key=lambda t: Timeframe(t).seconds) for s, tfs in timeframes}
        return [
            {
                "symbol": s,
                "ticks": int(n),
                "first_tick_ms": int(a),
                "last_tick_ms": int(b),
                "timeframes": by_symbol.get(s, []),
            }
            for s, n, a, b in rows
        ]

    async def counts(self) -> dict:
        ticks = await self.ch.rows("SELECT count() FROM market.ticks FINAL")
        bars = await self.ch.rows("SELECT timeframe, count() FROM market.bars FINAL GROUP BY timeframe")
        return {"ticks": int(ticks[0][0]), "bars": {tf: int(n) for tf, n in bars}}
