"""performance-analytics's HTTP API under ``/api/v1/performance`` (scope ``trade``, tenant scoped).

An account is its tenant's: another tenant's account id is 404, exactly as an account that
does not exist (the tenant comes from the caller's token and, for the data, from the fills).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from services.performance_analytics.accounting import ZERO
from services.performance_analytics.chart import equity_svg
from services.performance_analytics.ledger import ACCOUNT, SCOPE_KINDS, AccountLedger, ClosedResult, Scope
from services.performance_analytics.reports import (
    iso,
    model_json,
    money,
    pnl_json,
    positions_json,
    scope_report,
    trades_json,
)
from services.performance_analytics.state import PerformanceAnalytics, PerformanceAnalyticsDep
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import TRADE
from shared.kit.problems import Problem

router = APIRouter(prefix="/api/v1/performance", tags=["performance"])

Caller = Annotated[Principal, require(TRADE)]
AccountId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")]
From = Annotated[dt.datetime | None, Query(alias="from", description="ISO 8601, inclusive")]
To = Annotated[dt.datetime | None, Query(alias="to", description="ISO 8601, inclusive")]


def _ledger(service: PerformanceAnalytics, caller: Principal, account_id: str) -> AccountLedger:
    ledger = service.analytics.ledger(caller.tenant, account_id)
    if ledger is None:
        raise Problem(404, f"no fills of account {account_id}")
    return ledger


def _window(start: dt.datetime | None, end: dt.datetime | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    def utc(value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

    start, end = utc(start), utc(end)
    if start is not None and end is not None and end < start:
        raise Problem(422, "to: must not be before from")
    return start, end


async def _report(service: PerformanceAnalytics, ledger: AccountLedger, scope: Scope) -> dict[str, Any]:
    pnl = ledger.pnl(service.analytics.marks)[scope]
    curve = await service.store.curve(ledger.tenant, ledger.account_id, scope)
    return scope_report(
        ledger, scope, pnl, curve, service.settings.capital_usd, service.now_ns(), service.settings.returns_period_s
    )


@router.get("/accounts", operation_id="performance_accounts", summary="The caller's tenant's accounts with fills")
async def accounts(service: PerformanceAnalyticsDep, caller: Caller) -> list[dict[str, Any]]:
    """Each account's equity and PnL now (no statistics: see ``/accounts/{id}``)."""
    out = []
    for ledger in service.analytics.ledgers_of(caller.tenant):
        pnl = ledger.pnl(service.analytics.marks)[ACCOUNT]
        out.append(
            {
                "account_id": ledger.account_id,
                "fills": ledger.fills,
                **pnl_json(pnl, service.settings.capital_usd),
            }
        )
    return out


@router.get("/accounts/{account_id}", operation_id="performance_account", summary="An account's performance")
async def account(service: PerformanceAnalyticsDep, caller: Caller, account_id: AccountId) -> dict[str, Any]:
    """PnL (realised, commissions, unrealised), equity, exposure, open positions, trade statistics
    (win rate, profit factor, averages), Sharpe, Sortino and drawdown (docs/performance.md), and
    the account's orders counted by their current state."""
    ledger = _ledger(service, caller, account_id)
    report = await _report(service, ledger, ACCOUNT)
    return {
        "account_id": ledger.account_id,
        "fills": ledger.fills,
        "first_fill": iso(ledger.first_ns),
        "last_fill": iso(ledger.last_ns),
        "as_of": iso(service.now_ns()),
        **report,
        "orders": await service.store.order_states(ledger.tenant, ledger.account_id),
        "positions": positions_json(ledger, service.analytics.marks),
    }


#: The path of each scope kind's list.
PLURAL = {"symbol": "symbols", "strategy": "strategies", "bot": "bots", "model": "models"}


