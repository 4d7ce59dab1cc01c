"""The MT5 venue's link, server side: ``/api/v1/venues/mt5/*``, called by metatrader-connector
through the gateway with its own client (scope ``venue``; docs/trading-mt5.md).

An account is served only to a link of its own tenant, and only if it is an MT5 account: any
other account answers 404, as one that does not exist.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.trading_engine.state import TradingEngineDep
from services.trading_engine.venues.mt5 import Mt5Venue
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import VENUE
from shared.events import ExternalId
from shared.kit.problems import Problem
from shared.mt5_link import MAX_WAIT_S, Mt5Reports, Mt5Snapshot

router = APIRouter(prefix="/api/v1/venues/mt5", tags=["venues"])
Link = Annotated[Principal, require(VENUE)]


async def _venue_for(engine: Any, principal: Principal, account_id: str) -> Mt5Venue:
    venue: Mt5Venue | None = engine.mt5
    if venue is None:
        raise Problem(404, "this engine has no MT5 venue")
    if await venue.tenant_of(account_id) != principal.tenant:
        raise Problem(404, f"no MT5 account {account_id}")
    return venue


@router.get("/commands", operation_id="take_mt5_commands", summary="Long poll: the commands for an MT5 account")
async def take_commands(
    engine: TradingEngineDep,
    principal: Link,
    account: Annotated[ExternalId, Query(description="the platform's MT5 account this terminal serves")],
    wait_s: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = MAX_WAIT_S,
) -> dict[str, Any]:
    """Answers as soon as commands are queued for the account, or with none after ``wait_s``. A
    command handed out before and never answered comes again (``attempt`` > 1)."""
    venue = await _venue_for(engine, principal, account)
    commands = await venue.take_commands(principal.tenant, [account], wait_s)
    return {"commands": [c.model_dump(mode="json") for c in commands]}


@router.post("/reports", operation_id="report_mt5", summary="What the terminal did with the platform's orders")
async def report(engine: TradingEngineDep, principal: Link, body: Mt5Reports) -> dict[str, int]:
    """Applied in order, each idempotently (a fill by its deal ticket): send again until acknowledged."""
    venue = await _venue_for(engine, principal, body.account_id)
    await venue.accept_reports(body)
    return {"accepted": len(body.reports)}


@router.put("/snapshot", operation_id="put_mt5_snapshot", summary="The terminal's orders, positions and deals")
async def snapshot(engine: TradingEngineDep, principal: Link, body: Mt5Snapshot) -> dict[str, int]:
    """Kept as the account's latest (an older one arriving late is ignored), for reconciliation."""
    venue = await _venue_for(engine, principal, body.account_id)
    await venue.accept_snapshot(principal.tenant, body)
    return {"orders": len(body.orders), "positions": len(body.positions), "deals": len(body.deals)}
