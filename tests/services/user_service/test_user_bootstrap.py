"""Bootstrap: platform tenant, admin and data-collector clients; idempotent, concurrent-safe, 0600 file, overrides."""

from __future__ import annotations

import asyncio
import contextlib
import stat
from pathlib import Path

import asyncpg
import orjson
import pytest

from services.user_service.bootstrap import AdminOverride, BootstrapError, bootstrap
from services.user_service.repository import Store
from services.user_service.secrets import SecretHasher
from services.user_service.settings import UserServiceSettings
from shared.events import ClientTokensRevoked, DirectoryChanged
from shared.settings import PlatformSettings

TOKEN_URL = "http://127.0.0.1:8000/oauth2/token"
OVERRIDE_ID = "ops-admin"
OVERRIDE_SECRET = "correct-horse-battery-staple-0123456789"


@pytest.fixture(scope="module")
def hasher() -> SecretHasher:
    return SecretHasher(concurrency=4)


@contextlib.asynccontextmanager
async def _store(url: str):
    pool = await asyncpg.create_pool(url, min_size=1, max_size=8)
    try:
        yield Store(pool)
    finally:
        await pool.close()


@pytest.fixture
async def fresh(new_database):
    async with new_database() as url, _store(url) as store:
        yield store


async def _clients(store: Store) -> dict[str, asyncpg.Record]:
    rows = await store.pool.fetch("SELECT * FROM users.clients")
    return {r["client_id"]: r for r in rows}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_first_start_creates_tenant_admin_and_collector_with_a_private_file(fresh, hasher, tmp_path):
    result = await bootstrap(fresh, hasher, var_dir=tmp_path, token_url=TOKEN_URL)
    assert result.created == ["admin", "data-collector", "metatrader-connector"]
    path = tmp_path / "credentials.json"
    assert result.credentials_path == path and _mode(path) == 0o600
    document = orjson.loads(path.read_bytes())
    assert document["token_url"] == TOKEN_URL
    assert set(document) == {"admin", "data-collector", "metatrader-connector", "token_url"}
    link = (await _clients(fresh))[document["metatrader-connector"]["client_id"]]
    assert list(link["scopes"]) == ["venue"] and link["tenant_id"] == "platform"
    clients = await _clients(fresh)
    admin, collector = clients[document["admin"]["client_id"]], clients[document["data-collector"]["client_id"]]
    assert admin["tenant_id"] == collector["tenant_id"] == "platform"
    assert sorted(admin["scopes"]) == ["admin", "compliance", "market:read", "trade"]
    assert sorted(admin["grant_types"]) == ["client_credentials", "refresh_token"]
    assert collector["name"] == "data-collector"
    assert list(collector["scopes"]) == ["market:write"] and list(collector["grant_types"]) == ["client_credentials"]
    for row, entry in ((admin, document["admin"]), (collector, document["data-collector"])):
        assert row["secret_hash"].startswith("$argon2id$") and entry["client_secret"] not in row["secret_hash"]
        assert await hasher.verify(row["secret_hash"], entry["client_secret"])
    assert await fresh.pool.fetchval("SELECT disabled FROM users.tenants WHERE id = 'platform'") is False
    assert {e.action for e in result.events} == {"created"}
    assert all(e.actor == "bootstrap" for e in result.events)
    assert not any(
        entry["client_secret"] in e.model_dump_json()
        for e in result.events
        for entry in (document["admin"], document["data-collector"])
    )


async def test_bootstrap_is_idempotent(fresh, hasher, tmp_path):
    first = await bootstrap(fresh, hasher, var_dir=tmp_path, token_url=TOKEN_URL)
    written = (tmp_path / "credentials.json").read_bytes()
    second = await bootstrap(fresh, hasher, var_dir=tmp_path, token_url=TOKEN_URL)
    assert second.created == [] and second.events == [] and second.credentials_path is None
    assert (second.admin_client_id, second.collector_client_id) == (first.admin_client_id, first.collector_client_id)
    assert (tmp_path / "credentials.json").read_bytes() == written
    assert len(await _clients(fresh)) == 3


