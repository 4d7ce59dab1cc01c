"""Service accounts on the real PostgreSQL: created once, 0600 file, reused, re-keyed when lost, re-scoped, retired."""

from __future__ import annotations

import asyncio
import stat

import asyncpg
import orjson
import pytest

from services.user_service.bootstrap import bootstrap
from services.user_service.repository import Store
from services.user_service.secrets import SecretHasher
from services.user_service.service_clients import DeclaredIdentity, provision_service_clients
from services.user_service.settings import UserServiceSettings
from shared import ports
from shared.auth.client import ClientCredentials, service_credentials_file
from shared.events import ClientTokensRevoked, DirectoryChanged
from shared.settings import PlatformSettings

TOKEN_URL = "http://127.0.0.1:8000/oauth2/token"
READER = DeclaredIdentity("feature-engineering", ("market:read",))


@pytest.fixture(scope="module")
def hasher() -> SecretHasher:
    return SecretHasher(concurrency=4)


@pytest.fixture
async def fresh(new_database, hasher, tmp_path):
    """A store whose directory has been bootstrapped (the platform tenant exists)."""
    async with new_database() as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        try:
            store = Store(pool)
            await bootstrap(store, hasher, var_dir=tmp_path, token_url=TOKEN_URL)
            yield store
        finally:
            await pool.close()


async def _provision(store, hasher, tmp_path, *identities: DeclaredIdentity):
    return await provision_service_clients(store, hasher, identities, var_dir=tmp_path, token_url=TOKEN_URL)


async def _client(store: Store, client_id: str) -> asyncpg.Record:
    return await store.pool.fetchrow("SELECT * FROM users.clients WHERE client_id = $1", client_id)


def _actions(events) -> list[str]:
    return [e.action for e in events if isinstance(e, DirectoryChanged)]


async def test_a_service_gets_one_client_of_its_scopes_and_a_private_file_written_once(fresh, hasher, tmp_path):
    first = await _provision(fresh, hasher, tmp_path, READER)
    path = service_credentials_file(tmp_path, "feature-engineering")
    assert first.created == ["feature-engineering"] and first.written == [path]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = orjson.loads(path.read_bytes())
    row = await _client(fresh, written["client_id"])
    assert row["tenant_id"] == "platform" and list(row["scopes"]) == ["market:read"]
    assert list(row["grant_types"]) == ["client_credentials"] and not row["disabled"]
    assert await hasher.verify(row["secret_hash"], written["client_secret"])
    [created] = first.events
    assert isinstance(created, DirectoryChanged) and created.action == "created"
    assert written["client_secret"] not in created.model_dump_json()
    # The next start reuses it: same file, same secret, nothing recorded.
    before = path.read_bytes()
    second = await _provision(fresh, hasher, tmp_path, READER)
    assert (second.created, second.rotated, second.written, second.events) == ([], [], [], [])
    assert path.read_bytes() == before
    assert (
        await fresh.pool.fetchval("SELECT count(*) FROM users.clients WHERE name = 'service feature-engineering'") == 1
    )


async def test_a_lost_file_rotates_the_secret_and_revokes_the_clients_tokens(fresh, hasher, tmp_path):
    await _provision(fresh, hasher, tmp_path, READER)
    path = service_credentials_file(tmp_path, "feature-engineering")
    old = orjson.loads(path.read_bytes())
    path.unlink()
    result = await _provision(fresh, hasher, tmp_path, READER)
    new = orjson.loads(path.read_bytes())
    assert result.rotated == ["feature-engineering"] and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert new["client_id"] == old["client_id"] and new["client_secret"] != old["client_secret"]
    row = await _client(fresh, new["client_id"])
    assert await hasher.verify(row["secret_hash"], new["client_secret"])
    assert not await hasher.verify(row["secret_hash"], old["client_secret"])
    assert row["tokens_revoked_before"] is not None
    revoked = [e for e in result.events if isinstance(e, ClientTokensRevoked)]
    assert [e.client_id for e in revoked] == [new["client_id"]]
    assert _actions(result.events) == ["secret_rotated"]


async def test_a_file_whose_secret_no_longer_matches_is_replaced(fresh, hasher, tmp_path):
    await _provision(fresh, hasher, tmp_path, READER)
    path = service_credentials_file(tmp_path, "feature-engineering")
    document = orjson.loads(path.read_bytes())
    path.write_bytes(orjson.dumps({**document, "client_secret": "an-admin-rotated-it-meanwhile"}))
    result = await _provision(fresh, hasher, tmp_path, READER)
    assert result.rotated == ["feature-engineering"]
    row = await _client(fresh, document["client_id"])
    assert await hasher.verify(row["secret_hash"], orjson.loads(path.read_bytes())["client_secret"])


