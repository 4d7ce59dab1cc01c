"""The last feature vectors of every symbol and timeframe: what a sequence model's window is cut from.

Kept in memory (the newest ``bars`` per series, in bar order) and in PostgreSQL
(``ml_deep_learning.recent_vectors``), written before the consumer's offsets commit: a restarted
service loads them and predicts from a full window at once, where an empty buffer would wait
``window`` bars (32 minutes on M1). A redelivered vector finds itself in the buffer, so it gets
the same window, hence the same prediction, again.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from shared.events import FeatureVector, Timeframe

Series = tuple[str, Timeframe]


@dataclass(frozen=True)
class Row:
    """One feature vector, as a window needs it."""

    ts: int
    event_id: uuid.UUID
    names: tuple[str, ...]
    values: tuple[float | None, ...]


class Windows:
    """The newest ``bars`` vectors of every series, persisted in ``ml_deep_learning.recent_vectors``."""

    def __init__(self, pool: asyncpg.Pool, bars: int) -> None:
        self.pool = pool
        self.bars = bars
        self.series: dict[Series, list[Row]] = {}

    async def load(self) -> int:
        """The stored vectors, into memory (at start); how many."""
        rows = await self.pool.fetch(
            """SELECT symbol, timeframe, ts_event, event_id, names, vals FROM (
                   SELECT *, row_number() OVER (PARTITION BY symbol, timeframe ORDER BY ts_event DESC) AS newest
                   FROM ml_deep_learning.recent_vectors) AS r
               WHERE newest <= $1 ORDER BY symbol, timeframe, ts_event""",
            self.bars,
        )
        self.series = {}
        for r in rows:
            key = (r["symbol"], Timeframe(r["timeframe"]))
            self.series.setdefault(key, []).append(
                Row(r["ts_event"], r["event_id"], tuple(r["names"]), tuple(r["vals"]))
            )
        return len(rows)

    def add(self, vector: FeatureVector) -> None:
        """Keep ``vector`` in its series' bar order (a vector of a bar already kept is left as it was)."""
        rows = self.series.setdefault((vector.symbol, vector.timeframe), [])
        at = bisect.bisect_left(rows, vector.ts_event, key=lambda r: r.ts)
        if at < len(rows) and rows[at].ts == vector.ts_event:
            return
        names = tuple(vector.features)
        rows.insert(at, Row(vector.ts_event, vector.event_id, names, tuple(vector.features[n] for n in names)))
        del rows[: max(0, len(rows) - self.bars)]

    def ending_at(self, vector: FeatureVector, length: int) -> list[Row]:
        """Up to ``length`` rows of the vector's series ending at its bar, oldest first (none if not kept)."""
        rows = self.series.get((vector.symbol, vector.timeframe), [])
        at = bisect.bisect_left(rows, vector.ts_event, key=lambda r: r.ts)
        if at == len(rows) or rows[at].ts != vector.ts_event:
            return []
        return rows[max(0, at - length + 1) : at + 1]

    async def persist(self, vectors: Sequence[FeatureVector]) -> None:
        """Store ``vectors`` (idempotent) and drop what fell out of memory's window."""
        if not vectors:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO ml_deep_learning.recent_vectors
                       (symbol, timeframe, ts_event, event_id, feature_set, names, vals)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
                [
                    (
                        v.symbol,
                        v.timeframe.value,
                        v.ts_event,
                        v.event_id,
                        v.feature_set,
                        list(v.features),
                        list(v.features.values()),
                    )
                    for v in vectors
                ],
            )
            for symbol, timeframe in {(v.symbol, v.timeframe) for v in vectors}:
                kept = self.series.get((symbol, timeframe))
                if kept:
                    await conn.execute(
                        """DELETE FROM ml_deep_learning.recent_vectors
                           WHERE symbol = $1 AND timeframe = $2 AND ts_event < $3""",
                        symbol,
                        timeframe.value,
                        kept[0].ts,
                    )


__all__ = ["Row", "Windows"]
