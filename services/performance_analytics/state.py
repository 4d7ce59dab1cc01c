"""What performance-analytics's routes and handlers share while it runs, reached as ``PerformanceAnalyticsDep``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from services.performance_analytics.analytics import Analytics
from services.performance_analytics.settings import PerformanceAnalyticsSettings
from services.performance_analytics.snapshots import Snapshots
from services.performance_analytics.store import PerformanceStore
from shared.kit.service import state_of


@dataclass(frozen=True)
class PerformanceAnalytics:
    settings: PerformanceAnalyticsSettings
    analytics: Analytics
    store: PerformanceStore
    snapshots: Snapshots
    #: Unix seconds (``time.time`` unless a test injects a clock).
    clock: Callable[[], float] = time.time

    def now_ns(self) -> int:
        return int(self.clock() * 1_000_000_000)


#: ``service: PerformanceAnalyticsDep`` in a route's parameters gives the running service's state.
PerformanceAnalyticsDep = Annotated[PerformanceAnalytics, state_of(PerformanceAnalytics)]
