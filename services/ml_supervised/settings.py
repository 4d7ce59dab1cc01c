"""ml-supervised settings (``ML_SUPERVISED_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from shared.ml.settings import ModelServiceSettings


class MlSupervisedSettings(ModelServiceSettings):
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
