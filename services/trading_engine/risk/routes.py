"""The risk API: limits (``/api/v1/risk/limits``, scope ``admin``) and kill switches
(``/api/v1/kill-switches``: reading and tripping with ``trade``, resetting with ``admin``).

``risk_router(backend)`` builds the router; ``backend`` is a FastAPI dependency giving the engine's
``RiskBackend`` (its transaction, outbox, accounts and order cancellation). Every change runs in
one transaction with its events in the outbox; once committed, ``backend.committed(events)``
publishes them and applies them to the in-memory ``LimitsBook`` and ``KillSwitchBoard``.

Tenancy: a caller acts in its own tenant; a platform admin may name another (``tenant``). Another
tenant's account or switch answers 404, never 403. Switches of scope ``all`` and ``venue`` are the
platform's: every caller sees them (they block its orders too), only a platform admin trips or
resets them (403 otherwise). Tripping is easy on purpose (``trade``: whoever may send an order may
stop it); re-enabling needs ``admin``, a named person and a reason.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, Literal, Protocol

import asyncpg
from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from services.trading_engine.risk import store
from services.trading_engine.risk.kill_switch import PLATFORM_SCOPES, InvalidSwitch, KillSwitch, ResetRefused, trip
from services.trading_engine.risk.limits import (
    DEFAULT_LIMITS,
    InvalidLimits,
    LimitsVersion,
    effective,
    from_wire,
    parse_override,
    to_wire,
)
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import ADMIN, PLATFORM_TENANT, TRADE
from shared.events import Event
from shared.kit.problems import Problem


class RiskBackend(Protocol):
    """What the risk routes need from the engine."""

    def transaction(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """A connection in a new transaction, committed when the block ends without error."""
        ...

    async def record(self, conn: asyncpg.Connection, events: Sequence[Event]) -> None:
        """Write ``events`` to the outbox in ``conn``'s transaction."""
        ...

    async def committed(self, events: Sequence[Event]) -> None:
        """After the commit: publish ``events`` and apply them to the in-memory book and board."""
        ...

    async def account_exists(self, conn: asyncpg.Connection, tenant: str, account_id: str) -> bool: ...

    async def cancel_in_scope(self, conn: asyncpg.Connection, switch: KillSwitch) -> int:
        """Cancel every open order ``switch.covers`` (in ``conn``'s transaction); how many."""
        ...

    def now_ns(self) -> int: ...


WireLimits = dict[str, str | int | bool | list[str] | None]


class LimitsChange(BaseModel):
    """A new version: the tenant's whole set (missing limits take their defaults) or an account's overrides."""

    model_config = ConfigDict(extra="forbid")

    limits: WireLimits
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class LimitsPublic(BaseModel):
    tenant: str
    account_id: str | None = None
    #: 0 while the tenant (or account) never set limits: the defaults (or the tenant's) apply.
    version: int
    #: The tenant's set, or the account's overrides only.
    limits: WireLimits
    actor: str | None = None
    reason: str | None = None
    created_at_ns: int | None = None
    #: For an account: its tenant's version and the limits in force (overrides merged over the tenant's).
    tenant_version: int | None = None
    effective: WireLimits | None = None


class TripRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Literal["all", "venue", "tenant", "account", "strategy"]
    target: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    #: The tenant the switch is for (a platform admin only; others act in their own).
    tenant: Annotated[str, Field(min_length=1, max_length=32)] | None = None


class ResetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The named person who re-enables trading (recorded, published).
    person: Annotated[str, Field(min_length=1, max_length=128, pattern=r"\S")]
    reason: Annotated[str, Field(min_length=1, max_length=500, pattern=r"\S")]


class SwitchPublic(BaseModel):
    switch_id: uuid.UUID
    scope: str
    target: str | None
    tenant: str
    state: str
    actor: str
    reason: str
    automatic: bool
    canceled_orders: int
    tripped_at_ns: int
    reset_by: str | None
    reset_reason: str | None
    reset_at_ns: int | None

    @classmethod
    def of(cls, s: KillSwitch) -> SwitchPublic:
        return cls(
            switch_id=s.switch_id,
            scope=s.scope,
            target=s.target,
            tenant=s.tenant,
            state=s.state,
            actor=s.actor,
            reason=s.reason,
            automatic=s.automatic,
            canceled_orders=s.canceled_orders,
            tripped_at_ns=s.tripped_ns,
            reset_by=s.reset_by,
            reset_reason=s.reset_reason,
            reset_at_ns=s.reset_ns,
        )


