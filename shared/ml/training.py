"""What a training job computes, as plain functions of arrays: run in a worker process.

``TrainSpec`` is the request (``POST /api/v1/models/train``). ``features`` runs each symbol's bars
through the live ``FeatureSet``; ``assemble`` labels them, keeps the rows with every feature and a
label (for a sequence kind: the windows of ``window`` complete rows ending at a labelled bar), and
merges symbols by time; ``fit_fold`` trains and scores one walk-forward fold; ``fit_final``
trains on every row and returns the artifact. A kind that stops early (``fit_validated``) gets
a validation slice from the end of its training rows, purged and embargoed like a test window
(``validation.holdout_tail``), so no validation label overlaps a training label. Every function takes and returns
picklable values only, so the job runner can hand them to a lower-priority process.
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.events import Name, Symbol, Timeframe
from shared.ml.dataset import BarSeries, FeatureMatrix, FeatureSetFactory, Floats, Ints, build_features, fingerprint
from shared.ml.drift import Distribution, distributions
from shared.ml.kinds import Task, Trained, kind_of
from shared.ml.labels import Labelling, make_labels
from shared.ml.sequence import last_rows, windows
from shared.ml.validation import holdout_tail, walk_forward


class TrainSpec(BaseModel):
    """What to train: a model of ``kind`` for ``task`` over ``horizon_bars``, on the stored bars of
    ``symbols`` in ``[start, end]``, validated walk-forward over ``folds`` folds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    kind: Name
    task: Task = "direction"
    symbols: Annotated[list[Symbol], Field(min_length=1, max_length=20)]
    timeframe: Timeframe = Timeframe.M1
    start: dt.datetime
    end: dt.datetime
    horizon_bars: int = Field(default=5, ge=1, le=1000)
    labelling: Labelling = Labelling()
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    folds: int = Field(default=5, ge=1, le=50)
    #: Bars after each test window no training sample may start in; ``None``: the horizon.
    embargo_bars: int | None = Field(default=None, ge=0, le=10_000)
    #: Walk-forward proper (train on the past only); ``False``: purged k-fold (both sides).
    past_only: bool = True
    seed: int = Field(default=42, ge=0, le=2**31 - 1)
    #: Threads the library may use; 1 keeps training from starving the mesh.
    threads: int = Field(default=1, ge=1, le=64)
    #: The model expires this many days after its training window's end; ``None``: the service's default.
    expires_after_days: float | None = Field(default=None, gt=0, le=3650)

    @model_validator(mode="after")
    def _window(self) -> TrainSpec:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a time zone (UTC: ...Z)")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("symbols repeat")
        return self

    @property
    def embargo(self) -> int:
        return self.horizon_bars if self.embargo_bars is None else self.embargo_bars


@dataclass(frozen=True)
class Dataset:
    """The training rows of every symbol, merged by time: features (rows x features, or for a
    sequence kind rows x window x features), target, label intervals (ns)."""

    feature_set: str
    names: tuple[str, ...]
    x: Floats
    y: Floats
    start_ns: Ints
    end_ns: Ints
    first_bar_ns: int
    last_bar_ns: int
    dropped_warmup: int
    dropped_unlabelled: int


class NotEnoughData(ValueError):
    """Too few labelled rows for the folds asked."""


def load_factory(path: str) -> FeatureSetFactory:
    """The feature-set factory named ``module:callable`` (a setting: the live set by default)."""
    module, _, name = path.partition(":")
    factory: FeatureSetFactory = getattr(importlib.import_module(module), name)
    return factory


def features(series: list[BarSeries], feature_set: FeatureSetFactory) -> list[FeatureMatrix]:
    """Each series through the live feature set, bar by bar (a fresh state per series)."""
    fs = feature_set()
    return [build_features(s, fs) for s in series]


def assemble(spec: TrainSpec, matrices: list[FeatureMatrix], window: int | None = None) -> Dataset:
    """Label every series, keep the rows with every feature and a label, merge the series by time.
    With ``window`` a row is the window of the ``window`` bars ending at it (all complete)."""
    if not matrices:
        raise NotEnoughData("no bars")
    parts: list[tuple[Floats, Floats, Ints, Ints]] = []
    warmup = unlabelled = 0
    for matrix in matrices:
        labels = make_labels(matrix.close, spec.horizon_bars, spec.labelling)
        if window is None:
            x, complete = matrix.values, matrix.complete
        else:
            x, complete = windows(matrix.values, window)
        warmup += int((~complete).sum())
        unlabelled += int((complete & ~labels.valid).sum())
        idx = np.flatnonzero(complete & labels.valid)
        parts.append((x[idx], labels.target(spec.task)[idx], matrix.ts[idx], matrix.ts[labels.end[idx]]))
    start = np.concatenate([p[2] for p in parts])
    order = np.argsort(start, kind="stable")
    if order.size < max(2 * (spec.folds + 1), 20):
        raise NotEnoughData(f"{order.size} labelled rows with every feature: too few for {spec.folds} folds")
    return Dataset(
        matrices[0].feature_set,
        matrices[0].names,
        np.ascontiguousarray(np.concatenate([p[0] for p in parts])[order]),
        np.ascontiguousarray(np.concatenate([p[1] for p in parts])[order]),
        start[order],
        np.concatenate([p[3] for p in parts])[order],
        min(int(m.ts[0]) for m in matrices),
        max(int(m.ts[-1]) for m in matrices),
        warmup,
        unlabelled,
    )


