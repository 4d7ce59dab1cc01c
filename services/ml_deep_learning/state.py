"""What ml-deep-learning's routes and handlers share while it runs, reached as ``MlDeepLearningDep``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from services.ml_deep_learning.inference import SequenceChampions
from services.ml_deep_learning.settings import MlDeepLearningSettings
from services.ml_deep_learning.windows import Windows
from shared.kit.service import state_of
from shared.ml.jobs import JobRunner
from shared.ml.lifecycle import Lifecycle
from shared.ml.registry import ModelRegistry


@dataclass(frozen=True)
class MlDeepLearning:
    settings: MlDeepLearningSettings
    registry: ModelRegistry
    runner: JobRunner
    champions: SequenceChampions
    lifecycle: Lifecycle
    windows: Windows


#: ``service: MlDeepLearningDep`` in a route's parameters gives the running service's state.
MlDeepLearningDep = Annotated[MlDeepLearning, state_of(MlDeepLearning)]
