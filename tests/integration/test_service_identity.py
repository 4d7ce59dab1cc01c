"""Service identities on the running mesh: a service calls another with its own token, from the real
gateway, provisioned in the real user-service directory, verified by the real database-service.

The callers are test-only declarations on rows of the port matrix that are not built yet, so the
mesh's user-service does not know them: the test provisions them with the very function
user-service runs at every start, on the mesh's database (plus the matrix's real identities, so
nothing real is retired), and the mesh's user-service publishes what it recorded (its outbox sweep).
"""

from __future__ import annotations

import contextlib
import json
import stat
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from services.user_service.repository import Store
from services.user_service.secrets import SecretHasher
from services.user_service.service_clients import DeclaredIdentity, declared_identities, provision_service_clients
from shared.auth.client import service_credentials_file
from shared.kit.contract import Contract
from shared.kit.deps import HttpClient, ServiceIdentity
from shared.kit.service import Runtime, ServiceDefinition
from shared.settings import IdentitySettings, PlatformSettings
from tests.support import eventually

pytestmark = pytest.mark.slow

SYMBOLS = "/api/v1/market/symbols"  # require("market:read")


class CallerSettings(IdentitySettings):
    pass


@dataclass
class Caller:
    database: str


async def _start(rt: Runtime[CallerSettings, Caller]) -> Caller:
    return Caller(rt.url_of("database-service"))


def caller(name: str, scopes: tuple[str, ...]) -> ServiceDefinition[CallerSettings, Caller]:
    return ServiceDefinition(
        name,
        settings=CallerSettings,
        contract=Contract(calls=("database-service",)),
        uses=(HttpClient(), ServiceIdentity(scopes=scopes)),
        start=_start,
    )


READER = caller("backtesting-engine", ("market:read",))
WRITER = caller("telegram-service", ("market:write",))
TEST_IDENTITIES = [
    DeclaredIdentity("backtesting-engine", ("market:read",)),
    DeclaredIdentity("telegram-service", ("market:write",)),
]


@contextlib.asynccontextmanager
async def running(definition, mesh):
    """The caller in this process (its real lifespan), on the mesh's ports and var dir."""
    platform = PlatformSettings(hats_var_dir=mesh.var, hats_port_offset=mesh.settings.hats_port_offset)
    app = definition.create_app(platform=platform, settings=CallerSettings())
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://x") as own:
        yield app.runtime, own


@pytest.fixture(scope="module")
async def provision(mesh, infra_env):
    """``await provision()``: what user-service does at start, for the test callers too, on the mesh's database."""
    _, env, _ = infra_env
    pool = await asyncpg.create_pool(env["DATABASE_URL"], min_size=1, max_size=2)
    hasher = SecretHasher(concurrency=2)

    async def run():
        identities = [*declared_identities(read_environment=False), *TEST_IDENTITIES]
        return await provision_service_clients(
            Store(pool),
            hasher,
            identities,
            var_dir=mesh.var,
            token_url=mesh.url("api-gateway") + "/oauth2/token",
        )

    yield run
    await pool.close()


async def _readiness(own: httpx.AsyncClient) -> dict:
    return (await own.get("/readyz")).json()["checks"]["identity"]


async def test_readiness_waits_for_the_credentials_then_the_call_carries_the_services_scope(mesh, provision):
    for name in ("backtesting-engine", "telegram-service"):
        service_credentials_file(mesh.var, name).unlink(missing_ok=True)
    async with running(READER, mesh) as (rt, own):
        waiting = await _readiness(own)
        assert not waiting["ok"]
        assert str(service_credentials_file(mesh.var, "backtesting-engine")) in waiting["detail"]
        assert "BACKTESTING_ENGINE_CLIENT_ID" in waiting["detail"]
        result = await provision()
        assert "backtesting-engine" in result.created + result.rotated
        path = service_credentials_file(mesh.var, "backtesting-engine")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

        async def ready():
            check = await _readiness(own)
            return check if check["ok"] else None

        await eventually(ready, timeout_s=20)
        r = await rt.http.get(rt.state.database + SYMBOLS)
        assert r.status_code == 200, r.text
        # The token went with the request because database-service is a declared call, and it is the
        # service's own: database-service's answer says so (a request without one is a 401 there).
        async with httpx.AsyncClient() as anonymous:
            assert (await anonymous.get(rt.state.database + SYMBOLS)).status_code == 401


async def test_a_service_without_the_scope_is_refused(mesh, provision):
    await provision()
    async with running(WRITER, mesh) as (rt, _):
        await rt.identity.ready()
        r = await rt.http.get(rt.state.database + SYMBOLS)
        assert r.status_code == 403 and 'error="insufficient_scope"' in r.headers["www-authenticate"]


async def test_a_second_start_reuses_the_file(mesh, provision):
    await provision()
    path = service_credentials_file(mesh.var, "backtesting-engine")
    before = path.read_bytes()
    again = await provision()
    assert "backtesting-engine" not in again.created + again.rotated
    assert path.read_bytes() == before


async def test_a_lost_file_is_rotated_the_old_token_refused_and_the_service_carries_on(mesh, provision):
    await provision()
    path = service_credentials_file(mesh.var, "backtesting-engine")
    async with running(READER, mesh) as (rt, _):
        await rt.identity.ready()
        old_token = await rt.identity.identity.token()
        old_secret = json.loads(path.read_text())["client_secret"]
        path.unlink()
        rotated = await provision()
        assert rotated.rotated == ["backtesting-engine"]
        assert json.loads(path.read_text())["client_secret"] != old_secret

        async def old_token_refused():
            async with httpx.AsyncClient() as http:
                r = await http.get(rt.state.database + SYMBOLS, headers={"Authorization": f"Bearer {old_token}"})
            return r.status_code == 401

        # user-service's outbox sweep publishes the revocation; database-service applies it.
        await eventually(old_token_refused, timeout_s=60, interval_s=0.5)

        async def served_again():
            return (await rt.http.get(rt.state.database + SYMBOLS)).status_code == 200

        # The 401 made the service fetch a new token, with the new secret it read from the new file.
        await eventually(served_again, timeout_s=20, interval_s=0.5)
        assert await rt.identity.identity.token() != old_token
