"""Stored bars for warm-ups: the ``BarHistory`` interface and its HTTP implementation (database-service)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Protocol

import httpx

from shared.events import Timeframe
from shared.features import Bar


class BarHistory(Protocol):
    async def bars(self, symbol: str, timeframe: Timeframe, start_ns: int, end_ns: int) -> list[Bar]:
        """Stored bars of the series with ``start_ns <= open time <= end_ns``, oldest first."""
        ...


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ns(text: str) -> int:
    return int(dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()) * 1_000_000_000


class HttpBarHistory:
    """``GET <database-service>/api/v1/market/bars`` paged forward from ``start``.

    The calls carry the service's own token (the kit's ``ServiceIdentity`` adds it to ``rt.http``);
    ``ready`` waits until there is one, for at most the request time limit, so the first bars after
    a start are not warmed up without it while user-service is still writing the credentials.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        page: int,
        timeout_s: float,
        ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._client, self._url, self._page, self._timeout = client, base_url + "/api/v1/market/bars", page, timeout_s
        self._ready = ready

    async def bars(self, symbol: str, timeframe: Timeframe, start_ns: int, end_ns: int) -> list[Bar]:
        if self._ready is not None:
            await asyncio.wait_for(self._ready(), self._timeout)
        out: list[Bar] = []
        start = start_ns
        while start <= end_ns:
            params: dict[str, str | int] = {
                "symbol": symbol,
                "timeframe": timeframe.value,
                "start": _iso(start),
                "end": _iso(end_ns),
                "limit": self._page,
            }
            response = await self._client.get(self._url, params=params, timeout=self._timeout)
            response.raise_for_status()
            rows = response.json()
            page = [
                Bar(_ns(r["ts"]), float(r["open"]), float(r["high"]), float(r["low"]), float(r["close"]), r["volume"])
                for r in rows
            ]
            out.extend(bar for bar in page if start_ns <= bar.ts_event <= end_ns)
            if len(rows) < self._page or not page:
                break
            start = page[-1].ts_event + timeframe.nanos
        return out
