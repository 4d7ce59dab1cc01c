"""Online inference of the sequence models: a window of the series' last vectors per champion.

For a vector and a champion of its symbol and timeframe: the vector must be the model's feature
list (``shared.ml.inference.check``: ``feature_list_mismatch`` / ``features_missing`` otherwise);
then the ``window`` bars ending at it must all be kept (``window_incomplete`` until the series
has that many), each with the model's feature list and every value. The model sees them as one
window, oldest first, and predicts; anything short of that is a ``PredictionRefused``.
"""

from __future__ import annotations

import numpy as np

from services.ml_deep_learning.windows import Row, Windows
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
from shared.ml.registry import ModelRegistry
from shared.ml.sequence import SEQUENCE_KINDS


def window_of(loaded: Loaded) -> int:
    return int(loaded.record.hyperparameters["window"])


def predict_window(loaded: Loaded, rows: list[Row]) -> Output:
    """The model's output for a window of rows, oldest first (``Refusal`` if it is not a full, complete one)."""
    record = loaded.record
    window = window_of(loaded)
    if len(rows) < window:
        raise Refusal("window_incomplete", f"{len(rows)} of the {window} bars the model looks at so far")
    for row in rows:
        differs = mismatch(record.features, row.names)
        if differs is not None:
            raise Refusal("feature_list_mismatch", f"the window's bar at {row.ts}: {differs}")
        absent = [n for n, v in zip(row.names, row.values, strict=True) if v is None]
        if absent:
            raise Refusal("features_missing", f"the window's bar at {row.ts} has no value for {absent[:20]}")
    x = np.array([row.values for row in rows], dtype=np.float64)
    return output_of(record, loaded.model.predict_row(x))


class SequenceChampions(ChampionSet):
    """The champion LSTM and Transformer models, loaded and ready, predicting from windows."""

    def __init__(self, registry: ModelRegistry) -> None:
        super().__init__(registry, SEQUENCE_KINDS)

    def on_vector(self, vector: FeatureVector, windows: Windows) -> tuple[list[Prediction], list[PredictionRefused]]:
        """A prediction (or a refusal) from every champion of the vector's symbol and timeframe."""
        predictions: list[Prediction] = []
        refusals: list[PredictionRefused] = []
        for loaded in self.loaded.values():
            record = loaded.record
            if vector.symbol not in record.symbols or vector.timeframe != record.timeframe:
                continue
            try:
                check(record, vector.features)
                out = predict_window(loaded, windows.ending_at(vector, window_of(loaded)))
            except Refusal as refusal:
                refusals.append(refusal_event(record, vector, refusal))
                continue
            predictions.append(prediction_event(record, vector, out))
        return predictions, refusals


__all__ = ["SequenceChampions", "predict_window", "window_of"]
