"""ml-supervised's feeds (``shared.ml.service.subscribe_model_feeds``): feature vectors -> one
prediction per champion tree model, lifecycle -> champions reloaded, drift -> models flagged."""

from __future__ import annotations

from typing import Any

from services.ml_supervised.inference import Champions
from services.ml_supervised.settings import MlSupervisedSettings
from shared.bus.pacing import PollPacer
from shared.kit.service import Runtime
from shared.ml.lifecycle import Lifecycle
from shared.ml.service import subscribe_model_feeds

VECTORS_GROUP = "ml-supervised"
DRIFT_GROUP = "ml-supervised.drift"


def subscribe(rt: Runtime[MlSupervisedSettings, Any], champions: Champions, lifecycle: Lifecycle) -> PollPacer:
    return subscribe_model_feeds(
        rt,
        vectors_group=VECTORS_GROUP,
        drift_group=DRIFT_GROUP,
        champions=champions,
        lifecycle=lifecycle,
        predict=champions.on_vector,
    )


__all__ = ["DRIFT_GROUP", "VECTORS_GROUP", "subscribe"]
