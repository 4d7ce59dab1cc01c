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
TIMEFRAMES = ("M1", "M5", "M15", "M30", "H1", "H4", "D1")

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


@router.get("/rates", operation_id="mt5_rates", summary="The latest bars of one symbol, oldest first")
async def rates(
    term: TerminalDep, symbol: Symbol, timeframe: str = "M1", count: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> Response:
    if timeframe not in TIMEFRAMES:
        raise Problem(422, f"timeframe: one of {', '.join(TIMEFRAMES)}")
    got = await term.call("copy_rates_from_pos", symbol, getattr(term.mt5, f"TIMEFRAME_{timeframe}"), 0, count)
    if got is None:
        raise await term.fail(f"rates of {symbol}")
    return Response(
        orjson.dumps(
            [
                {
                    "time": int(r["time"]),
                    "open": float(r["open"]),
                    "high": float(r["high"]),
                    "low": float(r["low"]),
                    "close": float(r["close"]),
                    "tick_volume": int(r["tick_volume"]),
                    "spread": int(r["spread"]),
                    "real_volume": int(r["real_volume"]),
                }
                for r in got
            ]
        ),
        media_type="application/json",
    )
