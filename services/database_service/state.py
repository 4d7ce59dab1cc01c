"""What database-service's routes share while it runs, reached as ``Market`` (a FastAPI dependency)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated

from services.database_service.cache import BarCache, SeriesKey
from services.database_service.repository import BarRow, MarketRepository
from services.database_service.settings import DatabaseServiceSettings
from shared.events import Timeframe
from shared.kit.service import state_of


class MarketData:
    """The market store (ClickHouse) and its hot window of bars in memory."""

    def __init__(self, settings: DatabaseServiceSettings, repo: MarketRepository, cache: BarCache) -> None:
        self.settings = settings
        self.repo = repo
        self.cache = cache
        self._loading: dict[SeriesKey, asyncio.Future[None]] = {}
        #: Held while history is looked up and inserted (``history.py``).
        self.history_lock = asyncio.Lock()

    async def bars(
        self, symbol: str, timeframe: Timeframe, *, start_ms: int | None, end_ms: int | None, limit: int
    ) -> Sequence[BarRow]:
        """Bars from memory when the window holds the range, else from ClickHouse."""
        key = (symbol, timeframe)
        rows = self.cache.get(key, start_ms=start_ms, end_ms=end_ms, limit=limit)
        if rows is None and self.cache.caught_up and not self.cache.is_loaded(key):
            await self._load_series(key)
            rows = self.cache.get(key, start_ms=start_ms, end_ms=end_ms, limit=limit)
        if rows is None:
            rows = await self.repo.bars(symbol, timeframe, start_ms=start_ms, end_ms=end_ms, limit=limit)
        return rows

    async def _load_series(self, key: SeriesKey) -> None:
        # One ClickHouse read per series, however many requests ask for it at once.
        task = self._loading.get(key)
        if task is None:
            task = self._loading[key] = asyncio.ensure_future(self._read_series(key))
        try:
            await asyncio.shield(task)
        except Exception:
            self._loading.pop(key, None)  # let the next request try again
            raise

    async def _read_series(self, key: SeriesKey) -> None:
        while True:
            # History stored while this read ran may be missing from it and was not merged
            # (the series was not loaded yet): read again then (``BarCache.merge_history``).
            version = self.cache.history_version(key)
            rows = await self.repo.bars(key[0], key[1], start_ms=None, end_ms=None, limit=self.cache.capacity)
            if self.cache.history_version(key) == version:
                break
        self.cache.load(key, rows)


#: ``market: Market`` in a route's parameters gives the running service's state.
Market = Annotated[MarketData, state_of(MarketData)]
