"""What feature-engineering's routes and handlers share while it runs, reached as ``FeatureEngineeringDep``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from services.feature_engineering.pipeline import FeaturePipeline
from services.feature_engineering.settings import FeatureEngineeringSettings
from shared.kit.service import state_of


@dataclass(frozen=True)
class FeatureEngineering:
    settings: FeatureEngineeringSettings
    pipeline: FeaturePipeline


#: ``service: FeatureEngineeringDep`` in a route's parameters gives the running service's state.
FeatureEngineeringDep = Annotated[FeatureEngineering, state_of(FeatureEngineering)]
