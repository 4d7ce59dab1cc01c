"""performance-analytics's HTTP API (the gateway routes ``/api/v1/<area>`` by ``shared.ports.ROUTES``)."""

from __future__ import annotations

from fastapi import APIRouter

from services.performance_analytics.state import PerformanceAnalyticsDep

router = APIRouter(prefix="/api/v1/performance", tags=["performance"])


@router.get("/about", operation_id="performance_analytics_about", summary="What this service is")
async def about(service: PerformanceAnalyticsDep) -> dict[str, str]:
    return {"service": "performance-analytics"}
