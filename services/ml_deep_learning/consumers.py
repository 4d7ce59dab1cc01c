"""ml-deep-learning's feeds (``shared.ml.service.subscribe_model_feeds``): feature vectors -> windows
-> one prediction per champion sequence model, lifecycle -> champions reloaded, drift -> models flagged."""

from __future__ import annotations

from functools import partial
from typing import Any

from services.ml_deep_learning.inference import SequenceChampions
from services.ml_deep_learning.settings import MlDeepLearningSettings
from services.ml_deep_learning.windows import Windows
from shared.bus.pacing import PollPacer
from shared.events import FeatureVector
from shared.kit.service import Runtime
from shared.ml.lifecycle import Lifecycle
from shared.ml.service import subscribe_model_feeds

VECTORS_GROUP = "ml-deep-learning"
DRIFT_GROUP = "ml-deep-learning.drift"


def subscribe(
    rt: Runtime[MlDeepLearningSettings, Any], champions: SequenceChampions, windows: Windows, lifecycle: Lifecycle
) -> PollPacer:
    async def keep_windows(vectors: list[FeatureVector]) -> None:
        for vector in vectors:
            windows.add(vector)
        # Durable before the offsets commit: a restart resumes with full windows. A redelivered
        # vector gets the same window, and ids are deterministic (model, vector).
        await windows.persist(vectors)

    return subscribe_model_feeds(
        rt,
        vectors_group=VECTORS_GROUP,
        drift_group=DRIFT_GROUP,
        champions=champions,
        lifecycle=lifecycle,
        predict=partial(champions.on_vector, windows=windows),
        prepare=keep_windows,
    )


__all__ = ["DRIFT_GROUP", "VECTORS_GROUP", "subscribe"]
