"""ai-orchestration settings (``AI_ORCHESTRATION_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.events import Timeframe
from shared.settings import PoolSettings, SignalPathPolling


class AiOrchestrationSettings(PoolSettings, SignalPathPolling):
    #: How long after a feature vector arrives its signal waits for the expected predictions.
    deadline_ms: int = Field(default=250, ge=1, le=60_000)
    #: Names the combination rule in every signal (``Signal.strategy``, part of its id).
    strategy: str = Field(default="ensemble-1", pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    #: Timeframes whose feature vectors become signals (others only feed the trend filter).
    signal_timeframes: list[Timeframe] = Field(default_factory=lambda: list(Timeframe))
    #: |ensemble score| below this is ``flat``.
    dead_zone: float = Field(default=0.1, ge=0.0, lt=1.0)
    #: A flat series enters when the ensemble's strength (|weighted score|) and its calibrated
    #: confidence reach these (and the maturity and trend filters pass); the models can open a
    #: position on their own. Confidence is 0.5 until outcomes exist: raise it to demand a shown edge.
    entry_min_strength: float = Field(default=0.3, ge=0.0, le=1.0)
    entry_min_confidence: float = Field(default=0.5, ge=0.0, le=1.0)

    # -- the feature names used (feature-engineering's names, kept here only) --
    rsi_feature: str = "rsi_14"
    #: Trend filter: the higher timeframe's ``trend_price_feature`` against its ``trend_average_feature``.
    trend_price_feature: str = "close"
    trend_average_feature: str = "ema_50"

    # -- the RSI rule member (the seeds' strategy) --
    rsi_enter_long: float = Field(default=29.0, ge=0, le=100)
    rsi_enter_short: float = Field(default=71.0, ge=0, le=100)
    rsi_exit_long: float = Field(default=65.0, ge=0, le=100)
    rsi_exit_short: float = Field(default=35.0, ge=0, le=100)
    #: Closed bars a symbol (per timeframe) must have before the rule may trade ("maturity").
    rsi_maturity_bars: int = Field(default=50, ge=0)
    #: The higher timeframe of the trend filter: no long below its average, no short above it.
    trend_timeframe: Timeframe = Timeframe.H1
    #: Without a trend reading yet (warm-up), ``true`` blocks entries, ``false`` lets them through.
    trend_required: bool = False
    #: Bars ahead over which the RSI member's calls (and every signal's direction) are scored.
    rsi_horizon_bars: int = Field(default=5, ge=1, le=1000)

    # -- weights and calibration --
    #: Scored outcomes kept per member and series (the rolling hit-rate window).
    hit_window: int = Field(default=200, ge=1)
    #: Outcomes a member needs before its own hit rate sets its weight; before, ``prior_hit_rate``.
    min_outcomes: int = Field(default=30, ge=1)
    prior_hit_rate: float = Field(default=0.55, gt=0.5, le=1.0)
    #: Bins of |score| for the confidence calibration, outcomes kept per bin, and the prior's weight
    #: (pseudo-outcomes at 0.5) that shrinks a thin bin towards a coin.
    calibration_bins: int = Field(default=10, ge=1, le=100)
    calibration_window: int = Field(default=500, ge=10)
    calibration_prior: float = Field(default=10.0, ge=0.0)

    #: Bars (outcomes) and model lifecycle events, off the signal's path, always poll this slowly.
    slow_feed_fetch_max_wait_ms: int = Field(default=200, ge=1, le=5000)

    #: How often changed series state is written to PostgreSQL.
    checkpoint_interval_s: float = Field(default=1.0, gt=0)
    #: Where the group-less consumers start without state: ``latest`` (live) or ``earliest`` (the log).
    start_from: str = Field(default="latest", pattern=r"^(latest|earliest)$")
    #: How often the model catalog is asked again for champions (lifecycle events also refresh it).
    catalog_refresh_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> AiOrchestrationSettings:
        if not self.rsi_enter_long < self.rsi_exit_long <= 100 or not 0 <= self.rsi_exit_short < self.rsi_enter_short:
            raise ValueError("RSI thresholds: need enter_long < exit_long and exit_short < enter_short")
        return self
