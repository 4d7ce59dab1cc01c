"""What every model service's online inference shares: the feature-list rule, the refusal, and
the ``Prediction`` / ``PredictionRefused`` events (ids from ``prediction_id``, so a redelivered
vector gives the same events).

A model predicts only from features whose names are its own, in its order; anything else is a
``Refusal`` (``feature_list_mismatch``, naming the differences), and a missing value it needs is
one too (``features_missing``): never a silent wrong prediction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.events import FeatureVector, Prediction, PredictionRefused, now_ns, prediction_id
from shared.ml.artifacts import ArtifactIntegrityError
from shared.ml.kinds import Trained, score
from shared.ml.registry import ModelRecord, ModelRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    """A registered model and the model itself, ready to predict."""

    record: ModelRecord
    model: Trained


class ChampionSet:
    """The champion models of ``kinds``, loaded (artifact sha256 checked) and kept in ``loaded``."""

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


@dataclass(frozen=True)
class Output:
    """One model's output for one input, as a ``Prediction`` carries it."""

    score: float
    probability_up: float | None
    expected_return: float | None


class Refusal(ValueError):
    """The model does not predict from this input: ``reason`` (a ``ReasonCode``) and ``detail``."""

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


def check(record: ModelRecord, features: Mapping[str, float | None]) -> None:
    """``Refusal`` unless ``features`` are exactly the model's, in order, each with a value."""
    differs = mismatch(record.features, list(features))
    if differs is not None:
        raise Refusal("feature_list_mismatch", differs)
    absent = [n for n in record.features if features[n] is None]
    if absent:
        raise Refusal("features_missing", f"no value yet for {absent[:20]}")


def output_of(record: ModelRecord, raw: float) -> Output:
    """A model's raw output (probability of up, or expected log return) as a prediction's fields."""
    s = score(record.task, raw, record.score_scale)
    if record.task == "direction":
        return Output(s, min(1.0, max(0.0, raw)), None)
    return Output(s, None, raw)


def prediction_event(record: ModelRecord, vector: FeatureVector, out: Output) -> Prediction:
    """The model's prediction from ``vector`` (id: ``prediction_id(model, vector)``)."""
    return Prediction(
        event_id=prediction_id(record.id, vector.event_id),
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


def refusal_event(record: ModelRecord, vector: FeatureVector, refusal: Refusal) -> PredictionRefused:
    """The model's refusal of ``vector`` (same id as the prediction it replaces)."""
    return PredictionRefused(
        event_id=prediction_id(record.id, vector.event_id),
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


__all__ = [
    "ChampionSet",
    "Loaded",
    "Output",
    "Refusal",
    "check",
    "mismatch",
    "output_of",
    "prediction_event",
    "refusal_event",
]
