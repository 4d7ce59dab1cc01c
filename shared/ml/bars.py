"""Where training bars come from: ``BarSource``; over HTTP from database-service's stored bars."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import httpx
import orjson

from shared.events import Timeframe
from shared.ml.dataset import BarSeries


class BarSourceError(RuntimeError):
    """The bars could not be read (the store refused or is unreachable)."""


class BarSource(Protocol):
    async def series(self, symbol: str, timeframe: Timeframe, start: dt.datetime, end: dt.datetime) -> BarSeries:
        """Every stored bar of ``symbol`` opening in ``[start, end]``, oldest first (``BarSourceError``)."""
        ...


class HttpBarSource:
    """database-service's ``GET /api/v1/market/bars``, page by page (``page`` bars each, its maximum
    by default). ``http`` carries the caller's credentials (the kit's service client)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, page: int = 5000) -> None:
        self.http = http
        self.url = base_url.rstrip("/") + "/api/v1/market/bars"
        self.page = page

    async def series(self, symbol: str, timeframe: Timeframe, start: dt.datetime, end: dt.datetime) -> BarSeries:
        rows: list[dict[str, object]] = []
        cursor = start
        while cursor <= end:
            params = {
                "symbol": symbol,
                "timeframe": timeframe.value,
                "start": cursor.isoformat(),
                "end": end.isoformat(),
                "limit": str(self.page),
            }
            try:
                r = await self.http.get(self.url, params=params)
            except httpx.HTTPError as exc:
                raise BarSourceError(f"bars of {symbol}: {type(exc).__name__}: {exc}") from exc
            if r.status_code != 200:
                raise BarSourceError(f"bars of {symbol}: database-service answered {r.status_code}: {r.text[:300]}")
            page = orjson.loads(r.content)
            rows.extend(page)
            if len(page) < self.page:
                break
            last = dt.datetime.fromisoformat(str(page[-1]["ts"]).replace("Z", "+00:00"))
            cursor = last + dt.timedelta(seconds=timeframe.seconds)
        if not rows:
            raise BarSourceError(f"no stored bars of {symbol} {timeframe.value} between {start} and {end}")
        return BarSeries.from_rows(symbol, timeframe, rows)


__all__ = ["BarSource", "BarSourceError", "HttpBarSource"]
