"""trading-engine's HTTP API: ``/api/v1/orders``, ``/fills``, ``/positions``, ``/accounts``.

Everything is tenant-scoped: an order, fill, position or account of another tenant answers 404,
exactly as one that does not exist. Reads and orders need the ``trade`` scope; adding accounts ``admin``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse

from services.trading_engine import accounts
from services.trading_engine.drift import position_drift
from services.trading_engine.orders import idempotency, repository
from services.trading_engine.orders.manager import InvalidOrder, NotFound, OrderConflict, VenueUnavailable
from services.trading_engine.orders.models import Order, OrderRequest
from services.trading_engine.state import TradingEngineDep
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import ADMIN, TRADE
from shared.events import ExternalId, OrderState, Symbol
from shared.kit.problems import Problem

orders_router = APIRouter(prefix="/api/v1/orders", tags=["orders"])
fills_router = APIRouter(prefix="/api/v1/fills", tags=["orders"])
positions_router = APIRouter(prefix="/api/v1/positions", tags=["orders"])
accounts_router = APIRouter(prefix="/api/v1/accounts", tags=["accounts"])
routers = (orders_router, fills_router, positions_router, accounts_router)

Trader = Annotated[Principal, require(TRADE)]
Admin = Annotated[Principal, require(ADMIN)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")
]


def _created(order: Order) -> JSONResponse:
    return JSONResponse(order.public(), status_code=201, headers={"Location": f"/api/v1/orders/{order.id}"})


@orders_router.post("", status_code=201, operation_id="place_order", summary="Place an order")
async def place_order(
    request: OrderRequest, engine: TradingEngineDep, principal: Trader, key: IdempotencyKey = None
) -> JSONResponse:
    """Answers 201 with the order as it stands after the venue took it (or ``rejected``, with its
    reason code). ``Idempotency-Key``: the same key and body answer the first answer again; the same
    key with another body is 409."""
    try:
        placed = await engine.orders.place(
            request, tenant=principal.tenant, actor=principal.subject, idempotency_key=key
        )
    except InvalidOrder as exc:
        raise Problem(422, f"body.{exc}", errors=[{"loc": ["body", exc.field], "msg": str(exc)}]) from None
    except NotFound as exc:
        raise Problem(404, str(exc)) from None
    except (OrderConflict, idempotency.IdempotencyMismatch) as exc:
        raise Problem(409, str(exc)) from None
    if isinstance(placed, Order):
        if key is None:
            return _created(placed)
        # Normally this request's own answer; a replay that found none in time may have stored the
        # order's state first, and the first stored answer is the one every replay gets.
        stored = await idempotency.answer(engine.pool, principal.tenant, key, 201, placed.public())
        return _replayed(stored)
    replay = placed
    if replay.body is None:
        replay = (
            await idempotency.wait_for_answer(
                engine.pool, principal.tenant, key or "", engine.settings.idempotency_wait_s
            )
            or replay
        )
    if replay.body is None:
        # The first request is still submitting, or died after storing its order: answer the
        # order as it stands, and let that be the key's answer from now on.
        async with engine.pool.acquire() as conn:
            order = await repository.order_by_id(conn, principal.tenant, replay.order_id)
        assert order is not None  # the key and its order were committed together
        replay = await idempotency.answer(engine.pool, principal.tenant, key or "", 201, order.public())
    return _replayed(replay)


def _replayed(replay: idempotency.Replay) -> JSONResponse:
    assert replay.status is not None and replay.body is not None
    return JSONResponse(
        replay.body, status_code=replay.status, headers={"Location": f"/api/v1/orders/{replay.order_id}"}
    )


@orders_router.get("", operation_id="list_orders", summary="The tenant's orders, newest first")
async def list_orders(
    engine: TradingEngineDep,
    principal: Trader,
    account_id: ExternalId | None = None,
    state: OrderState | None = None,
    symbol: Annotated[Symbol | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    query = repository.OrderFilter(principal.tenant, account_id, state, symbol, limit, offset)
    async with engine.pool.acquire() as conn:
        orders, total = await repository.list_orders(conn, query)
    return {"items": [o.public() for o in orders], "total": total, "limit": limit, "offset": offset}


@orders_router.get("/{order_id}", operation_id="get_order", summary="One order")
async def get_order(order_id: uuid.UUID, engine: TradingEngineDep, principal: Trader) -> dict[str, Any]:
    async with engine.pool.acquire() as conn:
        order = await repository.order_by_id(conn, principal.tenant, order_id)
    if order is None:
        raise Problem(404, f"no order {order_id}")
    return order.public()


@orders_router.delete("/{order_id}", status_code=202, operation_id="cancel_order", summary="Cancel an order")
async def cancel_order(
    order_id: uuid.UUID, engine: TradingEngineDep, principal: Trader, response: Response
) -> dict[str, Any]:
    """Asks the venue to cancel: 202 with the order as it stands (``canceled`` once the venue
    confirmed, which may come later: follow ``GET``). 409 if the order is already over."""
    try:
        order = await engine.orders.cancel(principal.tenant, order_id)
    except NotFound as exc:
        raise Problem(404, str(exc)) from None
    except OrderConflict as exc:
        raise Problem(409, str(exc)) from None
    except VenueUnavailable as exc:
        raise Problem(503, str(exc), headers={"Retry-After": "5"}) from None
    return order.public()


@fills_router.get("", operation_id="list_fills", summary="The tenant's fills, newest first")
async def list_fills(
    engine: TradingEngineDep,
    principal: Trader,
    account_id: ExternalId | None = None,
    order_id: uuid.UUID | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    async with engine.pool.acquire() as conn:
        fills, total = await repository.list_fills(
            conn, principal.tenant, account_id=account_id, order_id=order_id, limit=limit, offset=offset
        )
    return {"items": fills, "total": total, "limit": limit, "offset": offset}


@positions_router.get("", operation_id="list_positions", summary="The tenant's net positions")
async def list_positions(
    engine: TradingEngineDep, principal: Trader, account_id: ExternalId | None = None
) -> dict[str, Any]:
    async with engine.pool.acquire() as conn:
        return {"items": await repository.list_positions(conn, principal.tenant, account_id)}


@positions_router.get("/drift", operation_id="position_drift", summary="Where positions differ from the venue's")
async def drift(engine: TradingEngineDep, principal: Trader) -> dict[str, Any]:
    """Every account and symbol of the tenant whose net quantity here differs from its venue's (fills
    not yet reconciled, or positions opened outside the platform). Empty when all agree."""
    found = await position_drift(engine.pool, engine.orders.venues, principal.tenant)
    return {"items": [d.public() for d in found]}


@accounts_router.get("", operation_id="list_accounts", summary="The tenant's accounts and their money")
async def list_accounts(engine: TradingEngineDep, principal: Trader) -> dict[str, Any]:
    return {"items": await accounts.list_accounts(engine.pool, principal.tenant)}


@accounts_router.get("/{account_id}", operation_id="get_account", summary="One account and its money")
async def get_account(account_id: str, engine: TradingEngineDep, principal: Trader) -> dict[str, Any]:
    found = await accounts.list_accounts(engine.pool, principal.tenant, account_id)
    if not found:
        raise Problem(404, f"no account {account_id}")
    return found[0]


@accounts_router.post("", status_code=201, operation_id="create_account", summary="Add an account on a venue")
async def create_account(spec: accounts.AccountCreate, engine: TradingEngineDep, principal: Admin) -> dict[str, Any]:
    """The caller's tenant's, unless a platform admin names another ``tenant`` (a tenant admin naming
    another tenant gets 404, as for one that does not exist)."""
    tenant = principal.tenant
    if spec.tenant is not None and spec.tenant != principal.tenant:
        if not principal.is_platform_admin:
            raise Problem(404, f"no tenant {spec.tenant}")
        tenant = spec.tenant
    return await accounts.create_account(engine.pool, tenant, spec)
