"""pattern-validator's HTTP API (the gateway routes ``/api/v1/<area>`` by ``shared.ports.ROUTES``)."""

from __future__ import annotations

from fastapi import APIRouter

from services.pattern_validator.state import PatternValidatorDep

router = APIRouter(prefix="/api/v1/pattern", tags=["pattern"])


@router.get("/about", operation_id="pattern_validator_about", summary="What this service is")
async def about(service: PatternValidatorDep) -> dict[str, str]:
    return {"service": "pattern-validator"}
