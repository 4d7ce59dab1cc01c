"""database-service settings (``DATABASE_SERVICE_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from shared.settings import ServiceSettings


class DatabaseServiceSettings(ServiceSettings):
    #: Bars per (symbol, timeframe) kept hot in memory for the bars API.
    cache_bars_per_series: int = 5000
    #: Largest ``limit`` the bars API accepts.
    max_bars_per_request: int = 5000
    #: The most ticks one GET /api/v1/market/ticks answers (page forward for more).
    max_ticks_per_request: int = 10000
    #: Records per consumer batch (one ClickHouse insert each).
    consume_batch: int = 5000
    #: How long the bars cache feed lets the broker hold an empty fetch (ms). Not on the
    #: tick -> bar path (that is the bar stage's ``KAFKA_FETCH_MAX_WAIT_MS``): it only bounds
    #: how soon a closed bar is served from memory, and each idle poll costs the embedded
    #: broker CPU (at 10 ms, this feed alone was ~5 % of a core on an idle mesh).
    bars_feed_max_wait_ms: int = 100
