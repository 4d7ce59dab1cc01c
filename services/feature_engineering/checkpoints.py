"""Feature states in PostgreSQL: one row per (symbol, timeframe, feature set)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass(frozen=True)
class SavedState:
    last_open_ns: int
    state: dict[str, Any]


class FeatureCheckpoints:
    """``load`` and ``save`` the state of a series; a save never moves a series backwards."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def load(self, symbol: str, timeframe: str, feature_set: str) -> SavedState | None:
        row = await self._pool.fetchrow(
            "SELECT last_open_ns, state FROM feature_engineering.feature_states "
            "WHERE symbol = $1 AND timeframe = $2 AND feature_set = $3",
            symbol,
            timeframe,
            feature_set,
        )
        return None if row is None else SavedState(row["last_open_ns"], json.loads(row["state"]))

    async def save(self, symbol: str, timeframe: str, feature_set: str, last_open_ns: int, state: dict) -> None:
        # Guarded: two instances during a rebalance, or a stale writer, cannot rewind a series.
        await self._pool.execute(
            "INSERT INTO feature_engineering.feature_states AS s "
            "(symbol, timeframe, feature_set, last_open_ns, state) VALUES ($1, $2, $3, $4, $5::jsonb) "
            "ON CONFLICT (symbol, timeframe, feature_set) DO UPDATE SET last_open_ns = EXCLUDED.last_open_ns, "
            "state = EXCLUDED.state, updated_at = now() WHERE s.last_open_ns < EXCLUDED.last_open_ns",
            symbol,
            timeframe,
            feature_set,
            last_open_ns,
            json.dumps(state),
        )
