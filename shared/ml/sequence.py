"""Sequence models (``lstm``, ``transformer``) without torch: their hyperparameters and their windows.

A sequence model sees, for the bar ``t`` it predicts from, the feature rows of the last
``window`` bars of the same series (``t - window + 1 .. t``, oldest first), not one row. A
sample exists only where all of them are complete (past warm-up). Its label is bar ``t``'s, so
its label interval, purging and the embargo are exactly the row models' (the window only
looks back: with ``past_only=False`` a training sample after a test window would see the test
window's features through it, so the embargo should then be at least ``window`` bars).

This module imports no torch, so a service that only validates a request (ml-supervised's
``POST /api/v1/models/train``) does not load it; ``shared.ml.deep`` trains and runs the models.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

#: The sequence kinds (trained and run by ml-deep-learning).
SEQUENCE_KINDS = ("lstm", "transformer")


class SequenceParams(BaseModel):
    """Hyperparameters of both sequence kinds (``heads``, ``feedforward`` only matter to the Transformer)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Bars each sample looks at (the newest last).
    window: int = Field(default=32, ge=2, le=256)
    #: LSTM hidden size / Transformer model width.
    hidden: int = Field(default=32, ge=4, le=512)
    layers: int = Field(default=1, ge=1, le=4)
    #: Attention heads (Transformer); must divide ``hidden``.
    heads: int = Field(default=4, ge=1, le=16)
    #: Feed-forward width of a Transformer layer.
    feedforward: int = Field(default=64, ge=4, le=2048)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    #: Most passes over the training rows; early stopping usually ends sooner.
    epochs: int = Field(default=30, ge=1, le=1000)
    #: Epochs without a better validation loss before training stops (the best weights are kept).
    patience: int = Field(default=4, ge=1, le=100)
    batch_size: int = Field(default=64, ge=1, le=4096)
    learning_rate: float = Field(default=1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    #: Share of the training rows, taken from their end, that early stopping validates on.
    validation_fraction: float = Field(default=0.15, gt=0.0, lt=0.5)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> SequenceParams:
        if self.hidden % self.heads:
            raise ValueError(f"heads: {self.heads} does not divide hidden {self.hidden}")
        return self


def sequence_hyperparameters(given: Mapping[str, Any]) -> dict[str, Any]:
    """The full, validated hyperparameters of a sequence kind; ``ValueError`` naming a bad one."""
    try:
        return SequenceParams.model_validate(dict(given)).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ValueError(f"{where}: {message}" if where else message) from None


def windows(values: Floats, window: int, rows: Ints | None = None) -> tuple[Floats, Bools]:
    """The windows ending at ``rows`` (every row by default) of one series' feature matrix
    ``values`` (bars x features, NaN = missing): an array rows x window x features, and which of
    them are complete (the window fits in the series and holds no NaN)."""
    n, f = values.shape
    ends = np.arange(n, dtype=np.int64) if rows is None else rows
    out = np.full((ends.shape[0], window, f), np.nan)
    if n >= window:
        view = np.lib.stride_tricks.sliding_window_view(values, (window, f))[:, 0]  # (n - window + 1, window, f)
        fits = ends >= window - 1
        out[fits] = view[ends[fits] - window + 1]
    complete = ~np.isnan(out).any(axis=(1, 2))
    return out, np.asarray(complete)


def last_rows(x: Floats) -> Floats:
    """Each sample's own feature row: the row itself, or a window's newest row."""
    return x if x.ndim == 2 else x[:, -1, :]


__all__ = ["SEQUENCE_KINDS", "SequenceParams", "last_rows", "sequence_hyperparameters", "windows"]
