"""ml-supervised's HTTP API (the gateway routes ``/api/v1/<area>`` by ``shared.ports.ROUTES``)."""

from __future__ import annotations

from fastapi import APIRouter

from services.ml_supervised.state import MlSupervisedDep

router = APIRouter(prefix="/api/v1/ml", tags=["ml"])


@router.get("/about", operation_id="ml_supervised_about", summary="What this service is")
async def about(service: MlSupervisedDep) -> dict[str, str]:
    return {"service": "ml-supervised"}
