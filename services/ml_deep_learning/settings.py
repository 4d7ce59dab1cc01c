"""ml-deep-learning settings (``ML_DEEP_LEARNING_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from pydantic import Field

from shared.ml.settings import ModelServiceSettings


class MlDeepLearningSettings(ModelServiceSettings):
    #: torch threads of one online forward pass (1 measured faster at p99 on 2 cores: bench/deep_inference.py).
    inference_threads: int = Field(default=1, ge=1, le=64)
    #: Feature vectors kept per symbol and timeframe (in memory and PostgreSQL): the longest window served.
    window_bars: int = Field(default=256, ge=2, le=4096)
