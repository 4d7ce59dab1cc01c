"""database-service HTTP API, at the paths the gateway will route by prefix."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response

from services.database_service.repository import render_bars
from services.database_service.state import Market
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import MARKET_READ
from shared.events import Symbol, Timeframe
from shared.kit.problems import Problem

router = APIRouter(prefix="/api/v1/market", tags=["market"])


def _ms(value: dt.datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)  # naive times are UTC, as everywhere in the platform
    return int(value.timestamp() * 1000)


def _window(
    start: dt.datetime | None, end: dt.datetime | None, limit: int, most: int, what: str
) -> tuple[int | None, int | None]:
    """``start`` and ``end`` in epoch ms, after the checks every range query makes (422 otherwise)."""
    if limit > most:
        raise Problem(422, f"limit: at most {most} {what} per request")
    start_ms, end_ms = _ms(start), _ms(end)
    if start_ms is not None and end_ms is not None and end_ms < start_ms:
        raise Problem(422, "end: must not be before start")
    return start_ms, end_ms


@router.get("/bars", operation_id="list_bars", summary="OHLC bars of one symbol and timeframe, oldest first")
async def list_bars(
    market: Market,
    _: Annotated[Principal, require(MARKET_READ)],
    symbol: Annotated[Symbol, Query(description="e.g. EURUSD")],
    timeframe: Timeframe = Timeframe.M1,
    start: Annotated[dt.datetime | None, Query(description="first bar open time (ISO 8601, UTC)")] = None,
    end: Annotated[dt.datetime | None, Query(description="last bar open time (ISO 8601, UTC)")] = None,
    limit: Annotated[int, Query(ge=1)] = 100,
) -> Response:
    """From ``start`` forward when given; otherwise the latest ``limit`` bars up to ``end`` (or now)."""
    start_ms, end_ms = _window(start, end, limit, market.settings.max_bars_per_request, "bars")
    rows = await market.bars(symbol, timeframe, start_ms=start_ms, end_ms=end_ms, limit=limit)
    return Response(render_bars(rows), media_type="application/json")


@router.get("/ticks", operation_id="list_ticks", summary="Stored ticks of one symbol, oldest first, each once")
async def list_ticks(
    market: Market,
    _: Annotated[Principal, require(MARKET_READ)],
    symbol: Annotated[Symbol, Query(description="e.g. EURUSD")],
    start: Annotated[dt.datetime, Query(description="first tick time, inclusive (ISO 8601, UTC)")],
    end: Annotated[dt.datetime | None, Query(description="end, exclusive (ISO 8601, UTC)")] = None,
    limit: Annotated[int, Query(ge=1)] = 1000,
) -> Response:
    """Page forward by asking again from the last tick's time (ticks at one instant come in id order)."""
    start_ms, end_ms = _window(start, end, limit, market.settings.max_ticks_per_request, "ticks")
    assert start_ms is not None  # start is required here
    rows = await market.repo.ticks(symbol, start_ms=start_ms, end_ms=end_ms, limit=limit)
    return Response(orjson.dumps(rows), media_type="application/json")


@router.get("/symbols", operation_id="list_symbols", summary="Symbols with stored data")
async def list_symbols(market: Market, _: Annotated[Principal, require(MARKET_READ)]) -> Response:
    """Per symbol: ``ticks`` stored (distinct ticks: one re-sent or redelivered is not counted again),
    ``first_tick_ms`` and ``last_tick_ms`` (epoch ms), and the ``timeframes`` it has bars in."""
    return Response(orjson.dumps(await market.repo.symbols()), media_type="application/json")


@router.get("/stats", operation_id="market_stats", summary="Row counts of the market store")
async def market_stats(market: Market, _: Annotated[Principal, require(MARKET_READ)]) -> Response:
    return Response(orjson.dumps(await market.repo.counts()), media_type="application/json")
