"""The admin API (``/api/v1/users/...``, reached through the gateway; scope ``admin``).

Every route acts in one tenant: the caller's own, or, for a platform admin only,
the one named by ``tenant`` (body on create, query elsewhere). Anything outside
the caller's reach answers 404, never 403, so ids cannot be probed across tenants.
Each change is committed together with its ``DirectoryChanged`` event (outbox)
and published right after the commit.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from services.user_service import models
from services.user_service.outbox import client_tokens_revoked, directory_changed
from services.user_service.policy import (
    DEFAULT_GRANT_TYPES,
    Caller,
    check_grant,
    check_grant_types,
    not_found,
    target_tenant,
)
from services.user_service.repository import Conflict, Directory, Store
from services.user_service.secrets import new_client_id, new_secret
from services.user_service.state import Services, UserDirectory
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import ADMIN, PLATFORM_TENANT, scopes_of_roles
from shared.events import Event
from shared.kit.problems import Problem

router = APIRouter(prefix="/api/v1/users", tags=["users"])

TenantQuery = Annotated[str | None, Query(description="act in this tenant (platform admin only)")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


@dataclass
class Change:
    """One transaction of the directory and the events it will publish once committed."""

    directory: Directory
    caller: Caller
    #: How long a client revocation is kept (``UserServiceSettings.token_lifetime_s``).
    token_lifetime_s: float
    events: list[Event] = field(default_factory=list)

    def emit(self, tenant: str, entity: str, entity_id: str | uuid.UUID, action: str, **details: Any) -> None:
        self.events.append(
            directory_changed(
                tenant=tenant,
                entity=entity,
                entity_id=str(entity_id),
                action=action,
                actor=self.caller.subject,
                details=details,
            )
        )

    async def revoke_tokens(self, tenant: str, client_id: str, reason: str) -> int:
        """Revoke every token of ``client_id`` issued up to now (everywhere, once committed), and disable
        the clients its live tokens could have created or re-keyed, with their tokens, recursively.

        A token of a client that is being revoked could have registered a client of its own, or
        given an existing one a secret only the token's holder knows: that client would survive
        the revocation, with whatever the holder granted it. So whatever the revoked client set up
        within the last ``token_lifetime_s`` goes too. Returns how many clients were disabled that way.
        """
        revocation = client_tokens_revoked(
            tenant=tenant, client_id=client_id, reason=reason, token_lifetime_s=self.token_lifetime_s
        )
        await self.directory.mark_tokens_revoked(client_id, revocation.issued_before)
        self.events.append(revocation)
        disabled = 0
        for made_tenant, made_id in await self.directory.clients_set_up_by(
            f"client:{client_id}", self.token_lifetime_s
        ):
            if await self.directory.is_bootstrap_client(made_id) == "admin":
                # It cannot be disabled (operators would be locked out): its tokens die, and the
                # operator resets its secret (HATS_ADMIN_CLIENT_SECRET).
                disabled += await self.revoke_tokens(made_tenant, made_id, "set_up_by_revoked_client")
                continue
            _, changed = await self.directory.disable_client(made_tenant, made_id)
            if changed:
                self.emit(made_tenant, "client", made_id, "disabled", reason="set up by revoked client", by=client_id)
                disabled += 1 + await self.revoke_tokens(made_tenant, made_id, "set_up_by_revoked_client")
        return disabled


@dataclass
class Admin:
    """An authorised admin request: the caller and the service's parts."""

    caller: Caller
    services: Services

    @property
    def store(self) -> Store:
        return self.services.store

    @contextlib.asynccontextmanager
    async def change(self) -> AsyncIterator[Change]:
        """A transaction whose recorded events are published after it commits (and only then)."""
        async with self.store.transaction() as directory:
            change = Change(directory, self.caller, self.services.settings.token_lifetime_s)
            yield change
            await directory.record(change.events)
        await self.services.outbox.deliver(change.events)

    async def tenant_for_write(self, directory: Directory, requested: str | None) -> str:
        """The target tenant, locked against a concurrent disable; refused if unknown or disabled."""
        tenant_id = target_tenant(self.caller, requested)
        tenant = await directory.tenant(tenant_id, lock=True)
        if tenant is None:
            raise not_found("tenant")
        if tenant["disabled"]:
            raise Problem(409, f"tenant {tenant_id} is disabled")
        return tenant_id

    async def tenant_for_read(self, directory: Directory, requested: str | None) -> str:
        tenant_id = target_tenant(self.caller, requested)
        if tenant_id != self.caller.tenant and await directory.tenant(tenant_id) is None:
            raise not_found("tenant")
        return tenant_id


