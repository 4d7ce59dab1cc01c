"""pattern-validator settings (``PATTERN_VALIDATOR_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import PoolSettings, SignalPathPolling


class PatternValidatorSettings(PoolSettings, SignalPathPolling):
    # -- stale_data --
    #: A signal whose bar is more than this many bars older than the newest bar seen for its series.
    stale_bars: int = Field(default=2, ge=0)
    #: A signal arriving more than this long after its bar closed (by the service's clock).
    max_delay_s: float = Field(default=60.0, gt=0)

    # -- gappy_data --
    #: Bars looked back over (ending at the signal's bar) for missing ones; closed-market times excluded.
    gap_window_bars: int = Field(default=30, ge=2)
    #: Missing bars tolerated in that window (a quiet minute without a tick has no bar).
    max_missing_bars: int = Field(default=3, ge=0)
    #: Trading-session calendar per symbol (``fx``, ``metal``, ``crypto``) beyond the platform's
    #: (``shared.market_hours``); unknown symbols are ``fx`` (closed Fri 22:00 - Sun 22:00 UTC).
    sessions: dict[str, str] = Field(default_factory=dict)

    # -- patterns --
    #: Bars handed to TA-Lib's candlestick functions (their averaging periods need ~10 before the last).
    pattern_bars: int = Field(default=20, ge=5)
    #: How long a signal waits for its own bar (and feature vector) to arrive on their topics.
    input_wait_ms: int = Field(default=200, ge=0)

    # -- regime (feature names are feature-engineering's) --
    adx_feature: str = "adx_14"
    natr_feature: str = "natr_14"
    trend_price_feature: str = "close"
    trend_average_feature: str = "ema_50"
    #: ADX at or above: trend; below ``adx_range``: range; between: transition (no rule).
    adx_trend: float = Field(default=25.0, ge=0)
    adx_range: float = Field(default=20.0, ge=0)
    #: NATR (percent of price) at or above: high volatility, whatever the ADX.
    natr_high: float = Field(default=1.0, gt=0)
    #: An entry at least this strong passes high volatility and counter-trend.
    strong_strength: float = Field(default=0.6, ge=0, le=1)
    #: In a range, an entry weaker than this that the RSI (mean-reversion) member does not back is rejected.
    range_min_strength: float = Field(default=0.3, ge=0, le=1)

    # -- feature_drift --
    psi_threshold: float = Field(default=0.25, gt=0)
    #: Live vectors per series the PSI is computed over (a day of M1 bars), and the fewest that make
    #: it meaningful: over a few dozen autocorrelated bars even an unchanged market reads as drifted.
    psi_window: int = Field(default=1440, ge=10)
    psi_min_bars: int = Field(default=720, ge=10)
    #: The PSI of a model on a series is recomputed after this many new vectors (cached in between).
    psi_recheck_bars: int = Field(default=30, ge=1)
    #: One ``FeatureDrift`` event per model at most this often.
    drift_alert_interval_s: float = Field(default=3600.0, ge=0)

    # -- duplicate (the seeds' SignalDeduplicator) --
    dedup_window_s: float = Field(default=300.0, gt=0)

    #: Largest ``limit`` of ``GET /api/v1/signals``.
    max_signals_per_request: int = Field(default=500, ge=1)
    #: Where the group-less bar and vector feeds start: ``earliest`` rebuilds the recent windows
    #: from the topics after a restart; ``latest`` starts empty.
    feeds_start_from: str = Field(default="earliest", pattern=r"^(latest|earliest)$")
