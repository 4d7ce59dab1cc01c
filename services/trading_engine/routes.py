"""trading-engine's HTTP API (the gateway routes ``/api/v1/<area>`` by ``shared.ports.ROUTES``)."""

from __future__ import annotations

from fastapi import APIRouter

from services.trading_engine.state import TradingEngineDep

router = APIRouter(prefix="/api/v1/trading", tags=["trading"])


@router.get("/about", operation_id="trading_engine_about", summary="What this service is")
async def about(service: TradingEngineDep) -> dict[str, str]:
    return {"service": "trading-engine"}