async def admin(services: UserDirectory, principal: Principal = require(ADMIN)) -> Admin:
    """The caller, as an admin of a tenant that is still enabled.

    Tokens live up to 15 minutes; refusing a disabled tenant's admins here makes
    disabling a tenant take effect on this API at once, not when their tokens expire.
    """
    async with services.store.reading() as directory:
        tenant = await directory.tenant(principal.tenant)
    if tenant is None or tenant["disabled"]:
        raise Problem(403, "the caller's tenant is disabled")
    return Admin(Caller.of(principal), services)


AdminDep = Annotated[Admin, Depends(admin)]


def _conflict(exc: Conflict) -> Problem:
    return Problem(409, str(exc))


# -- tenants ---------------------------------------------------------------------------------


@router.post(
    "/tenants",
    status_code=201,
    response_model=models.Tenant,
    operation_id="create_tenant",
    summary="Create a tenant (platform admin only)",
)
async def create_tenant(body: models.TenantCreate, ctx: AdminDep) -> dict:
    if not ctx.caller.is_platform_admin:
        raise Problem(403, "only a platform admin may create tenants")
    async with ctx.change() as change:
        try:
            tenant = await change.directory.insert_tenant(body.id, body.name)
        except Conflict as exc:
            raise _conflict(exc) from None
        change.emit(body.id, "tenant", body.id, "created", name=body.name)
    return tenant


@router.get(
    "/tenants",
    response_model=list[models.Tenant],
    operation_id="list_tenants",
    summary="Every tenant (platform admin) or the caller's own",
)
async def list_tenants(ctx: AdminDep) -> list[dict]:
    async with ctx.store.reading() as directory:
        return await directory.tenants(None if ctx.caller.is_platform_admin else ctx.caller.tenant)


@router.post(
    "/tenants/{tenant_id}/disable",
    response_model=models.Tenant,
    operation_id="disable_tenant",
    summary="Disable a tenant: its clients can no longer authenticate (platform admin only)",
)
async def disable_tenant(tenant_id: str, ctx: AdminDep) -> dict:
    if not ctx.caller.is_platform_admin:
        if tenant_id != ctx.caller.tenant:
            raise not_found("tenant")
        raise Problem(403, "only a platform admin may disable a tenant")
    if tenant_id == PLATFORM_TENANT:
        raise Problem(409, "the platform tenant cannot be disabled")
    async with ctx.change() as change:
        tenant = await _recorded_disable(
            change, "tenant", tenant_id, tenant_id, change.directory.disable_tenant(tenant_id)
        )
        # Its clients can no longer authenticate; the tokens they hold die now, not in 15 minutes.
        for client_id in await change.directory.enabled_client_ids(tenant_id):
            await change.revoke_tokens(tenant_id, client_id, "tenant_disabled")
        return tenant


async def _recorded_disable(
    change: Change,
    entity: str,
    tenant_id: str,
    entity_id: str | uuid.UUID,
    disabling: Awaitable[tuple[dict | None, bool]],
) -> dict:
    """Finish a disable: 404 if the row is not the caller's to see, one event if it was enabled."""
    row, changed = await disabling
    if row is None:
        raise not_found(entity)
    if changed:
        change.emit(tenant_id, entity, entity_id, "disabled")
    return row


# -- users -----------------------------------------------------------------------------------


@router.post(
    "/users",
    status_code=201,
    response_model=models.User,
    operation_id="create_user",
    summary="Create a user with roles, in the caller's tenant (or, platform admin, another)",
)
async def create_user(body: models.UserCreate, ctx: AdminDep) -> dict:
    check_grant(ctx.caller, scopes_of_roles(body.roles))
    async with ctx.change() as change:
        tenant = await ctx.tenant_for_write(change.directory, body.tenant)
        try:
            user = await change.directory.insert_user(tenant, body.username, body.display_name, body.roles)
        except Conflict as exc:
            raise _conflict(exc) from None
        change.emit(tenant, "user", user["id"], "created", username=body.username, roles=body.roles)
    return user


