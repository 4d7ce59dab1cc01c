"""Model kinds: how each library trains, saves, loads and predicts, behind one small interface.

A kind (``xgboost``, ``lightgbm``; ``lstm`` and ``transformer`` from ``shared.ml.deep``) turns a
feature matrix and a target into a ``Trained`` model, saves it in its library's own format (never
pickle), loads it back and predicts. The registry, the job runner and online inference see only
this interface, so they do not care which kind it is.

A sequence kind's sample is a window of rows (``window_of``): its ``x`` has one more axis
(samples x window x features) and ``predict_row`` takes one window. A kind with
``fit_validated(task, x, y, x_val, y_val, params, seed, threads)`` stops early on a validation
slice, which training cuts from the end of the training rows, purged (``shared.ml.training``).

``predict`` gives the raw output: a classifier's probability of *up*, a regressor's expected
log return. ``score`` turns it into ``shared.events.Prediction.score`` in [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Task = Literal["direction", "return"]


class Trained(Protocol):
    """A model ready to predict, as a kind loads or trains it."""

    def predict(self, x: Floats) -> Floats:
        """Raw outputs for the rows of ``x`` (2-D, the model's feature order; a sequence kind: 3-D windows)."""
        ...

    def predict_row(self, x: Floats) -> float:
        """The raw output for one row (1-D; a sequence kind: one window, 2-D): the online fast path."""
        ...

    def to_bytes(self) -> bytes:
        """The artifact, in the library's own format."""
        ...


class ModelKind(Protocol):
    """One family of models (see the module docstring)."""

    #: The registry's ``kind``.
    name: str
    #: Artifact file suffix (``.ubj``, ``.txt``, ``.safetensors``).
    suffix: str

    def hyperparameters(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The full, validated hyperparameters (defaults filled in); ``ValueError`` naming a bad one."""
        ...

    def fit(self, task: Task, x: Floats, y: Floats, params: Mapping[str, Any], seed: int, threads: int) -> Trained:
        """Train on ``x`` -> ``y`` (direction: 1.0 up / 0.0 down; return: log returns), deterministic for a seed."""
        ...

    def load(self, task: Task, artifact: bytes, threads: int) -> Trained:
        """The model saved by ``Trained.to_bytes`` (its sha256 checked by the caller)."""
        ...


_KINDS: dict[str, ModelKind] = {}


def register_kind(kind: ModelKind) -> None:
    """Make ``kind`` available under ``kind.name`` (the deep-learning service registers its own)."""
    _KINDS[kind.name] = kind


def kind_of(name: str) -> ModelKind:
    """The registered kind ``name`` (the tree and sequence kinds register on first use, so a
    spawned training worker finds them too); ``KeyError`` otherwise."""
    if name not in _KINDS:
        from shared.ml.sequence import SEQUENCE_KINDS

        if name in SEQUENCE_KINDS:
            from shared.ml import deep  # imports torch: only where a sequence kind is used

            deep.register()
        else:
            from shared.ml import trees  # registers xgboost and lightgbm

            trees.register()
    return _KINDS[name]


def window_of(kind: ModelKind, params: Mapping[str, Any]) -> int | None:
    """Bars a sample of ``kind`` spans (a sequence kind's ``window``), or ``None`` for a row model."""
    window = getattr(kind, "window", None)
    return None if window is None else int(window(params))


def score(task: Task, raw: float, scale: float) -> float:
    """``Prediction.score``: a classifier's ``2 p - 1``; a regressor's return over its training
    spread (``scale``: the standard deviation of the training targets), clipped to [-1, 1]."""
    s = 2.0 * raw - 1.0 if task == "direction" else raw / scale if scale > 0 else 0.0
    return 0.0 if math.isnan(s) else max(-1.0, min(1.0, s))


__all__ = ["ModelKind", "Task", "Trained", "kind_of", "register_kind", "score", "window_of"]
