"""History into the store: ``POST /api/v1/market/bars/import``, called by data-bridge's bar ingest.

Bars from a terminal's history or an MT5 export are stored only where their (symbol,
timeframe, open time) is not stored yet, and merged into this instance's bars cache
(``BarCache.merge_history``), since they never travel on ``market.bars.v1``.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter

from services.database_service.repository import BarRow
from services.database_service.state import Market
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import MARKET_WRITE
from shared.bar_history import (
    DEFAULT_MAX_BARS_PER_REQUEST,
    BarBatch,
    ImportResult,
    check_bars,
    market_bars,
    problem_errors,
)
from shared.events import now_ns
from shared.kit.problems import Problem

router = APIRouter(prefix="/api/v1/market", tags=["market"])


@router.post(
    "/bars/import",
    response_model=ImportResult,
    operation_id="import_bars",
    summary="Store historical bars of one series where none is stored yet (data-bridge's bar ingest calls it)",
)
async def import_bars(batch: BarBatch, market: Market, _: Annotated[Principal, require(MARKET_WRITE)]) -> ImportResult:
    """All or nothing: a refused row (422, each one named) stores none. A stored bar is never replaced."""
    if len(batch.bars) > DEFAULT_MAX_BARS_PER_REQUEST:
        raise Problem(413, f"at most {DEFAULT_MAX_BARS_PER_REQUEST} bars per request")
    # The edge (data-bridge) has checked them against its own clock and universe already; the
    # rules are checked again because this route is reachable through the gateway too.
    errors = check_bars(batch, now_s=time.time())
    if errors:
        detail, items = problem_errors(errors)
        raise Problem(422, detail, errors=items)
    bars = market_bars(batch, now_ns())
    # One import at a time: the look-up of stored keys and the insert must not interleave with
    # another import of the same keys, or both would insert and both count them as inserted.
    async with market.history_lock:
        fresh = await market.repo.insert_missing_bars(bars)
        market.cache.merge_history((batch.symbol, batch.timeframe), [BarRow.of(b) for b in fresh])
    return ImportResult(inserted=len(fresh), already_stored=len(bars) - len(fresh))
