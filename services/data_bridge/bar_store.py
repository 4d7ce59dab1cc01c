"""data-bridge's client of database-service's bar import (``POST /api/v1/market/bars/import``).

The call carries the caller's own ``Authorization`` (a ``market:write`` token): the caller's
authority is what database-service checks, as it would for a direct call.
"""

from __future__ import annotations

import logging

import httpx
from prometheus_client import CollectorRegistry, Counter

from shared.bar_history import DEFAULT_MAX_BARS_PER_REQUEST, BarBatch, ImportResult
from shared.kit.problems import Problem

log = logging.getLogger(__name__)

#: database-service's route that stores history (its ``history.py``).
IMPORT_PATH = "/api/v1/market/bars/import"


class BarStore:
    """database-service's bar import, over the service's pooled HTTP client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        symbols: frozenset[str] | None,
        max_bars: int,
        max_future_s: float,
        timeout_s: float,
        registry: CollectorRegistry,
    ) -> None:
        self._http, self._url = http, base_url.rstrip("/") + IMPORT_PATH
        self.symbols, self.max_bars, self.max_future_s = symbols, max_bars, max_future_s
        self._timeout = timeout_s
        self.bars = Counter(
            "history_bars_total", "Historical bars received, by outcome", ["outcome"], registry=registry
        )

    async def store(self, batch: BarBatch, authorization: str) -> ImportResult:
        """Store ``batch`` in database-service's import size (its own cap); 503 if it cannot be reached."""
        inserted = already = 0
        step = DEFAULT_MAX_BARS_PER_REQUEST
        for i in range(0, len(batch.bars), step):
            part = BarBatch(symbol=batch.symbol, timeframe=batch.timeframe, bars=batch.bars[i : i + step])
            result = await self._post(part, authorization)
            inserted, already = inserted + result.inserted, already + result.already_stored
        self.bars.labels("inserted").inc(inserted)
        self.bars.labels("already_stored").inc(already)
        return ImportResult(inserted=inserted, already_stored=already)

    async def _post(self, part: BarBatch, authorization: str) -> ImportResult:
        try:
            response = await self._http.post(
                self._url,
                content=part.model_dump_json(),
                headers={"Authorization": authorization, "Content-Type": "application/json"},
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            log.warning("database-service unreachable for a bar import: %s", exc)
            raise Problem(
                503, f"the store did not answer ({type(exc).__name__}); retry", headers={"Retry-After": "1"}
            ) from exc
        if response.status_code != 200:
            # It checks the same rules with no stricter settings: any refusal is the store's trouble.
            log.error("database-service refused a bar import: HTTP %d %s", response.status_code, response.text[:300])
            raise Problem(
                503 if response.status_code >= 500 else 502,
                f"the store refused the bars (HTTP {response.status_code}); retry later",
                headers={"Retry-After": "1"},
            )
        return ImportResult.model_validate_json(response.content)
