"""pattern-validator's HTTP API (the gateway routes ``/api/v1/signals`` here)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.pattern_validator.state import ValidatorDep
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import MARKET_READ
from shared.events import Symbol
from shared.kit.problems import Problem

router = APIRouter(prefix="/api/v1/signals", tags=["signals"])


@router.get("", operation_id="list_signals", summary="The latest signals of a symbol with their verdicts, newest first")
async def list_signals(
    service: ValidatorDep,
    _: Annotated[Principal, require(MARKET_READ)],
    symbol: Annotated[Symbol, Query(description="e.g. EURUSD")],
    limit: Annotated[int, Query(ge=1)] = 50,
) -> list[dict[str, Any]]:
    """Each signal with its verdict (``validated``, or ``rejected`` with ``reasons``; ``notes`` are
    findings that did not reject), direction, action, confidence and contributing models."""
    most = service.settings.max_signals_per_request
    if limit > most:
        raise Problem(422, f"limit: at most {most} signals per request")
    return await service.validator.store.latest(symbol, limit)


@router.get("/dedup", operation_id="signal_dedup_stats", summary="The signal deduplicator's statistics")
async def dedup_stats(service: ValidatorDep, _: Annotated[Principal, require(MARKET_READ)]) -> dict[str, Any]:
    return {"window_s": service.settings.dedup_window_s, **asdict(service.validator.dedup.stats)}
