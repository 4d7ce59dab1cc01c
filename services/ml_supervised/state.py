"""What ml-supervised's routes and handlers share while it runs, reached as ``MlSupervisedDep``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from services.ml_supervised.settings import MlSupervisedSettings
from shared.kit.service import state_of


@dataclass(frozen=True)
class MlSupervised:
    settings: MlSupervisedSettings


#: ``service: MlSupervisedDep`` in a route's parameters gives the running service's state.
MlSupervisedDep = Annotated[MlSupervised, state_of(MlSupervised)]
