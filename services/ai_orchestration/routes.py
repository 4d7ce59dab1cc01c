"""ai-orchestration's HTTP API (the gateway routes ``/api/v1/<area>`` by ``shared.ports.ROUTES``)."""

from __future__ import annotations

from fastapi import APIRouter

from services.ai_orchestration.state import AiOrchestrationDep

router = APIRouter(prefix="/api/v1/ai", tags=["ai"])


@router.get("/about", operation_id="ai_orchestration_about", summary="What this service is")
async def about(service: AiOrchestrationDep) -> dict[str, str]:
    return {"service": "ai-orchestration"}
