"""History in: ``POST /api/v1/ingest/bars`` checks bars of one series and has database-service store them.

Historical bars (a terminal's ``copy_rates_range`` through the client tier, ``hats import-bars``)
do not go on ``market.bars.v1``: that topic is the live stream feature-engineering reads in
order. They go straight to the store (``bar_store.py``), which keeps only bars whose (symbol,
timeframe, open time) it does not hold yet, so a second import of the same range adds nothing.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header

from services.data_bridge.state import Bridge
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import MARKET_WRITE
from shared.bar_history import BarBatch, ImportResult, check_bars, problem_errors
from shared.kit.problems import Problem

router = APIRouter(prefix="/api/v1/ingest", tags=["ingest"])


@router.post(
    "/bars",
    response_model=ImportResult,
    operation_id="ingest_bars",
    summary="Store historical bars of one series; bars already stored are kept as they are",
    responses={413: {"description": "more bars than DATA_BRIDGE_MAX_BARS_PER_REQUEST"}},
)
async def ingest_bars(
    batch: BarBatch,
    bridge: Bridge,
    _: Annotated[Principal, require(MARKET_WRITE)],
    authorization: Annotated[str, Header()],
) -> ImportResult:
    """All or nothing: 422 names every refused row (``errors``: row, field, msg) and stores none.

    ``inserted`` bars were stored now; ``already_stored`` ones had a bar of the same (symbol,
    timeframe, open time) stored already (a live one, or an earlier import), which is kept.
    """
    store = bridge.history
    if len(batch.bars) > store.max_bars:
        raise Problem(413, f"at most {store.max_bars} bars per request")
    errors = check_bars(batch, now_s=time.time(), max_future_s=store.max_future_s, symbols=store.symbols)
    if errors:
        store.bars.labels("refused").inc(len(errors))
        detail, items = problem_errors(errors)
        raise Problem(422, detail, errors=items)
    return await store.store(batch, authorization)
