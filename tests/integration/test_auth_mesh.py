"""Authentication across the running mesh: one door, and every service checks for itself."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.support import client_token, eventually

pytestmark = pytest.mark.slow

BARS = "/api/v1/market/bars?symbol=EURUSD&timeframe=M1&limit=5"


async def _register(gateway: str, admin_token: str, **client) -> dict:
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {admin_token}"}) as http:
        r = await http.post(gateway + "/api/v1/users/clients", json=client)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.mark.parametrize(
    "service, method, path",
    [
        ("database-service", "GET", BARS),
        ("database-service", "GET", "/api/v1/market/symbols"),
        ("data-bridge", "POST", "/api/v1/ingest/ticks"),
        ("user-service", "GET", "/api/v1/users/clients"),
        ("user-service", "POST", "/internal/v1/clients/authenticate"),
    ],
)
async def test_a_call_that_bypasses_the_gateway_without_a_token_is_refused(mesh, service, method, path):
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.request(method, mesh.url(service) + path, json={})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_each_service_enforces_its_own_scopes(mesh, admin_token):
    collector = json.loads((mesh.var / "credentials.json").read_text())["data-collector"]
    feed = await client_token(mesh.url("api-gateway"), collector["client_id"], collector["client_secret"])
    async with httpx.AsyncClient(timeout=10) as http:
        # The client tier's token writes market data and nothing else, even called directly.
        r = await http.get(mesh.url("database-service") + BARS, headers={"Authorization": f"Bearer {feed}"})
        assert r.status_code == 403 and 'error="insufficient_scope"' in r.headers["www-authenticate"]
        # The admin administers but does not feed market data.
        r = await http.post(
            mesh.url("data-bridge") + "/api/v1/ingest/ticks",
            json={"ticks": []},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert r.status_code == 403, r.text


async def test_market_data_is_the_same_reference_data_for_every_tenant_and_only_readable(
    mesh, admin_token, market_token
):
    gateway = mesh.url("api-gateway")
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {admin_token}"}) as http:
        r = await http.post(gateway + "/api/v1/users/tenants", json={"id": "acme", "name": "Acme Trading"})
        assert r.status_code in (201, 409), r.text
    acme = await _register(gateway, admin_token, name="acme-reader", scopes=["market:read"], tenant="acme")
    acme_token = await client_token(gateway, acme["client_id"], acme["client_secret"])
    async with httpx.AsyncClient(timeout=30) as http:

        async def same_for_both() -> bool:
            # Live ticks keep arriving, so a tick may land between the two reads: the
            # answers must agree on some pair of reads, not on the first one.
            platform = await http.get(
                gateway + "/api/v1/market/symbols", headers={"Authorization": f"Bearer {market_token}"}
            )
            theirs = await http.get(
                gateway + "/api/v1/market/symbols", headers={"Authorization": f"Bearer {acme_token}"}
            )
            assert platform.status_code == theirs.status_code == 200, (platform.text, theirs.text)
            return bool(theirs.json() == platform.json())

        assert await eventually(same_for_both, timeout_s=20)
        # ... which the tenant cannot change: market:write is not its to hold.
        r = await http.post(
            gateway + "/api/v1/ingest/ticks", json={"ticks": []}, headers={"Authorization": f"Bearer {acme_token}"}
        )
        assert r.status_code == 403, r.text
        # Nor can it see the platform tenant's clients.
        r = await http.get(gateway + "/api/v1/users/clients", headers={"Authorization": f"Bearer {acme_token}"})
        assert r.status_code == 403, r.text


async def test_a_revoked_token_is_refused_by_the_services_themselves(mesh, admin_token):
    gateway = mesh.url("api-gateway")
    client = await _register(gateway, admin_token, name="to-revoke", scopes=["market:read"])
    token = await client_token(gateway, client["client_id"], client["client_secret"])
    bearer = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.get(mesh.url("database-service") + BARS, headers=bearer)).status_code == 200
        r = await http.post(
            gateway + "/oauth2/revoke",
            data={"token": token, "token_type_hint": "access_token"},
            auth=(client["client_id"], client["client_secret"]),
        )
        assert r.status_code == 200, r.text

        async def refused_directly():  # the revocation travels on the bus to every verifier
            return (await http.get(mesh.url("database-service") + BARS, headers=bearer)).status_code == 401

        assert await eventually(refused_directly, timeout_s=20)
        assert (await http.get(gateway + BARS, headers=bearer)).status_code == 401


async def test_disabling_a_client_refuses_its_live_tokens_at_every_service(mesh, admin_token):
    """Finding 10: a disabled client's token dies at once, not when it expires, at the services too."""
    gateway = mesh.url("api-gateway")
    client = await _register(gateway, admin_token, name="to-disable", scopes=["market:read"])
    bearer = {"Authorization": f"Bearer {await client_token(gateway, client['client_id'], client['client_secret'])}"}
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.get(mesh.url("database-service") + BARS, headers=bearer)).status_code == 200
        r = await http.post(
            gateway + f"/api/v1/users/clients/{client['client_id']}/disable",
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert r.status_code == 200, r.text

        async def refused_directly():
            return (await http.get(mesh.url("database-service") + BARS, headers=bearer)).status_code == 401

        assert await eventually(refused_directly, timeout_s=20)
        assert (await http.get(gateway + BARS, headers=bearer)).status_code == 401


async def test_revoked_tokens_stay_refused_after_the_broker_restarts_empty(mesh, admin_token, restart_broker):
    """Finding 17: the broker keeps its topics in memory; services that start after it restarted
    rebuild their revoked set from the gateway's PostgreSQL."""
    gateway = mesh.url("api-gateway")
    revoked_one = await _register(gateway, admin_token, name="revoked-one", scopes=["market:read"])
    revoked_all = await _register(gateway, admin_token, name="revoked-all", scopes=["market:read"])
    kept = await _register(gateway, admin_token, name="kept", scopes=["market:read"])
    tokens = {
        name: await client_token(gateway, c["client_id"], c["client_secret"])
        for name, c in (("one", revoked_one), ("all", revoked_all), ("kept", kept))
    }
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(
            gateway + "/oauth2/revoke",
            data={"token": tokens["one"]},
            auth=(revoked_one["client_id"], revoked_one["client_secret"]),
        )
        assert r.status_code == 200, r.text
        r = await http.post(
            gateway + f"/api/v1/users/clients/{revoked_all['client_id']}/revoke-tokens",
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert r.status_code == 204, r.text

        async def status_of(name: str) -> int:
            bearer = {"Authorization": f"Bearer {tokens[name]}"}
            return (await http.get(mesh.url("database-service") + BARS, headers=bearer)).status_code

        async def both_refused():
            return await status_of("one") == 401 and await status_of("all") == 401

        assert await eventually(both_refused, timeout_s=20)

        await asyncio.to_thread(mesh.stop)
        await asyncio.to_thread(restart_broker)  # every topic empty, as after `make run`
        await asyncio.to_thread(mesh.start)

        assert await status_of("one") == 401
        assert await status_of("all") == 401
        assert await status_of("kept") == 200
