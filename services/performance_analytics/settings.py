"""performance-analytics settings (``PERFORMANCE_ANALYTICS_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from shared.settings import ServiceSettings


class PerformanceAnalyticsSettings(ServiceSettings):
    #: Every field here is read from ``PERFORMANCE_ANALYTICS_<FIELD>``; document each one in README.md.

    #: The capital every account's (and scope's) returns are measured on: equity = capital + net PnL.
    capital_usd: Decimal = Field(default=Decimal(100_000), gt=0)
    #: How often every account's equity per scope (and the last quotes) is written to ClickHouse.
    snapshot_interval_s: float = Field(default=60.0, gt=0)
    #: The returns period of Sharpe and Sortino (the curve's last value per period); annualised
    #: by the number of such periods in 365.25 days.
    returns_period_s: float = Field(default=3600.0, gt=0)
    #: Records per batch of the fills, signals and ticks consumers.
    consume_batch: int = Field(default=500, ge=1)
    #: Validated signals kept (memory, and read back at start) for the weights and confidence of fills.
    max_signals: int = Field(default=100_000, ge=1)
    #: How far back stored signals are read at start.
    signal_lookback_s: float = Field(default=7 * 86_400.0, gt=0)
    #: Most points one equity-curve request answers (JSON and SVG).
    max_equity_points: int = Field(default=20_000, ge=2)
