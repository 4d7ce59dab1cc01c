"""ai-orchestration's HTTP API (the gateway routes ``/api/v1/orchestration`` here)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.ai_orchestration.state import OrchestrationDep
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import MARKET_READ
from shared.events import Symbol, Timeframe
from shared.strategies.rsi import RULE_KIND, RULE_NAME, RULE_VERSION

router = APIRouter(prefix="/api/v1/orchestration", tags=["orchestration"])


@router.get("/members", operation_id="orchestration_members", summary="Ensemble members of a series, with weights")
async def members(
    service: OrchestrationDep,
    _: Annotated[Principal, require(MARKET_READ)],
    symbol: Annotated[Symbol, Query(description="e.g. EURUSD")],
    timeframe: Timeframe = Timeframe.M1,
) -> dict[str, Any]:
    """Every member of the series' ensemble: the champions, the RSI rule, and any model whose
    predictions are being scored. ``hit_rate`` is over the member's rolling window of scored
    predictions (``null`` until it has ``min_outcomes``), ``weight`` its share of the ensemble
    if all listed members voted (flagged ones count nothing)."""
    orchestrator = service.orchestrator
    state = orchestrator.state(symbol, timeframe)
    champions = {str(c.model_id): c for c in await orchestrator.champions.of(symbol, timeframe)}
    rows: dict[str, dict[str, Any]] = {}
    for who, champion in champions.items():
        rows[who] = {
            "model_id": who,
            "name": champion.name,
            "version": champion.version,
            "kind": champion.kind,
            "champion": True,
            "flagged": champion.flagged,
            "flag_reason": champion.flag_reason,
        }
    for who, info in state.members.items():
        rows.setdefault(
            who,
            {
                "model_id": who,
                "name": info.name,
                "version": info.version,
                "kind": info.kind,
                "champion": False,
                "flagged": orchestrator.champions.flagged_id(who),
                "flag_reason": None,
            },
        )
    rows[RULE_NAME] = {
        "model_id": None,
        "name": RULE_NAME,
        "version": RULE_VERSION,
        "kind": RULE_KIND,
        "champion": True,
        "flagged": False,
        "flag_reason": None,
        "position": state.rsi.position,
        "bars": state.rsi.bars,
        "mature": state.rsi.bars >= service.settings.rsi_maturity_bars,
    }
    raw = {
        who: 0.0 if row["flagged"] or not row["champion"] else state.hits.raw_weight(who) for who, row in rows.items()
    }
    total = sum(raw.values())
    for who, row in rows.items():
        row["hit_rate"] = state.hits.hit_rate(who)
        row["outcomes"] = state.hits.outcomes(who)
        row["weight"] = raw[who] / total if total > 0 else 0.0
    return {
        "symbol": symbol,
        "timeframe": timeframe.value,
        # The signals' position and who opened it (the rule's own view is in its member row).
        "position": state.book.position,
        "position_owner": state.book.owner,
        "members": sorted(rows.values(), key=lambda r: (r["name"], r["version"])),
        "calibration": {"outcomes": state.calibration.observed()},
    }