def _scope_route(kind: str) -> None:
    async def by_scope(service: PerformanceAnalyticsDep, caller: Caller, account_id: AccountId) -> list[dict[str, Any]]:
        ledger = _ledger(service, caller, account_id)
        scopes = sorted(s for s in ledger.pnl(service.analytics.marks) if s[0] == kind)
        return [await _report(service, ledger, scope) for scope in scopes]

    router.add_api_route(
        f"/accounts/{{account_id}}/{PLURAL[kind]}",
        by_scope,
        methods=["GET"],
        operation_id=f"performance_account_{PLURAL[kind]}",
        summary=f"An account's performance per {kind}",
        description=f"The account's statistics for each {kind} it traded (docs/performance.md: scopes).",
    )


for _kind in SCOPE_KINDS[1:]:
    _scope_route(_kind)


@router.get("/models", operation_id="performance_models", summary="Every model's results across the tenant's accounts")
async def models(service: PerformanceAnalyticsDep, caller: Caller) -> list[dict[str, Any]]:
    """Per model version (``name:version``): its attributed PnL summed over the tenant's accounts,
    its closed trades, hit rate and calibration. (Per-account Sharpe etc.: ``/accounts/{id}/models``.)"""
    results: dict[str, list[ClosedResult]] = {}
    sums: dict[str, tuple[Decimal, Decimal, Decimal]] = {}
    for ledger in service.analytics.ledgers_of(caller.tenant):
        for scope, pnl in ledger.pnl(service.analytics.marks).items():
            if scope[0] != "model":
                continue
            results.setdefault(scope[1], []).extend(ledger.closed(scope))
            r, c, u = sums.get(scope[1], (ZERO, ZERO, ZERO))
            sums[scope[1]] = (r + pnl.realised, c + pnl.commission, u + pnl.unrealised)
    out = []
    for name in sorted(sums):
        r, c, u = sums[name]
        out.append(
            {
                "model": name,
                "pnl": {
                    "realised": money(r),
                    "commission": money(c),
                    "realised_net": money(r - c),
                    "unrealised": money(u),
                    "total": money(r - c + u),
                },
                "trades": trades_json(results[name]),
                **model_json(results[name]),
            }
        )
    return out


@router.get("/accounts/{account_id}/equity", operation_id="performance_equity", summary="An account's equity curve")
async def equity(
    service: PerformanceAnalyticsDep, caller: Caller, account_id: AccountId, start: From = None, end: To = None
) -> dict[str, Any]:
    """The stored snapshots within ``[from, to]`` (one per snapshot interval), oldest first."""
    ledger = _ledger(service, caller, account_id)
    start, end = _window(start, end)
    limit = service.settings.max_equity_points
    curve = await service.store.curve(ledger.tenant, ledger.account_id, ACCOUNT, start, end, limit=limit + 1)
    if len(curve.ts_ms) > limit:
        raise Problem(422, f"from: more than {limit} points in the window; narrow it")
    points = [
        {"ts": iso(int(t) * 1_000_000), "equity": e, "realised": r, "commission": c, "unrealised": u}
        for t, e, r, c, u in zip(
            curve.ts_ms.tolist(),
            curve.equity.tolist(),
            curve.realised.tolist(),
            curve.commission.tolist(),
            curve.unrealised.tolist(),
            strict=True,
        )
    ]
    return {"account_id": ledger.account_id, "capital": money(service.settings.capital_usd), "points": points}


@router.get(
    "/accounts/{account_id}/equity.svg",
    operation_id="performance_equity_chart",
    summary="An account's equity curve as an SVG chart",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}},
)
async def equity_chart(
    service: PerformanceAnalyticsDep, caller: Caller, account_id: AccountId, start: From = None, end: To = None
) -> Response:
    ledger = _ledger(service, caller, account_id)
    start, end = _window(start, end)
    limit = service.settings.max_equity_points
    curve = await service.store.curve(ledger.tenant, ledger.account_id, ACCOUNT, start, end, limit=limit + 1)
    if len(curve.ts_ms) > limit:
        raise Problem(422, f"from: more than {limit} points in the window; narrow it")
    svg = equity_svg(curve.ts_ms, curve.equity, f"Equity of {ledger.account_id} (USD)")
    return Response(svg, media_type="image/svg+xml")