async def test_changed_scopes_update_the_client_and_a_scope_taken_away_revokes_its_tokens(fresh, hasher, tmp_path):
    await _provision(fresh, hasher, tmp_path, READER)
    client_id = orjson.loads(service_credentials_file(tmp_path, "feature-engineering").read_bytes())["client_id"]
    wider = await _provision(fresh, hasher, tmp_path, DeclaredIdentity(READER.service, ("market:read", "trade")))
    assert wider.rescoped == ["feature-engineering"] and wider.rotated == []
    assert sorted((await _client(fresh, client_id))["scopes"]) == ["market:read", "trade"]
    assert not any(isinstance(e, ClientTokensRevoked) for e in wider.events)
    narrower = await _provision(fresh, hasher, tmp_path, DeclaredIdentity(READER.service, ("trade",)))
    assert list((await _client(fresh, client_id))["scopes"]) == ["trade"]
    assert [e.client_id for e in narrower.events if isinstance(e, ClientTokensRevoked)] == [client_id]


async def test_operator_credentials_register_that_client_and_write_no_file(fresh, hasher, tmp_path):
    generated = await _provision(fresh, hasher, tmp_path, READER)
    [path] = generated.written
    old_id = orjson.loads(path.read_bytes())["client_id"]
    chosen = ClientCredentials("fe-prod", "x" * 40)
    result = await _provision(fresh, hasher, tmp_path, DeclaredIdentity(READER.service, READER.scopes, chosen))
    assert result.written == [] and not path.exists()  # the generated secret is gone with its client
    row = await _client(fresh, "fe-prod")
    assert await hasher.verify(row["secret_hash"], chosen.client_secret) and list(row["scopes"]) == ["market:read"]
    assert (await _client(fresh, old_id))["disabled"]
    # The operator changes the secret: the same client, re-keyed, its tokens revoked.
    rekeyed = ClientCredentials("fe-prod", "y" * 40)
    again = await _provision(fresh, hasher, tmp_path, DeclaredIdentity(READER.service, READER.scopes, rekeyed))
    assert again.rotated == ["feature-engineering"] and not path.exists()
    assert await hasher.verify((await _client(fresh, "fe-prod"))["secret_hash"], rekeyed.client_secret)


async def test_a_service_that_no_longer_declares_an_identity_loses_its_client(fresh, hasher, tmp_path):
    await _provision(fresh, hasher, tmp_path, READER)
    path = service_credentials_file(tmp_path, "feature-engineering")
    client_id = orjson.loads(path.read_bytes())["client_id"]
    result = await _provision(fresh, hasher, tmp_path)
    assert result.retired == ["feature-engineering"] and not path.exists()
    assert (await _client(fresh, client_id))["disabled"]
    assert [e.client_id for e in result.events if isinstance(e, ClientTokensRevoked)] == [client_id]


async def test_concurrent_starts_create_one_client(fresh, hasher, tmp_path):
    results = await asyncio.gather(*(_provision(fresh, hasher, tmp_path, READER) for _ in range(3)))
    assert sum(len(r.created) for r in results) == 1
    assert (
        await fresh.pool.fetchval("SELECT count(*) FROM users.clients WHERE name = 'service feature-engineering'") == 1
    )


async def test_user_service_provisions_the_matrixs_identities_at_every_start(
    new_database, start_app, infra_env, tmp_path, monkeypatch, directory_events
):
    # The matrix declares no identity yet on this branch; give one row an identity for this start.
    monkeypatch.setattr(ports, "service_identities", lambda: {"feature-engineering": ("market:read",)})
    _, _, session = infra_env
    async with new_database() as url:
        platform = PlatformSettings(
            hats_var_dir=tmp_path,
            hats_port_offset=session.hats_port_offset,
            kafka_bootstrap_servers=session.kafka_servers,
            database_url=url,
        )
        path = service_credentials_file(tmp_path, "feature-engineering")
        async with start_app(platform, UserServiceSettings()):
            written = orjson.loads(path.read_bytes())
        # Published after the start (the outbox), with no secret in it.
        created = await directory_events.wait_for(lambda e: e.entity_id == written["client_id"])
        assert created.action == "created" and written["client_secret"] not in created.model_dump_json()
        async with start_app(platform, UserServiceSettings()):
            assert orjson.loads(path.read_bytes()) == written  # a second start reuses it