async def test_a_bootstrap_client_added_later_keeps_the_earlier_secrets_in_the_file(fresh, hasher, tmp_path):
    """A var/ from before the venue link's client: the next start creates it and the file keeps the
    admin's and the collector's secrets (only the run that generated them ever knew them)."""
    await bootstrap(fresh, hasher, var_dir=tmp_path, token_url=TOKEN_URL)
    path = tmp_path / "credentials.json"
    earlier = orjson.loads(path.read_bytes())
    del earlier["metatrader-connector"]
    path.write_bytes(orjson.dumps(earlier))
    await fresh.pool.execute("DELETE FROM users.bootstrap_clients WHERE purpose = 'metatrader-connector'")
    again = await bootstrap(fresh, hasher, var_dir=tmp_path, token_url=TOKEN_URL)
    assert again.created == ["metatrader-connector"]
    document = orjson.loads(path.read_bytes())
    assert document["admin"] == earlier["admin"] and document["data-collector"] == earlier["data-collector"]
    assert "client_secret" in document["metatrader-connector"]


async def test_concurrent_bootstraps_create_one_admin(fresh, hasher, tmp_path):
    results = await asyncio.gather(*(bootstrap(fresh, hasher, var_dir=tmp_path, token_url=TOKEN_URL) for _ in range(4)))
    assert sorted(len(r.created) for r in results) == [0, 0, 0, 3]
    assert len({r.admin_client_id for r in results}) == 1
    assert len(await _clients(fresh)) == 3
    assert await fresh.pool.fetchval("SELECT count(*) FROM users.bootstrap_clients") == 3
    document = orjson.loads((tmp_path / "credentials.json").read_bytes())
    assert document["admin"]["client_id"] == results[0].admin_client_id
    assert not list(tmp_path.glob(".credentials.json.*"))  # no temporary file left behind


async def test_override_creates_the_admin_and_keeps_its_secret_out_of_the_file(fresh, hasher, tmp_path):
    override = AdminOverride(OVERRIDE_ID, OVERRIDE_SECRET)
    result = await bootstrap(fresh, hasher, var_dir=tmp_path, token_url=TOKEN_URL, override=override)
    assert result.admin_client_id == OVERRIDE_ID
    raw = (tmp_path / "credentials.json").read_bytes()
    document = orjson.loads(raw)
    assert document["admin"] == {"client_id": OVERRIDE_ID}
    assert OVERRIDE_SECRET.encode() not in raw
    assert "client_secret" in document["data-collector"]
    admin = (await _clients(fresh))[OVERRIDE_ID]
    assert await hasher.verify(admin["secret_hash"], OVERRIDE_SECRET)
    again = await bootstrap(fresh, hasher, var_dir=tmp_path, token_url=TOKEN_URL, override=override)
    assert again.created == [] and again.events == []  # same secret: nothing to re-hash


async def test_override_rehashes_an_existing_admin_to_the_given_secret(fresh, hasher, tmp_path):
    await bootstrap(
        fresh, hasher, var_dir=tmp_path, token_url=TOKEN_URL, override=AdminOverride(OVERRIDE_ID, OVERRIDE_SECRET)
    )
    changed = OVERRIDE_SECRET[::-1]
    result = await bootstrap(
        fresh, hasher, var_dir=tmp_path, token_url=TOKEN_URL, override=AdminOverride(OVERRIDE_ID, changed)
    )
    assert result.created == [] and [type(e).__name__ for e in result.events] == [
        "DirectoryChanged",
        "ClientTokensRevoked",
    ]
    rotated, revoked = result.events
    assert isinstance(rotated, DirectoryChanged) and rotated.action == "secret_rotated"
    # The old secret may be known: the tokens it obtained die with it.
    assert isinstance(revoked, ClientTokensRevoked) and revoked.client_id == OVERRIDE_ID
    assert revoked.reason == "secret_rotated" and revoked.expires_at == revoked.issued_before + 960
    stored = (await _clients(fresh))[OVERRIDE_ID]["secret_hash"]
    assert await hasher.verify(stored, changed) and not await hasher.verify(stored, OVERRIDE_SECRET)


