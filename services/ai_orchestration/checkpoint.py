"""The series state in PostgreSQL: loaded once at start, written for the series that changed."""

from __future__ import annotations

import json

import asyncpg


class SeriesStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def load(self) -> dict[tuple[str, str], dict]:
        rows = await self._pool.fetch("SELECT symbol, timeframe, state FROM ai_orchestration.series_state")
        return {(r["symbol"], r["timeframe"]): json.loads(r["state"]) for r in rows}

    async def save(self, states: dict[tuple[str, str], dict]) -> None:
        if not states:
            return
        await self._pool.executemany(
            """INSERT INTO ai_orchestration.series_state (symbol, timeframe, state, updated_at)
               VALUES ($1, $2, $3::jsonb, now())
               ON CONFLICT (symbol, timeframe) DO UPDATE SET state = EXCLUDED.state, updated_at = now()""",
            [(s, tf, json.dumps(state)) for (s, tf), state in states.items()],
        )
