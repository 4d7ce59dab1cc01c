"""feature-engineering settings (``FEATURE_ENGINEERING_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import IdentitySettings, SignalPathPolling


class FeatureEngineeringSettings(IdentitySettings, SignalPathPolling):
    #: Stored bars (database-service) a series without a saved state is warmed up on before its
    #: first live bar; also the longest gap after a saved state that is filled from storage.
    warmup_bars: int = Field(default=500, ge=0, le=100_000)
    #: Bars asked for per history request (database-service answers at most its own maximum, 5000).
    history_page_bars: int = Field(default=5000, ge=1, le=5000)
    #: Time limit of one history request, seconds; a failed warm-up is logged and the series goes on without it.
    history_timeout_s: float = Field(default=5.0, gt=0)
    #: Rows ``POST /api/v1/features/compute`` accepts at most.
    max_compute_rows: int = Field(default=100_000, ge=1)
    #: Indicators one compute request may ask for.
    max_compute_indicators: int = Field(default=50, ge=1)
