"""Online inference: the champion tree models in memory, one prediction per model per feature vector.

A model predicts only from a vector whose feature names are its own, in its order; anything else
is a ``PredictionRefused`` (``feature_list_mismatch``, naming the differences), and a vector
missing a value the model needs is refused too (``features_missing``): never a silent wrong
prediction (the rule and the events are ``shared.ml.inference``'s, shared with ml-deep-learning).
Champions are loaded (artifact sha256 checked) at start and again on every ``ModelLifecycle`` event.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from shared.events import FeatureVector, Prediction, PredictionRefused
from shared.ml.inference import (
    ChampionSet,
    Loaded,
    Output,
    Refusal,
    check,
    mismatch,
    output_of,
    prediction_event,
    refusal_event,
)


def predict(loaded: Loaded, features: Mapping[str, float | None]) -> Output:
    """The model's output for ``features`` (``Refusal`` if they are not exactly its own, or incomplete)."""
    record = loaded.record
    check(record, features)
    row = np.fromiter((features[n] for n in record.features), dtype=np.float64, count=len(record.features))
    return output_of(record, loaded.model.predict_row(row))


class Champions(ChampionSet):
    """The champion tree models, loaded and ready (``ChampionSet``), predicting from feature vectors."""

    def on_vector(self, vector: FeatureVector) -> tuple[list[Prediction], list[PredictionRefused]]:
        """A prediction (or a refusal) from every champion of the vector's symbol and timeframe."""
        predictions: list[Prediction] = []
        refusals: list[PredictionRefused] = []
        for loaded in self.loaded.values():
            record = loaded.record
            if vector.symbol not in record.symbols or vector.timeframe != record.timeframe:
                continue
            try:
                out = predict(loaded, vector.features)
            except Refusal as refusal:
                refusals.append(refusal_event(record, vector, refusal))
                continue
            predictions.append(prediction_event(record, vector, out))
        return predictions, refusals


__all__ = ["Champions", "Loaded", "Output", "Refusal", "mismatch", "predict"]
