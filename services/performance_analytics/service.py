"""performance-analytics (8002): PnL, equity, risk/return metrics, per-model attribution."""

from __future__ import annotations

from services.performance_analytics.routes import router
from services.performance_analytics.settings import PerformanceAnalyticsSettings
from services.performance_analytics.state import PerformanceAnalytics
from shared.kit.contract import Contract
from shared.kit.service import Runtime, ServiceDefinition

#: What this service publishes (event classes), consumes (Consumes(event, group, purpose)) and calls.
CONTRACT = Contract()


async def start(rt: Runtime[PerformanceAnalyticsSettings, PerformanceAnalytics]) -> PerformanceAnalytics:
    """Wire the service: publishers and subscribers from rt.bus, pools from rt.postgres..., and
    rt.background(...) for loops. Everything declared in CONTRACT must be used here."""
    return PerformanceAnalytics(rt.settings)


SERVICE = ServiceDefinition(
    "performance-analytics",
    settings=PerformanceAnalyticsSettings,
    contract=CONTRACT,
    uses=(),  # e.g. (Postgres(), Bus(), TokenAuth()) from shared.kit.deps
    routers=(router,),
    start=start,
)
