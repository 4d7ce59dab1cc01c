"""The settings both model services (ml-supervised, ml-deep-learning) have; each adds its own."""

from __future__ import annotations

from pydantic import Field

from shared.settings import IdentitySettings, PoolSettings, SignalPathPolling


class ModelServiceSettings(PoolSettings, IdentitySettings, SignalPathPolling):
    """Settings both model services have (each adds its own; the prefix is the port-matrix entry's)."""

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


__all__ = ["ModelServiceSettings"]
