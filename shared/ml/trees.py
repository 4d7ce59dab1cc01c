"""XGBoost and LightGBM: classifiers (direction) and regressors (forward return).

Deterministic for a seed (XGBoost ``hist``; LightGBM ``deterministic`` + ``force_row_wise``),
bounded threads (1 by default: training must not starve the mesh). Artifacts: XGBoost UBJSON,
LightGBM's text model. One-row prediction uses each library's cheapest call: XGBoost
``inplace_predict`` on a numpy row (no DMatrix), LightGBM ``predict`` with ``num_threads=1``
(``bench/tree_inference.py`` measures both).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import xgboost as xgb
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.ml.kinds import Floats, Task, Trained, register_kind


class TreeParams(BaseModel):
    """Hyperparameters both tree kinds understand (mapped to each library's names)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_estimators: int = Field(default=200, ge=1, le=5000)
    max_depth: int = Field(default=4, ge=1, le=16)
    learning_rate: float = Field(default=0.05, gt=0.0, le=1.0)
    subsample: float = Field(default=0.8, gt=0.0, le=1.0)
    colsample: float = Field(default=0.8, gt=0.0, le=1.0)
    l2: float = Field(default=1.0, ge=0.0, le=1000.0)
    min_child_samples: int = Field(default=20, ge=1, le=100_000)


def _validated(given: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return TreeParams.model_validate(dict(given)).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ValueError(f"{where}: {first['msg']}") from None


class XGBoostModel:
    def __init__(self, booster: xgb.Booster) -> None:
        self.booster = booster

    def predict(self, x: Floats) -> Floats:
        return np.asarray(self.booster.inplace_predict(np.ascontiguousarray(x, dtype=np.float64)), dtype=np.float64)

    def predict_row(self, x: Floats) -> float:
        return float(self.booster.inplace_predict(x.reshape(1, -1))[0])

    def to_bytes(self) -> bytes:
        return bytes(self.booster.save_raw("ubj"))


class XGBoostKind:
    name = "xgboost"
    suffix = ".ubj"

    def hyperparameters(self, given: Mapping[str, Any]) -> dict[str, Any]:
        return _validated(given)

    def fit(self, task: Task, x: Floats, y: Floats, params: Mapping[str, Any], seed: int, threads: int) -> Trained:
        p = TreeParams.model_validate(dict(params))
        booster = xgb.train(
            {
                "objective": "binary:logistic" if task == "direction" else "reg:squarederror",
                "tree_method": "hist",
                "eta": p.learning_rate,
                "max_depth": p.max_depth,
                "subsample": p.subsample,
                "colsample_bytree": p.colsample,
                "lambda": p.l2,
                "min_child_weight": float(p.min_child_samples) * (0.25 if task == "direction" else 1.0),
                "seed": seed,
                "nthread": threads,
                "verbosity": 0,
            },
            xgb.DMatrix(x, label=y, nthread=threads),
            num_boost_round=p.n_estimators,
        )
        return XGBoostModel(booster)

    def load(self, task: Task, artifact: bytes, threads: int) -> Trained:
        booster = xgb.Booster(params={"nthread": threads})
        booster.load_model(bytearray(artifact))
        booster.set_param({"nthread": threads})  # the loaded configuration carries the training's
        return XGBoostModel(booster)


class LightGBMModel:
    def __init__(self, booster: lgb.Booster, threads: int) -> None:
        self.booster = booster
        self.threads = threads

    def predict(self, x: Floats) -> Floats:
        return np.asarray(self.booster.predict(x, num_threads=self.threads), dtype=np.float64)

    def predict_row(self, x: Floats) -> float:
        return float(np.asarray(self.booster.predict(x.reshape(1, -1), num_threads=1))[0])

    def to_bytes(self) -> bytes:
        return self.booster.model_to_string().encode()


class LightGBMKind:
    name = "lightgbm"
    suffix = ".txt"

    def hyperparameters(self, given: Mapping[str, Any]) -> dict[str, Any]:
        return _validated(given)

    def fit(self, task: Task, x: Floats, y: Floats, params: Mapping[str, Any], seed: int, threads: int) -> Trained:
        p = TreeParams.model_validate(dict(params))
        options = {
            "objective": "binary" if task == "direction" else "regression",
            "learning_rate": p.learning_rate,
            "max_depth": p.max_depth,
            "num_leaves": max(2, min(2**p.max_depth - 1, 255)),
            "bagging_fraction": p.subsample,
            "bagging_freq": 1 if p.subsample < 1.0 else 0,
            "feature_fraction": p.colsample,
            "lambda_l2": p.l2,
            "min_data_in_leaf": p.min_child_samples,
            "seed": seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": threads,
            "verbose": -1,
        }
        data = lgb.Dataset(x, label=y, params={"verbose": -1, "num_threads": threads})
        return LightGBMModel(lgb.train(options, data, num_boost_round=p.n_estimators), threads)

    def load(self, task: Task, artifact: bytes, threads: int) -> Trained:
        return LightGBMModel(lgb.Booster(model_str=artifact.decode()), threads)


def register() -> None:
    """Register the tree kinds (``shared.ml.kinds.kind_of`` does it on first use)."""
    register_kind(XGBoostKind())
    register_kind(LightGBMKind())


#: The kinds this module provides.
TREE_KINDS = ("xgboost", "lightgbm")

__all__ = ["TREE_KINDS", "LightGBMKind", "TreeParams", "XGBoostKind", "register"]
