"""Position drift: where the engine's net positions differ from what the venue holds.

After every fill is applied the two agree; a difference means fills the engine has not seen
(a report lost and not yet reconciled) or positions opened outside the platform (an MT5 terminal
traded by hand). The engine does not correct it on its own: it reports it (log, API) for the
operator and for the reconciliation tests, which require none after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from services.trading_engine.orders.models import decimal_text
from services.trading_engine.venues.base import Venue, VenueTimeout, VenueUnreachable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PositionDrift:
    account_id: str
    symbol: str
    engine: Decimal
    venue: Decimal

    def public(self) -> dict[str, str | None]:
        return {
            "account_id": self.account_id,
            "symbol": self.symbol,
            "engine": decimal_text(self.engine),
            "venue": decimal_text(self.venue),
        }


async def position_drift(
    pool: asyncpg.Pool, venues: Mapping[str, Venue], tenant: str | None = None
) -> list[PositionDrift]:
    """Every (account, symbol) whose net quantity differs between the engine and its venue (the accounts of
    ``tenant``, or all); accounts whose venue cannot answer now are left out."""
    async with pool.acquire() as conn:
        accounts = await conn.fetch(
            "SELECT id, venue FROM trading.accounts WHERE $1::text IS NULL OR tenant = $1 ORDER BY id", tenant
        )
        rows = await conn.fetch(
            "SELECT account_id, symbol, quantity FROM trading.positions WHERE quantity <> 0"
            " AND ($1::text IS NULL OR tenant = $1)",
            tenant,
        )
    ours: dict[tuple[str, str], Decimal] = {(r["account_id"], r["symbol"]): r["quantity"] for r in rows}
    drift = []
    for account in accounts:
        venue = venues.get(account["venue"])
        if venue is None:
            continue
        try:
            held = await venue.positions(account["id"])
        except (VenueUnreachable, VenueTimeout):
            log.info("positions of %s: the %s venue did not answer", account["id"], account["venue"])
            continue
        theirs = {p.symbol: p.quantity for p in held}
        mine = {symbol: qty for (acc, symbol), qty in ours.items() if acc == account["id"]}
        for symbol in sorted(set(theirs) | set(mine)):
            engine_qty, venue_qty = mine.get(symbol, Decimal(0)), theirs.get(symbol, Decimal(0))
            if engine_qty != venue_qty:
                drift.append(PositionDrift(account["id"], symbol, engine_qty, venue_qty))
    return drift
