"""The internal API (``/internal/v1/...``): never routed by the gateway; scope ``internal`` only.

The gateway's token endpoint asks here whether a client id and secret are valid.
Every refusal is the same 401 body, and every path through it costs one argon2
verify, so neither the answer nor its timing tells an unknown id from a wrong
secret, a disabled client or a disabled tenant.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.user_service import models
from services.user_service.state import UserDirectory
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import INTERNAL
from shared.kit.problems import Problem

router = APIRouter(prefix="/internal/v1", tags=["internal"])

INVALID_CLIENT = "invalid client credentials"


@router.post(
    "/clients/authenticate",
    response_model=models.AuthenticatedClient,
    operation_id="authenticate_client",
    summary="Check a client's id and secret; its grants if valid",
)
async def authenticate_client(
    body: models.ClientCredentials, services: UserDirectory, _: Principal = require(INTERNAL)
) -> dict:
    hasher = services.hasher
    async with services.store.reading() as directory:
        stored = await directory.credentials(body.client_id)
    if stored is None:
        await hasher.verify_nothing(body.client_secret)
        raise Problem(401, INVALID_CLIENT)
    # Verified before the disabled flags are looked at, so all refusals take as long.
    matches = await hasher.verify(stored.secret_hash, body.client_secret)
    if not matches or stored.client_disabled or stored.tenant_disabled:
        raise Problem(401, INVALID_CLIENT)
    if hasher.needs_rehash(stored.secret_hash):
        # The hash parameters were raised since this secret was set: upgrade it now we know it.
        new_hash = await hasher.hash(body.client_secret)
        async with services.store.reading() as directory:
            await directory.replace_hash(stored.tenant, stored.client_id, stored.secret_hash, new_hash)
    return {
        "client_id": stored.client_id,
        "tenant": stored.tenant,
        "scopes": stored.scopes,
        "grant_types": stored.grant_types,
    }
