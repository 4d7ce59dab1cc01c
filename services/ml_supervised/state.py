"""What ml-supervised's routes and handlers share while it runs, reached as ``MlSupervisedDep``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import httpx

from services.ml_supervised.inference import Champions
from services.ml_supervised.lifecycle import Lifecycle
from services.ml_supervised.settings import MlSupervisedSettings
from shared.kit.service import state_of
from shared.ml.jobs import JobRunner, JobStore
from shared.ml.registry import ModelRegistry


@dataclass(frozen=True)
class MlSupervised:
    settings: MlSupervisedSettings
    registry: ModelRegistry
    jobs: JobStore
    runner: JobRunner
    champions: Champions
    lifecycle: Lifecycle
    clock: Callable[[], dt.datetime]
    #: Where sequence models' ad-hoc predictions are forwarded (ml-deep-learning), and the client.
    http: httpx.AsyncClient
    deep_url: str


#: ``service: MlSupervisedDep`` in a route's parameters gives the running service's state.
MlSupervisedDep = Annotated[MlSupervised, state_of(MlSupervised)]