@router.get(
    "/users",
    response_model=list[models.User],
    operation_id="list_users",
    summary="Users of the caller's tenant (or, platform admin, of ?tenant=)",
)
async def list_users(ctx: AdminDep, tenant: TenantQuery = None, limit: Limit = 100, offset: Offset = 0) -> list[dict]:
    async with ctx.store.reading() as directory:
        tenant_id = await ctx.tenant_for_read(directory, tenant)
        return await directory.users(tenant_id, limit=limit, offset=offset)


@router.get("/users/{user_id}", response_model=models.User, operation_id="get_user", summary="One user")
async def get_user(user_id: uuid.UUID, ctx: AdminDep, tenant: TenantQuery = None) -> dict:
    async with ctx.store.reading() as directory:
        user = await directory.user(target_tenant(ctx.caller, tenant), user_id)
    if user is None:
        raise not_found("user")
    return user


@router.put(
    "/users/{user_id}/roles",
    response_model=models.User,
    operation_id="set_user_roles",
    summary="Replace a user's roles",
)
async def set_user_roles(
    user_id: uuid.UUID, body: models.RolesUpdate, ctx: AdminDep, tenant: TenantQuery = None
) -> dict:
    async with ctx.change() as change:
        tenant_id = target_tenant(ctx.caller, tenant)
        # Locked first, so "added" below is computed from roles no concurrent change can alter.
        if not await change.directory.lock_user(tenant_id, user_id):
            raise not_found("user")
        before = await change.directory.user(tenant_id, user_id)
        assert before is not None
        # Only what is added is a grant: keeping a role the caller could not give is no escalation.
        added = sorted(set(body.roles) - set(before["roles"]))
        removed = sorted(set(before["roles"]) - set(body.roles))
        check_grant(ctx.caller, scopes_of_roles(added))
        user = await change.directory.set_roles(tenant_id, user_id, body.roles)
        if user is None:
            raise not_found("user")
        if added or removed:
            change.emit(tenant_id, "user", user_id, "roles_assigned", roles=body.roles, added=added, removed=removed)
    return user


@router.post(
    "/users/{user_id}/disable", response_model=models.User, operation_id="disable_user", summary="Disable a user"
)
async def disable_user(user_id: uuid.UUID, ctx: AdminDep, tenant: TenantQuery = None) -> dict:
    async with ctx.change() as change:
        tenant_id = target_tenant(ctx.caller, tenant)
        return await _recorded_disable(
            change, "user", tenant_id, user_id, change.directory.disable_user(tenant_id, user_id)
        )


# -- clients ---------------------------------------------------------------------------------


@router.post(
    "/clients",
    status_code=201,
    response_model=models.ClientWithSecret,
    operation_id="create_client",
    summary="Register an OAuth2 client; the response holds its secret, shown this once",
)
async def create_client(body: models.ClientCreate, ctx: AdminDep) -> dict:
    check_grant(ctx.caller, body.scopes)
    grant_types = body.grant_types or list(DEFAULT_GRANT_TYPES)
    check_grant_types(grant_types)
    secret = new_secret()
    # Hashed before the transaction: no connection or row lock is held during the slow part.
    secret_hash = await ctx.services.hasher.hash(secret)
    async with ctx.change() as change:
        tenant = await ctx.tenant_for_write(change.directory, body.tenant)
        limit = ctx.services.settings.max_clients_per_tenant
        if await change.directory.count_enabled_clients(tenant) >= limit:
            raise Problem(409, f"tenant {tenant} already has {limit} enabled clients, its limit; disable one first")
        client = await _insert_client(
            change.directory, tenant, body.name, secret_hash, body.scopes, grant_types, ctx.caller.subject
        )
        change.emit(
            tenant,
            "client",
            client["client_id"],
            "created",
            name=body.name,
            scopes=client["scopes"],
            grant_types=client["grant_types"],
        )
    return {**client, "client_secret": secret}


async def _insert_client(
    directory: Directory,
    tenant: str,
    name: str,
    secret_hash: str,
    scopes: list[str],
    grant_types: list[str],
    created_by: str,
) -> dict:
    for _ in range(3):  # 96 random bits: a collision is all but impossible, but costs nothing to handle
        try:
            return await directory.insert_client(
                tenant, new_client_id(), name, secret_hash, scopes, grant_types, created_by=created_by
            )
        except Conflict:
            continue
    raise Problem(503, "could not allocate a client id; try again")


