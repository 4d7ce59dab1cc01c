"""Verdicts in PostgreSQL: one row per signal, written before the verdict is published."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from shared.events import RejectedSignal, ValidatedSignal


class VerdictStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def stored_event(self, signal_id: uuid.UUID) -> str | None:
        """The verdict event already decided for ``signal_id`` (its JSON), if any."""
        row = await self._pool.fetchrow(
            "SELECT event::text FROM pattern_validator.verdicts WHERE signal_id = $1", signal_id
        )
        return None if row is None else str(row[0])

    async def insert(self, verdict: ValidatedSignal | RejectedSignal, fingerprint: str | None) -> bool:
        """Store the verdict; ``False`` if one for the signal was stored already (the first one stands)."""
        signal = verdict.signal
        validated = isinstance(verdict, ValidatedSignal)
        reasons = verdict.notes if isinstance(verdict, ValidatedSignal) else verdict.reasons
        models = [
            {"model_id": str(c.model_id) if c.model_id else None, "name": c.model_name, "version": c.model_version,
             "kind": c.model_kind, "weight": c.weight}
            for c in signal.contributions
        ]  # fmt: skip
        status = await self._pool.execute(
            """INSERT INTO pattern_validator.verdicts (signal_id, verdict_id, symbol, timeframe, bar_open_ns, verdict,
                   direction, action, confidence, strength, strategy, reasons, models, fingerprint, event)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13::jsonb, $14, $15::jsonb)
               ON CONFLICT (signal_id) DO NOTHING""",
            signal.event_id,
            verdict.event_id,
            signal.symbol,
            signal.timeframe.value,
            signal.ts_event,
            "validated" if validated else "rejected",
            signal.direction,
            signal.action,
            signal.confidence,
            signal.strength,
            signal.strategy,
            json.dumps([r.model_dump() for r in reasons]),
            json.dumps(models),
            fingerprint,
            verdict.model_dump_json(),
        )
        return bool(status.endswith(" 1"))

    async def recent_fingerprints(self, since_ns: int) -> list[tuple[str, int]]:
        rows = await self._pool.fetch(
            """SELECT fingerprint, bar_open_ns FROM pattern_validator.verdicts
               WHERE fingerprint IS NOT NULL AND bar_open_ns >= $1 ORDER BY bar_open_ns""",
            since_ns,
        )
        return [(r["fingerprint"], r["bar_open_ns"]) for r in rows]

    async def latest(self, symbol: str, limit: int) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT signal_id, verdict_id, symbol, timeframe, bar_open_ns, verdict, direction, action,
                      confidence, strength, strategy, reasons::text, models::text, decided_at
               FROM pattern_validator.verdicts WHERE symbol = $1
               ORDER BY bar_open_ns DESC, decided_at DESC LIMIT $2""",
            symbol,
            limit,
        )
        out = []
        for r in rows:
            reasons = json.loads(r["reasons"])
            out.append(
                {
                    "signal_id": str(r["signal_id"]),
                    "verdict_id": str(r["verdict_id"]),
                    "symbol": r["symbol"],
                    "timeframe": r["timeframe"],
                    "bar_open_ns": r["bar_open_ns"],
                    "verdict": r["verdict"],
                    # Rejected: the reasons it was rejected for; validated: the notes it passed with.
                    "reasons": reasons if r["verdict"] == "rejected" else [],
                    "notes": reasons if r["verdict"] == "validated" else [],
                    "direction": r["direction"],
                    "action": r["action"],
                    "confidence": r["confidence"],
                    "strength": r["strength"],
                    "strategy": r["strategy"],
                    "models": json.loads(r["models"]),
                    "decided_at": r["decided_at"].isoformat(),
                }
            )
        return out
