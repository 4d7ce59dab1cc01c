"""metatrader-connector's HTTP API: the MT5 terminal's ticks, rates and symbols."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import numpy as np
import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response

from client.metatrader_connector.state import Terminal, TerminalDep
from shared.events import Symbol
from shared.kit.problems import Problem

MAX_TICKS = 50_000
#: The most bars one ``/rates/range`` answer holds (a real terminal's default "Max bars in chart").
MAX_RANGE_BARS = 100_000
#: What a terminal that does not report ``maxbars`` is assumed to accept per request.
DEFAULT_MAXBARS = 100_000
TIMEFRAME_SECONDS = {"M1": 60, "M5": 300, "M15": 900, "M30": 1800, "H1": 3600, "H4": 14_400, "D1": 86_400}
TIMEFRAMES = tuple(TIMEFRAME_SECONDS)

router = APIRouter(prefix="/api/v1/mt5", tags=["mt5"])


async def _symbol_digits(term: Terminal, symbol: str) -> int:
    if symbol not in term.digits:
        info = await term.call("symbol_info", symbol)
        if info is None:
            raise await term.fail(f"symbol {symbol}")
        term.digits[symbol] = int(info.digits)
    return term.digits[symbol]


def volume_text(volume: float) -> str:
    """A terminal's float volume as the decimal the events carry (at most 8 decimals, as stored).

    ``repr`` would show binary noise (``0.1 + 0.2`` is ``0.30000000000000004``), more
    decimals than the edge accepts: such ticks would be refused.
    """
    text = f"{volume:.8f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _ticks_json(symbol: str, digits: int, ticks: np.ndarray) -> list[dict]:
    fmt = f"{{:.{digits}f}}"
    return [
        {
            "symbol": symbol,
            "time_msc": int(t["time_msc"]),
            "bid": fmt.format(t["bid"]),
            "ask": fmt.format(t["ask"]),
            "last": fmt.format(t["last"]) if t["last"] else None,
            "volume": volume_text(float(t["volume_real"])),
            "flags": int(t["flags"]),
        }
        for t in ticks
    ]


@router.get("/terminal", operation_id="terminal_info", summary="Which terminal this is, and its account")
async def terminal_info(term: TerminalDep) -> Response:
    info, account, version = (
        await term.call("terminal_info"),
        await term.call("account_info"),
        await term.call("version"),
    )
    return Response(
        orjson.dumps(
            {
                "implementation": type(term.mt5).__name__ if not hasattr(term.mt5, "__file__") else "MetaTrader5",
                "version": list(version) if version else None,
                "terminal": info._asdict() if info is not None else None,
                "account": {k: v for k, v in account._asdict().items() if k != "password"}
                if account is not None
                else None,
            },
            default=str,
        ),
        media_type="application/json",
    )


@router.get("/symbols", operation_id="mt5_symbols", summary="Symbols the terminal offers")
async def symbols(term: TerminalDep) -> Response:
    found = await term.call("symbols_get")
    return Response(
        orjson.dumps(
            [{"name": s.name, "description": s.description, "digits": s.digits, "point": s.point} for s in found or ()]
        ),
        media_type="application/json",
    )


@router.get("/ticks", operation_id="mt5_ticks", summary="Ticks of one symbol in [from_msc, to_msc)")
async def ticks(
    term: TerminalDep,
    symbol: Symbol,
    from_msc: Annotated[int, Query(ge=0)],
    to_msc: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_TICKS)] = 10_000,
) -> Response:
    """Oldest first. MT5 takes whole seconds, so the range is widened and filtered to the millisecond."""
    digits = await _symbol_digits(term, symbol)
    end_msc = to_msc if to_msc is not None else int(dt.datetime.now(dt.UTC).timestamp() * 1000) + 1
    if end_msc <= from_msc:
        raise Problem(422, "to_msc: must be after from_msc")
    got = await term.call("copy_ticks_range", symbol, from_msc // 1000, end_msc // 1000 + 1, -1)
    if got is None:
        raise await term.fail(f"ticks of {symbol}")
    mask = (got["time_msc"] >= from_msc) & (got["time_msc"] < end_msc)
    return Response(orjson.dumps(_ticks_json(symbol, digits, got[mask][:limit])), media_type="application/json")


def _rates_json(rates: np.ndarray, digits: int) -> list[dict]:
    """MT5 rates rows as JSON; prices rounded to the symbol's digits, so that their shortest
    decimal form is the price the terminal shows (a reader takes them as decimals)."""
    return [
        {
            "time": int(r["time"]),
            "open": round(float(r["open"]), digits),
            "high": round(float(r["high"]), digits),
            "low": round(float(r["low"]), digits),
            "close": round(float(r["close"]), digits),
            "tick_volume": int(r["tick_volume"]),
            "spread": int(r["spread"]),
            "real_volume": int(r["real_volume"]),
        }
        for r in rates
    ]


def _timeframe(term: Terminal, timeframe: str) -> int:
    if timeframe not in TIMEFRAMES:
        raise Problem(422, f"timeframe: one of {', '.join(TIMEFRAMES)}")
    return int(getattr(term.mt5, f"TIMEFRAME_{timeframe}"))


@router.get("/rates", operation_id="mt5_rates", summary="The latest bars of one symbol, oldest first")
async def rates(
    term: TerminalDep, symbol: Symbol, timeframe: str = "M1", count: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> Response:
    code = _timeframe(term, timeframe)
    digits = await _symbol_digits(term, symbol)
    got = await term.call("copy_rates_from_pos", symbol, code, 0, count)
    if got is None:
        raise await term.fail(f"rates of {symbol}")
    return Response(orjson.dumps(_rates_json(got, digits)), media_type="application/json")


@router.get(
    "/rates/range",
    operation_id="mt5_rates_range",
    summary="Closed bars of one symbol opening in [from, to], oldest first, at most `limit`",
)
async def rates_range(
    term: TerminalDep,
    symbol: Symbol,
    start: Annotated[dt.datetime, Query(alias="from", description="first open time (ISO 8601 or Unix seconds, UTC)")],
    end: Annotated[dt.datetime, Query(alias="to", description="last open time, inclusive")],
    timeframe: str = "M1",
    limit: Annotated[int, Query(ge=1, le=MAX_RANGE_BARS)] = 10_000,
) -> Response:
    """``copy_rates_range`` in requests the terminal accepts: it refuses a range that could hold more
    than its ``maxbars`` bars, whatever it holds, so the range is asked for in chunks of that many.

    Only closed bars: the bar forming now is left out (it is the last one, and the symbol's last
    tick is inside it), since history stored from it would stay partial. A page of ``limit`` bars
    may have more after it: ask again from its last ``time`` + 1.
    """
    code = _timeframe(term, timeframe)
    first, last = _unix(start), _unix(end)
    if last < first:
        raise Problem(422, "to: must not be before from")
    digits = await _symbol_digits(term, symbol)
    info = await term.call("terminal_info")
    maxbars = int(getattr(info, "maxbars", 0) or DEFAULT_MAXBARS)
    period = TIMEFRAME_SECONDS[timeframe]
    # (to - from) // period stays below maxbars; and no chunk is longer than one page needs.
    span = max(1, min(maxbars - 1, limit + 1)) * period
    pages: list[np.ndarray] = []
    held, cursor = 0, first
    while cursor <= last and held <= limit:  # one bar past the limit proves the limit's last bar closed
        chunk_end = min(last, cursor + span - 1)
        got = await term.call("copy_rates_range", symbol, code, _utc(cursor), _utc(chunk_end))
        if got is None:
            raise await term.fail(f"rates of {symbol}")
        got = got[(got["time"] >= cursor) & (got["time"] <= chunk_end)]
        pages.append(got)
        held += got.size
        cursor = chunk_end + 1
    bars = np.concatenate(pages)  # at least one: first <= last
    if bars.size > limit:
        bars = bars[:limit]
    elif bars.size:
        tick = await term.call("symbol_info_tick", symbol)
        newest = int(tick.time) if tick is not None else None
        if newest is None or int(bars[-1]["time"]) + period > newest:
            bars = bars[:-1]  # still forming (or no tick says otherwise)
    return Response(orjson.dumps(_rates_json(bars, digits)), media_type="application/json")


def _unix(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)  # naive times are UTC, as everywhere in the platform
    return int(value.timestamp())


def _utc(seconds: int) -> dt.datetime:
    # The MetaTrader5 package takes datetimes in UTC (its documentation), as the simulator does.
    return dt.datetime.fromtimestamp(seconds, dt.UTC)