@router.get(
    "/clients",
    response_model=list[models.Client],
    operation_id="list_clients",
    summary="Clients of the caller's tenant (or, platform admin, of ?tenant=); never a secret",
)
async def list_clients(ctx: AdminDep, tenant: TenantQuery = None, limit: Limit = 100, offset: Offset = 0) -> list[dict]:
    async with ctx.store.reading() as directory:
        tenant_id = await ctx.tenant_for_read(directory, tenant)
        return await directory.clients(tenant_id, limit=limit, offset=offset)


@router.get(
    "/clients/{client_id}",
    response_model=models.Client,
    operation_id="get_client",
    summary="One client; never its secret",
)
async def get_client(client_id: str, ctx: AdminDep, tenant: TenantQuery = None) -> dict:
    async with ctx.store.reading() as directory:
        client = await directory.client(target_tenant(ctx.caller, tenant), client_id)
    if client is None:
        raise not_found("client")
    return client


@router.post(
    "/clients/{client_id}/rotate-secret",
    response_model=models.RotatedSecret,
    operation_id="rotate_client_secret",
    summary="Replace a client's secret; the old one stops working, the new one is shown this once",
)
async def rotate_client_secret(client_id: str, ctx: AdminDep, tenant: TenantQuery = None) -> dict:
    tenant_id = target_tenant(ctx.caller, tenant)
    async with ctx.store.reading() as directory:
        client = await directory.client(tenant_id, client_id)
    if client is None:
        raise not_found("client")
    # Whoever holds the new secret holds the client's scopes: rotating is granting them.
    check_grant(ctx.caller, client["scopes"])
    secret = new_secret()
    secret_hash = await ctx.services.hasher.hash(secret)
    async with ctx.change() as change:
        client = await change.directory.set_secret(tenant_id, client_id, secret_hash, set_by=ctx.caller.subject)
        if client is None:
            raise not_found("client")
        change.emit(tenant_id, "client", client_id, "secret_rotated")
        # Rotating says the old secret may be known to someone else: what it obtained dies with it.
        await change.revoke_tokens(tenant_id, client_id, "secret_rotated")
    return {"client_id": client_id, "client_secret": secret, "secret_rotated_at": client["secret_rotated_at"]}


@router.post(
    "/clients/{client_id}/disable",
    response_model=models.Client,
    operation_id="disable_client",
    summary="Disable a client: it can no longer authenticate",
)
async def disable_client(client_id: str, ctx: AdminDep, tenant: TenantQuery = None) -> dict:
    async with ctx.change() as change:
        tenant_id = target_tenant(ctx.caller, tenant)
        if await change.directory.client(tenant_id, client_id) is None:
            raise not_found("client")
        if await change.directory.is_bootstrap_client(client_id) == "admin":
            # Disabling it could lock every operator out; rotate its secret instead.
            raise Problem(409, "the bootstrap admin client cannot be disabled")
        client = await _recorded_disable(
            change, "client", tenant_id, client_id, change.directory.disable_client(tenant_id, client_id)
        )
        await change.revoke_tokens(tenant_id, client_id, "client_disabled")
        return client


@router.post(
    "/clients/{client_id}/revoke-tokens",
    status_code=204,
    operation_id="revoke_client_tokens",
    summary="Revoke every token the client holds now, everywhere; the client itself stays enabled",
)
async def revoke_client_tokens(client_id: str, ctx: AdminDep, tenant: TenantQuery = None) -> None:
    """For a leaked token rather than a leaked secret: the client asks for new tokens as usual.

    Clients it created or re-keyed within the last token lifetime are disabled with it (what a
    leaked token could have set up). Tenant-scoped like every admin call: another tenant's client
    answers 404.
    """
    async with ctx.change() as change:
        tenant_id = target_tenant(ctx.caller, tenant)
        if await change.directory.client(tenant_id, client_id) is None:
            raise not_found("client")
        change.emit(tenant_id, "client", client_id, "tokens_revoked")
        await change.revoke_tokens(tenant_id, client_id, "revoked_by_admin")
