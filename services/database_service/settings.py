"""database-service settings (prefix ``DATABASE_SERVICE_``)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DATABASE_SERVICE_", extra="ignore", frozen=True)

    #: Bars per (symbol, timeframe) kept hot in memory for the bars API.
    cache_bars_per_series: int = 5000
    #: Largest ``limit`` the bars API accepts.
    max_bars_per_request: int = 5000
    #: Records per consumer batch (one ClickHouse insert each).
    consume_batch: int = 5000