TenantQuery = Annotated[
    str | None, Query(min_length=1, max_length=32, description="act in this tenant (platform admin only)")
]
AccountId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")]


def _tenant(principal: Principal, requested: str | None) -> str:
    """The tenant a call acts in: the caller's own unless a platform admin names another (else 404)."""
    if requested is None or requested == principal.tenant:
        return principal.tenant
    if principal.is_platform_admin:
        return requested
    raise Problem(404, "tenant not found")


def _invalid(exc: InvalidLimits) -> Problem:
    return Problem(422, f"body.limits.{exc.field}: {exc.message}")


def _public(v: LimitsVersion) -> dict[str, Any]:
    return {
        "version": v.version,
        "limits": v.limits,
        "actor": v.actor,
        "reason": v.reason,
        "created_at_ns": v.created_ns,
    }


def risk_router(backend: Callable[..., Any]) -> APIRouter:
    """The risk routes, reaching the engine through the dependency ``backend`` (-> ``RiskBackend``)."""
    router = APIRouter(prefix="/api/v1", tags=["risk"])
    engine: Any = Depends(backend)

    @contextlib.asynccontextmanager
    async def change(b: RiskBackend) -> AsyncIterator[tuple[asyncpg.Connection, list[Event]]]:
        events: list[Event] = []
        async with b.transaction() as conn:
            yield conn, events
            await b.record(conn, events)
        if events:
            await b.committed(events)

    async def require_account(b: RiskBackend, conn: asyncpg.Connection, tenant: str, account_id: str) -> None:
        if not await b.account_exists(conn, tenant, account_id):
            raise Problem(404, "account not found")

    # -- limits -------------------------------------------------------------------------------

    @router.get("/risk/limits", operation_id="risk_limits_get", summary="The tenant's current risk limits")
    async def get_tenant_limits(
        b: RiskBackend = engine, principal: Principal = require(ADMIN), tenant: TenantQuery = None
    ) -> LimitsPublic:
        t = _tenant(principal, tenant)
        async with b.transaction() as conn:
            current = await store.current_limits(conn, t)
        if current is None:
            return LimitsPublic(tenant=t, version=0, limits=to_wire(DEFAULT_LIMITS))
        return LimitsPublic(tenant=t, **_public(current))

    @router.put("/risk/limits", operation_id="risk_limits_put", summary="A new version of the tenant's limits")
    async def put_tenant_limits(
        body: LimitsChange, b: RiskBackend = engine, principal: Principal = require(ADMIN), tenant: TenantQuery = None
    ) -> LimitsPublic:
        t = _tenant(principal, tenant)
        try:
            async with change(b) as (conn, events):
                stored, recorded = await store.put_limits(
                    conn,
                    tenant=t,
                    account_id=None,
                    limits=body.limits,
                    actor=principal.subject,
                    reason=body.reason,
                    now_ns=b.now_ns(),
                )
                events += recorded
        except InvalidLimits as exc:
            raise _invalid(exc) from None
        return LimitsPublic(tenant=t, **_public(stored))

    async def account_view(conn: asyncpg.Connection, t: str, account_id: str) -> LimitsPublic:
        tenant_version = await store.current_limits(conn, t)
        override = await store.current_limits(conn, t, account_id)
        tenant_limits = from_wire(tenant_version.limits) if tenant_version else DEFAULT_LIMITS
        merged = effective(tenant_limits, parse_override(override.limits) if override else None)
        fields = _public(override) if override else {"version": 0, "limits": {}}
        return LimitsPublic(
            tenant=t,
            account_id=account_id,
            tenant_version=tenant_version.version if tenant_version else 0,
            effective=to_wire(merged),
            **fields,
        )

    @router.get(
        "/risk/limits/accounts/{account_id}",
        operation_id="risk_account_limits_get",
        summary="An account's overrides and the limits in force for it",
    )
    async def get_account_limits(
        account_id: AccountId,
        b: RiskBackend = engine,
        principal: Principal = require(ADMIN),
        tenant: TenantQuery = None,
    ) -> LimitsPublic:
        t = _tenant(principal, tenant)
        async with b.transaction() as conn:
            await require_account(b, conn, t, account_id)
            return await account_view(conn, t, account_id)

    @router.put(
        "/risk/limits/accounts/{account_id}",
        operation_id="risk_account_limits_put",
        summary="A new version of an account's overrides (null switches a limit off; absent inherits)",
    )
    async def put_account_limits(
        account_id: AccountId,
        body: LimitsChange,
        b: RiskBackend = engine,
        principal: Principal = require(ADMIN),
        tenant: TenantQuery = None,
    ) -> LimitsPublic:
        t = _tenant(principal, tenant)
        try:
            async with change(b) as (conn, events):
                await require_account(b, conn, t, account_id)
                stored, recorded = await store.put_limits(
                    conn,
                    tenant=t,
                    account_id=account_id,
                    limits=body.limits,
                    actor=principal.subject,
                    reason=body.reason,
                    now_ns=b.now_ns(),
                )
                events += recorded
                view = await account_view(conn, t, account_id)
        except InvalidLimits as exc:
            raise _invalid(exc) from None
        assert view.version == stored.version
        return view

    # -- kill switches ------------------------------------------------------------------------

    def visible(principal: Principal, switch: KillSwitch) -> bool:
        return principal.is_platform_admin or switch.tenant == principal.tenant or switch.scope in PLATFORM_SCOPES

    @router.get("/kill-switches", operation_id="kill_switches_list", summary="Kill switches (newest first)")
    async def list_switches(
        b: RiskBackend = engine,
        principal: Principal = require(TRADE),
        state: Annotated[Literal["tripped", "reset"] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
        tenant: TenantQuery = None,
    ) -> list[SwitchPublic]:
        if principal.is_platform_admin and tenant is None:
            tenants = None
        else:
            tenants = sorted({_tenant(principal, tenant), PLATFORM_TENANT})
        async with b.transaction() as conn:
            switches = await store.list_switches(conn, tenants=tenants, state=state, limit=limit, offset=offset)
        return [SwitchPublic.of(s) for s in switches if visible(principal, s)]

    @router.get("/kill-switches/{switch_id}", operation_id="kill_switches_get", summary="One kill switch")
    async def get_switch(
        switch_id: uuid.UUID, b: RiskBackend = engine, principal: Principal = require(TRADE)
    ) -> SwitchPublic:
        async with b.transaction() as conn:
            switch = await store.get_switch(conn, switch_id)
        if switch is None or not visible(principal, switch):
            raise Problem(404, "kill switch not found")
        return SwitchPublic.of(switch)

    @router.post(
        "/kill-switches",
        operation_id="kill_switches_trip",
        summary="Trip a kill switch: cancel the open orders in scope and block new ones",
        status_code=201,
    )
    async def trip_switch(
        body: TripRequest, response: Response, b: RiskBackend = engine, principal: Principal = require(TRADE)
    ) -> SwitchPublic:
        """201 with the new switch; 200 with the one already tripped in that scope (nothing changes)."""
        if body.scope in PLATFORM_SCOPES and not principal.is_platform_admin:
            raise Problem(403, f"only a platform admin trips a kill switch of scope {body.scope}")
        t = _tenant(principal, body.tenant)
        try:
            switch = trip(
                scope=body.scope,
                target=body.target,
                tenant=t,
                actor=principal.subject,
                reason=body.reason,
                now_ns=b.now_ns(),
            )
        except InvalidSwitch as exc:
            raise Problem(422, f"target: {exc}") from None
        async with change(b) as (conn, events):
            if switch.scope == "account" and switch.target is not None:
                await require_account(b, conn, t, switch.target)
            tripped = await store.trip_switch(conn, switch, b.cancel_in_scope)
            events += tripped.events
        if not tripped.created:
            response.status_code = 200
        return SwitchPublic.of(tripped.switch)

    @router.post(
        "/kill-switches/{switch_id}/reset",
        operation_id="kill_switches_reset",
        summary="Re-enable trading in a switch's scope (a named person and a reason)",
    )
    async def reset_switch(
        switch_id: uuid.UUID, body: ResetRequest, b: RiskBackend = engine, principal: Principal = require(ADMIN)
    ) -> SwitchPublic:
        async with change(b) as (conn, events):
            switch = await store.get_switch(conn, switch_id, lock=True)
            if switch is None or not visible(principal, switch):
                raise Problem(404, "kill switch not found")
            if switch.tenant != principal.tenant and not principal.is_platform_admin:
                raise Problem(403, f"only a platform admin resets a kill switch of scope {switch.scope}")
            try:
                done, recorded = await store.reset_switch(
                    conn, switch_id, person=body.person, reason=body.reason, now_ns=b.now_ns()
                )
            except ResetRefused as exc:
                raise Problem(409, str(exc)) from None
            events += recorded
        return SwitchPublic.of(done)

    return router


__all__ = ["LimitsChange", "LimitsPublic", "ResetRequest", "RiskBackend", "SwitchPublic", "TripRequest", "risk_router"]
