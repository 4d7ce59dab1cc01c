"""Finding 10 at user-service: disabling, re-keying or revoking a client revokes its live tokens
(``ClientTokensRevoked``, recorded with the change and published), a tenant admin may revoke any
client of its own tenant, and what a revoked client's tokens set up dies with it.
Finding 16: a tenant's clients are bounded."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer

from services.user_service.settings import UserServiceSettings
from shared import topics
from shared.auth.scopes import PLATFORM_TENANT
from shared.events import ClientTokensRevoked
from shared.settings import PlatformSettings
from tests.support import eventually

BASE = "/api/v1/users"
SUFFIX = uuid.uuid4().hex[:6]
A, B = f"acme-{SUFFIX}", f"globex-{SUFFIX}"
#: UserServiceSettings.token_lifetime_s by default.
LIFETIME_S = 960


class ClientRevocationFeed:
    """Every ``ClientTokensRevoked`` on the session's broker (from the earliest offset)."""

    def __init__(self, servers: str) -> None:
        self.events: list[ClientTokensRevoked] = []
        self._consumer = AIOKafkaConsumer(
            topics.AUTH_CLIENT_REVOCATIONS,
            bootstrap_servers=servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        async for record in self._consumer:
            self.events.append(ClientTokensRevoked.model_validate_json(record.value or b""))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def of(self, client_id: str, *, timeout_s: float = 20.0) -> ClientTokensRevoked:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            for event in reversed(self.events):
                if event.client_id == client_id:
                    return event
            await asyncio.sleep(0.1)
        raise AssertionError(f"no ClientTokensRevoked for {client_id} within {timeout_s}s")

    def has(self, client_id: str) -> bool:
        return any(e.client_id == client_id for e in self.events)


@pytest.fixture(scope="module")
async def revocations(infra_env) -> AsyncIterator[ClientRevocationFeed]:
    _, _, session = infra_env
    feed = ClientRevocationFeed(session.kafka_servers)
    await feed.start()
    yield feed
    await feed.stop()


@pytest.fixture(scope="module")
async def tenants(user_app, mint) -> None:
    for tenant in (A, B):
        response = await user_app.http.post(
            f"{BASE}/tenants", headers=mint(PLATFORM_TENANT), json={"id": tenant, "name": tenant.title()}
        )
        assert response.status_code == 201, response.text


async def new_client(user_app, headers, **body) -> dict:
    response = await user_app.http.post(
        f"{BASE}/clients", headers=headers, json={"name": "bot", "scopes": ["market:read"], **body}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def client_state(user_app, mint, tenant: str, client_id: str) -> dict:
    response = await user_app.http.get(f"{BASE}/clients/{client_id}", headers=mint(tenant))
    assert response.status_code == 200, response.text
    return dict(response.json())


def assert_cut_off_now(event: ClientTokensRevoked, tenant: str, reason: str, since: float) -> None:
    assert event.tenant == tenant and event.reason == reason
    # Every token issued up to the revocation, this second included, is refused.
    assert math.floor(since) + 1 <= event.issued_before <= math.floor(time.time()) + 1
    assert event.expires_at == event.issued_before + LIFETIME_S


@pytest.mark.parametrize(
    ("action", "reason"),
    [("disable", "client_disabled"), ("rotate-secret", "secret_rotated"), ("revoke-tokens", "revoked_by_admin")],
)
async def test_disabling_rotating_or_revoking_a_client_revokes_its_tokens(
    user_app, mint, tenants, revocations, action, reason
):
    client = await new_client(user_app, mint(A))
    since = time.time()
    response = await user_app.http.post(f"{BASE}/clients/{client['client_id']}/{action}", headers=mint(A))
    assert response.status_code in (200, 204), response.text
    assert_cut_off_now(await revocations.of(client["client_id"]), A, reason, since)


async def test_a_tenant_admin_revokes_any_client_of_its_own_tenant_only(user_app, mint, tenants, revocations):
    theirs = await new_client(user_app, mint(B))
    ours = await new_client(user_app, mint(A))
    http = user_app.http
    for params in ({}, {"tenant": B}):
        response = await http.post(
            f"{BASE}/clients/{theirs['client_id']}/revoke-tokens", headers=mint(A), params=params
        )
        assert response.status_code == 404, response.text
    not_admin = mint(A, scopes=("market:read",))
    assert (await http.post(f"{BASE}/clients/{ours['client_id']}/revoke-tokens", headers=not_admin)).status_code == 403
    # The platform admin may act in any tenant.
    response = await http.post(
        f"{BASE}/clients/{theirs['client_id']}/revoke-tokens", headers=mint(PLATFORM_TENANT), params={"tenant": B}
    )
    assert response.status_code == 204, response.text
    assert (await revocations.of(theirs["client_id"])).tenant == B
    await asyncio.sleep(0.5)
    assert not revocations.has(ours["client_id"])
    # Revoking tokens leaves the client enabled: it simply asks for new ones.
    assert not (await client_state(user_app, mint, B, theirs["client_id"]))["disabled"]


async def test_what_a_revoked_clients_tokens_set_up_dies_with_it(user_app, mint, tenants, revocations):
    """The attack: with a stolen admin token, register a client of your own (or re-key an existing
    one) before the victim is disabled; both must go with the victim's tokens."""
    victim = await new_client(user_app, mint(A), scopes=["admin", "market:read"])
    stolen = mint(A, scopes=("admin", "market:read"), client_id=victim["client_id"])
    planted = await new_client(user_app, stolen)
    grandchild = await new_client(user_app, mint(A, scopes=("admin", "market:read"), client_id=planted["client_id"]))
    rekeyed = await new_client(user_app, mint(A))
    response = await user_app.http.post(f"{BASE}/clients/{rekeyed['client_id']}/rotate-secret", headers=stolen)
    assert response.status_code == 200, response.text
    bystander = await new_client(user_app, mint(A))

    response = await user_app.http.post(f"{BASE}/clients/{victim['client_id']}/disable", headers=mint(A))
    assert response.status_code == 200, response.text

    for made in (planted, grandchild, rekeyed):
        assert (await client_state(user_app, mint, A, made["client_id"]))["disabled"], made
        assert (await revocations.of(made["client_id"])).reason == "set_up_by_revoked_client"
    assert not (await client_state(user_app, mint, A, bystander["client_id"]))["disabled"]
    assert not revocations.has(bystander["client_id"])


async def test_disabling_a_tenant_revokes_the_tokens_of_its_clients(user_app, mint, revocations):
    tenant = f"gone-{SUFFIX}"
    response = await user_app.http.post(
        f"{BASE}/tenants", headers=mint(PLATFORM_TENANT), json={"id": tenant, "name": "Gone"}
    )
    assert response.status_code == 201, response.text
    clients = [await new_client(user_app, mint(tenant)) for _ in range(2)]
    response = await user_app.http.post(f"{BASE}/tenants/{tenant}/disable", headers=mint(PLATFORM_TENANT))
    assert response.status_code == 200, response.text
    for client in clients:
        assert (await revocations.of(client["client_id"])).reason == "tenant_disabled"


async def test_a_tenant_has_a_bounded_number_of_enabled_clients(start_app, new_database, test_platform, mint):
    async with new_database() as url:
        platform = PlatformSettings(
            hats_var_dir=test_platform.hats_var_dir / "limit",
            hats_port_offset=test_platform.hats_port_offset,
            kafka_bootstrap_servers=test_platform.kafka_servers,
            database_url=url,
        )
        async with start_app(platform, UserServiceSettings(max_clients_per_tenant=2)) as running:
            http = running.http
            response = await http.post(
                f"{BASE}/tenants", headers=mint(PLATFORM_TENANT), json={"id": "small", "name": "Small"}
            )
            assert response.status_code == 201, response.text
            made = [await new_client(running, mint("small")) for _ in range(2)]
            over = await http.post(
                f"{BASE}/clients", headers=mint("small"), json={"name": "one-too-many", "scopes": ["market:read"]}
            )
            assert over.status_code == 409, over.text
            assert over.headers["content-type"].startswith("application/problem+json")
            assert "limit" in over.json()["detail"]
            disabled = await http.post(f"{BASE}/clients/{made[0]['client_id']}/disable", headers=mint("small"))
            assert disabled.status_code == 200, disabled.text
            await new_client(running, mint("small"))


async def test_a_starting_instance_announces_the_cut_offs_still_in_force_again(
    user_app, mint, tenants, revocations, start_app, test_platform
):
    """The broker may have restarted empty before any gateway recorded a cut-off: user-service
    announces its recent ones again when it starts (same event id: nothing counted twice)."""
    client = await new_client(user_app, mint(A))
    response = await user_app.http.post(f"{BASE}/clients/{client['client_id']}/revoke-tokens", headers=mint(A))
    assert response.status_code == 204, response.text
    first = await revocations.of(client["client_id"])
    async with start_app(test_platform):  # another instance (or this one restarted) on the same database

        async def announced_again() -> bool:
            return sum(e.event_id == first.event_id for e in revocations.events) >= 2

        assert await eventually(announced_again, timeout_s=20)
    again = [e for e in revocations.events if e.event_id == first.event_id][-1]
    assert (again.client_id, again.issued_before, again.expires_at) == (
        first.client_id,
        first.issued_before,
        first.expires_at,
    )
