"""Online inference: the champion tree models in memory, one prediction per model per feature vector.

A model predicts only from a vector whose feature names are its own, in its order; anything else
is a ``PredictionRefused`` (``feature_list_mismatch``, naming the differences), and a vector
missing a value the model needs is refused too (``features_missing``): never a silent wrong
prediction. Champions are loaded (artifact sha256 checked) at start and again on every
``ModelLifecycle`` event.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from shared.events import FeatureVector, Prediction, PredictionRefused, now_ns, prediction_id
from shared.ml.artifacts import ArtifactIntegrityError
from shared.ml.kinds import Trained, score
from shared.ml.registry import ModelRecord, ModelRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    record: ModelRecord
    model: Trained


@dataclass(frozen=True)
class Output:
    """One model's raw output for a feature row, and the pieces of a ``Prediction``."""

    score: float
    probability_up: float | None
    expected_return: float | None


class Refusal(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def mismatch(model: Sequence[str], given: Sequence[str]) -> str | None:
    """What differs between a model's feature list and a vector's, or ``None`` if identical in order."""
    if list(model) == list(given):
        return None
    missing = [n for n in model if n not in given]
    extra = [n for n in given if n not in model]
    parts = []
    if missing:
        parts.append(f"missing {missing[:20]}")
    if extra:
        parts.append(f"unexpected {extra[:20]}")
    if not parts:
        first = next(i for i, (a, b) in enumerate(zip(model, given, strict=True)) if a != b)
        parts.append(
            f"same names in another order: position {first} is {given[first]!r}, the model has {model[first]!r}"
        )
    return f"the model's {len(model)} features vs the vector's {len(given)}: " + "; ".join(parts)


def predict(loaded: Loaded, features: Mapping[str, float | None]) -> Output:
    """The model's output for ``features`` (``Refusal`` if they are not exactly its own, or incomplete)."""
    record = loaded.record
    differs = mismatch(record.features, list(features))
    if differs is not None:
        raise Refusal("feature_list_mismatch", differs)
    absent = [n for n in record.features if features[n] is None]
    if absent:
        raise Refusal("features_missing", f"no value yet for {absent[:20]}")
    row = np.fromiter((features[n] for n in record.features), dtype=np.float64, count=len(record.features))
    raw = loaded.model.predict_row(row)
    s = score(record.task, raw, record.score_scale)
    if record.task == "direction":
        return Output(s, min(1.0, max(0.0, raw)), None)
    return Output(s, None, raw)


class Champions:
    """The champion models of the kinds this service runs, loaded and ready."""

    def __init__(self, registry: ModelRegistry, kinds: Sequence[str]) -> None:
        self.registry = registry
        self.kinds = tuple(kinds)
        self.loaded: dict[uuid.UUID, Loaded] = {}

    async def reload(self) -> None:
        """Load the current champions (an unchanged one is kept; one whose artifact fails its check is left out)."""
        current = await self.registry.champions(self.kinds)
        loaded: dict[uuid.UUID, Loaded] = {}
        for record in current:
            kept = self.loaded.get(record.id)
            if kept is not None and kept.record.artifact_sha256 == record.artifact_sha256:
                loaded[record.id] = Loaded(record, kept.model)  # the row may have changed (a flag)
                continue
            try:
                loaded[record.id] = Loaded(record, self.registry.load(record))
            except (ArtifactIntegrityError, ValueError) as exc:
                log.error("champion %s v%d (%s) not loaded: %s", record.name, record.version, record.id, exc)
        self.loaded = loaded
        log.info("champions loaded: %s", ", ".join(f"{m.record.name} v{m.record.version}" for m in loaded.values()))

    def on_vector(self, vector: FeatureVector) -> tuple[list[Prediction], list[PredictionRefused]]:
        """A prediction (or a refusal) from every champion of the vector's symbol and timeframe."""
        predictions: list[Prediction] = []
        refusals: list[PredictionRefused] = []
        for loaded in self.loaded.values():
            record = loaded.record
            if vector.symbol not in record.symbols or vector.timeframe != record.timeframe:
                continue
            event_id = prediction_id(record.id, vector.event_id)
            try:
                out = predict(loaded, vector.features)
            except Refusal as refusal:
                refusals.append(
                    PredictionRefused(
                        event_id=event_id,
                        ts_event=vector.ts_event,
                        ts_init=now_ns(),
                        symbol=vector.symbol,
                        timeframe=vector.timeframe,
                        feature_vector_id=vector.event_id,
                        model_id=record.id,
                        model_name=record.name,
                        model_version=record.version,
                        reason=refusal.reason,
                        detail=refusal.detail[:2000],
                    )
                )
                continue
            predictions.append(
                Prediction(
                    event_id=event_id,
                    ts_event=vector.ts_event,
                    ts_init=now_ns(),
                    symbol=vector.symbol,
                    timeframe=vector.timeframe,
                    feature_vector_id=vector.event_id,
                    model_id=record.id,
                    model_name=record.name,
                    model_version=record.version,
                    model_kind=record.kind,
                    task=record.task,
                    horizon_bars=record.horizon_bars,
                    score=out.score,
                    probability_up=out.probability_up,
                    expected_return=out.expected_return,
                )
            )
        return predictions, refusals


__all__ = ["Champions", "Loaded", "Output", "Refusal", "mismatch", "predict"]
