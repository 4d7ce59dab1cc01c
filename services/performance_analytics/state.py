"""What performance-analytics's routes and handlers share while it runs, reached as ``PerformanceAnalyticsDep``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from services.performance_analytics.settings import PerformanceAnalyticsSettings
from shared.kit.service import state_of


@dataclass(frozen=True)
class PerformanceAnalytics:
    settings: PerformanceAnalyticsSettings


#: ``service: PerformanceAnalyticsDep`` in a route's parameters gives the running service's state.
PerformanceAnalyticsDep = Annotated[PerformanceAnalytics, state_of(PerformanceAnalytics)]