def folds_of(spec: TrainSpec, data: Dataset) -> list[tuple[Ints, Ints, dict[str, int]]]:
    """The walk-forward folds: train rows, test rows, and what purging and the embargo removed."""
    tf_ns = spec.timeframe.nanos
    out = []
    for fold in walk_forward(data.start_ns, data.end_ns, spec.folds, spec.embargo * tf_ns, past_only=spec.past_only):
        out.append((fold.train, fold.test, {"purged": fold.purged, "embargoed": fold.embargoed}))
    return out


def metrics_of(task: Task, y: Floats, raw: Floats) -> dict[str, float]:
    """Out-of-sample quality of raw predictions ``raw`` of targets ``y``."""
    if task == "direction":
        p = np.clip(raw, 1e-12, 1 - 1e-12)
        return {
            "accuracy": float(np.mean((p > 0.5) == (y > 0.5))),
            "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
            "base_rate_up": float(np.mean(y)),
        }
    err = raw - y
    corr = float(np.corrcoef(raw, y)[0, 1]) if np.std(raw) > 0 and np.std(y) > 0 else 0.0
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "hit_rate": float(np.mean(np.sign(raw) == np.sign(y))),
        "correlation": 0.0 if math.isnan(corr) else corr,
    }


@dataclass(frozen=True)
class Intervals:
    """The label intervals ``[start, end]`` (ns) of training rows, and the embargo (ns) early
    stopping's validation slice is cut with."""

    start: Ints
    end: Ints
    embargo_ns: int


def fit(
    kind: str,
    task: Task,
    x: Floats,
    y: Floats,
    intervals: Intervals,
    params: dict[str, Any],
    seed: int,
    threads: int,
) -> tuple[Trained, dict[str, float]]:
    """Train ``kind`` on ``x`` -> ``y``; a kind that stops early validates on the purged end of
    the rows. The model, and how training went (the kind's ``fit_info`` and the slice's sizes)."""
    model_kind = kind_of(kind)
    fit_validated = getattr(model_kind, "fit_validated", None)
    if fit_validated is None:
        return model_kind.fit(task, x, y, params, seed, threads), {}
    split = holdout_tail(intervals.start, intervals.end, float(params["validation_fraction"]), intervals.embargo_ns)
    if split.train.size == 0:
        raise NotEnoughData("no training rows left before the early-stopping slice after purging")
    model: Trained = fit_validated(
        task, x[split.train], y[split.train], x[split.test], y[split.test], params, seed, threads
    )
    info = {
        "validation_rows": float(split.test.size),
        "validation_purged": float(split.purged),
        "validation_embargoed": float(split.embargoed),
    }
    return model, info | dict(getattr(model, "fit_info", {}))


def fit_fold(
    kind: str,
    task: Task,
    x_train: Floats,
    y_train: Floats,
    x_test: Floats,
    y_test: Floats,
    params: dict[str, Any],
    seed: int,
    threads: int,
    intervals: Intervals | None = None,
) -> dict[str, float]:
    """Train on one fold's training rows, score on its test rows (``intervals``: the training
    rows' label intervals, which a kind that stops early needs)."""
    if x_train.shape[0] == 0:
        raise NotEnoughData("a fold has no training rows left after purging (more data or fewer folds)")
    if intervals is None:
        intervals = Intervals(np.arange(x_train.shape[0], dtype=np.int64), np.arange(x_train.shape[0]), 0)
    model, info = fit(kind, task, x_train, y_train, intervals, params, seed, threads)
    return (
        metrics_of(task, y_test, model.predict(x_test))
        | {"n_train": float(x_train.shape[0]), "n_test": float(x_test.shape[0])}
        | info
    )


@dataclass(frozen=True)
class FinalModel:
    artifact: bytes
    score_scale: float
    distributions: dict[str, Distribution]
    fingerprint: str
    #: How the final training went (early stopping's epochs), empty for kinds without it.
    info: dict[str, float]


def fit_final(
    kind: str, task: Task, data: Dataset, params: dict[str, Any], seed: int, threads: int, embargo_ns: int = 0
) -> FinalModel:
    """Train on every row; the artifact, the score scale, the feature distributions (of each
    sample's own bar), the data's fingerprint."""
    model, info = fit(
        kind, task, data.x, data.y, Intervals(data.start_ns, data.end_ns, embargo_ns), params, seed, threads
    )
    scale = 1.0 if task == "direction" else float(np.std(data.y)) or 1.0
    rows = last_rows(data.x)
    return FinalModel(model.to_bytes(), scale, distributions(rows, data.names), fingerprint(data.x, data.y), info)


def aggregate(folds: list[dict[str, float]]) -> dict[str, float]:
    """Mean of every metric over the folds."""
    keys = folds[0].keys() if folds else ()
    return {k: float(np.mean([f[k] for f in folds])) for k in keys}


Stage = Literal["queued", "loading", "features", "labels", "training", "registering", "done", "failed"]

__all__ = [
    "Dataset",
    "FinalModel",
    "Intervals",
    "NotEnoughData",
    "Stage",
    "TrainSpec",
    "aggregate",
    "assemble",
    "features",
    "fit",
    "fit_final",
    "fit_fold",
    "folds_of",
    "load_factory",
    "metrics_of",
]
