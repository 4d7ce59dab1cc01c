"""ml-supervised settings (``ML_SUPERVISED_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from shared.settings import IdentitySettings, PoolSettings


class MlSupervisedSettings(PoolSettings, IdentitySettings):
    #: A new model expires this many days after the end of its training window (a request may set its own).
    expires_after_days: float = Field(default=14.0, gt=0)
    #: How often models past their expiry are looked for (and flagged), seconds.
    expiry_check_interval_s: float = Field(default=60.0, gt=0)
    #: How often the training-job queue is looked at when nothing woke the runner, seconds.
    job_poll_interval_s: float = Field(default=2.0, gt=0)
    #: How often a running job's heartbeat is written, seconds.
    job_heartbeat_s: float = Field(default=5.0, gt=0)
    #: A running job without a heartbeat this long was interrupted (its process died): failed, seconds.
    job_stale_after_s: float = Field(default=30.0, gt=0)
    #: Niceness of the training worker process (0-19; higher = yields more to the services).
    worker_niceness: int = Field(default=10, ge=0, le=19)
    #: The feature set training runs over the bars (``module:callable``): the live one by default, so
    #: research and live compute features with the same code.
    feature_set: str = Field(default="shared.ml.dataset:core_feature_set", pattern=r"^[\w.]+:\w+$")
    #: Cold start (``bootstrap.py``): with no champion tree model, train one on these symbols' stored
    #: M1 bars and promote it (actor ``bootstrap``); empty = off. The data-collector's symbols.
    bootstrap_symbols: Annotated[tuple[str, ...], NoDecode] = ("EURUSD", "GBPUSD", "XAUUSD", "BTCUSD")
    #: The cold-start model's training window: this many days back from now.
    bootstrap_days: float = Field(default=7.0, gt=0, le=365)
    #: Stored M1 bars a symbol needs in that window to be trained on.
    bootstrap_min_bars: int = Field(default=1000, ge=100)
    #: How long the cold start waits for every symbol's history before it trains on those that have it, seconds.
    bootstrap_wait_s: float = Field(default=300.0, ge=0)

    @field_validator("bootstrap_symbols", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return tuple(s.strip() for s in value.split(",") if s.strip()) if isinstance(value, str) else value