async def test_override_replacing_a_generated_admin_disables_it_and_forgets_its_secret(fresh, hasher, tmp_path):
    generated = await bootstrap(fresh, hasher, var_dir=tmp_path, token_url=TOKEN_URL)
    path = tmp_path / "credentials.json"
    before = orjson.loads(path.read_bytes())
    result = await bootstrap(
        fresh, hasher, var_dir=tmp_path, token_url=TOKEN_URL, override=AdminOverride(OVERRIDE_ID, OVERRIDE_SECRET)
    )
    assert result.admin_client_id == OVERRIDE_ID and result.created == ["admin"]
    clients = await _clients(fresh)
    assert clients[generated.admin_client_id]["disabled"] and not clients[OVERRIDE_ID]["disabled"]
    revoked = [e for e in result.events if isinstance(e, ClientTokensRevoked)]
    assert [(e.client_id, e.reason) for e in revoked] == [(generated.admin_client_id, "client_disabled")]
    after = orjson.loads(path.read_bytes())
    assert after["admin"] == {"client_id": generated.admin_client_id}  # the stale secret is gone
    assert after["data-collector"] == before["data-collector"]
    assert _mode(path) == 0o600


async def test_override_cannot_adopt_another_client(fresh, hasher, tmp_path):
    first = await bootstrap(fresh, hasher, var_dir=tmp_path, token_url=TOKEN_URL)
    with pytest.raises(BootstrapError):
        await bootstrap(
            fresh,
            hasher,
            var_dir=tmp_path,
            token_url=TOKEN_URL,
            override=AdminOverride(first.collector_client_id, OVERRIDE_SECRET),
        )


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [(OVERRIDE_ID, None), (None, OVERRIDE_SECRET), (OVERRIDE_ID, "short"), ("bad id!", OVERRIDE_SECRET)],
)
def test_bad_overrides_are_refused(client_id, secret):
    with pytest.raises(BootstrapError):
        AdminOverride.from_settings(client_id, secret)


async def test_a_stale_credentials_file_is_replaced_privately(fresh, hasher, tmp_path):
    path = tmp_path / "credentials.json"
    path.write_text("{}")
    path.chmod(0o644)
    await bootstrap(fresh, hasher, var_dir=tmp_path, token_url=TOKEN_URL)
    assert _mode(path) == 0o600 and "client_secret" in orjson.loads(path.read_bytes())["admin"]


async def test_the_app_bootstraps_with_the_environment_override(
    new_database, start_app, infra_env, mint, tmp_path, monkeypatch, directory_events
):
    _, _, session = infra_env
    monkeypatch.setenv("HATS_ADMIN_CLIENT_ID", OVERRIDE_ID)
    monkeypatch.setenv("HATS_ADMIN_CLIENT_SECRET", OVERRIDE_SECRET)
    async with new_database() as url:
        platform = PlatformSettings(
            hats_var_dir=tmp_path,
            hats_port_offset=session.hats_port_offset,
            kafka_bootstrap_servers=session.kafka_servers,
            database_url=url,
        )
        async with start_app(platform, UserServiceSettings()) as running:
            response = await running.http.post(
                "/internal/v1/clients/authenticate",
                headers=mint("platform", ("internal",)),
                json={"client_id": OVERRIDE_ID, "client_secret": OVERRIDE_SECRET},
            )
            assert response.status_code == 200, response.text
            assert response.json()["scopes"] == ["admin", "compliance", "market:read", "trade"]
            document = orjson.loads((tmp_path / "credentials.json").read_bytes())
            assert document["admin"] == {"client_id": OVERRIDE_ID}
            assert document["token_url"] == platform.token_issuer + "/oauth2/token"
            assert _mode(tmp_path / "credentials.json") == 0o600
            ready = await running.http.get("/readyz")
            assert ready.status_code == 200 and set(ready.json()["checks"]) == {"postgres", "kafka", "tasks"}
            collector = document["data-collector"]["client_id"]
            event = await directory_events.wait_for(lambda e: e.entity_id == collector and e.action == "created")
            assert event.actor == "bootstrap" and event.details["scopes"] == ["market:write"]
