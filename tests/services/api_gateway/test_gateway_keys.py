"""The signing-key ring: files and modes, rotation, retirement, several processes, and the JWKS over HTTP."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import orjson
import pytest
from gateway_harness import (
    assert_error,
    basic,
    decode_segment,
    running_gateway,
    token_for,
)

from services.api_gateway.keys import KeyRing
from services.api_gateway.settings import GatewaySettings
from shared.auth import InvalidToken, JwksKeySource, LocalKeySource, TokenVerifier, mint_access_token
from tests.support import create_database, drop_database

pytestmark = pytest.mark.timeout(120)

DAY = 86_400.0


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ring(directory: Path, clock: Clock, *, max_age_s: float = 30 * DAY, retire_after_s: float = 1_800) -> KeyRing:
    keyring = KeyRing(directory, max_age_s=max_age_s, retire_after_s=retire_after_s, clock=clock)
    keyring.open()
    return keyring


def key_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jwk"))


# --- on disk -----------------------------------------------------------------------------


def test_first_start_creates_one_private_key_with_tight_modes(tmp_path):
    directory = tmp_path / "var" / "keys"
    keyring = ring(directory, Clock())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    [path] = key_files(directory)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = orjson.loads(path.read_bytes())
    assert document["kty"] == "OKP" and document["crv"] == "Ed25519" and document["d"]
    active = keyring.active
    assert path.name == f"{active.kid}.jwk"
    assert active.kid == active.key.thumbprint()  # RFC 7638
    assert [p.name for p in directory.iterdir() if p.name != ".lock"] == [path.name]  # no temporary left behind


def test_a_new_key_is_published_before_it_signs_and_the_old_one_retires_from_then(tmp_path):
    clock = Clock()
    keyring = KeyRing(tmp_path, max_age_s=30 * DAY, retire_after_s=1_800, publish_ahead_s=30, clock=clock)
    keyring.open()
    old = keyring.active  # the very first key signs at once: there is nothing to wait for
    new = keyring.rotate()
    assert {k["kid"] for k in keyring.public_jwks()["keys"]} == {old.kid, new.kid}  # published now
    assert keyring.active.kid == old.kid  # ... but the old key keeps signing for 30 s
    clock.now += 31
    assert keyring.active.kid == new.kid
    clock.now += 1_798  # retirement counts from when the old key stopped signing, not from the rotation
    assert not keyring.maintain() and len(keyring.keys()) == 2
    clock.now += 2
    assert keyring.maintain() and [k.kid for k in keyring.keys()] == [new.kid]


def test_jwks_never_contains_private_parts(tmp_path):
    clock = Clock()
    keyring = ring(tmp_path, clock)
    keyring.rotate()
    jwks = keyring.public_jwks()
    assert len(jwks["keys"]) == 2
    assert b'"d"' not in orjson.dumps(jwks)
    for key in jwks["keys"]:
        assert set(key) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert all(not k.is_private for k in keyring.keyset().keys)


def test_keys_persist_across_restart(tmp_path):
    clock = Clock()
    first = ring(tmp_path, clock).active
    second = ring(tmp_path, clock).active
    assert second.kid == first.kid
    assert second.key.as_dict(private=True)["d"] == first.key.as_dict(private=True)["d"]


def test_loose_file_modes_are_tightened(tmp_path):
    keyring = ring(tmp_path, Clock())
    path = key_files(tmp_path)[0]
    path.chmod(0o644)
    tmp_path.chmod(0o755)
    again = ring(tmp_path, Clock())
    assert again.active.kid == keyring.active.kid
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700


def test_tampered_or_foreign_files_are_ignored(tmp_path):
    clock = Clock()
    keyring = ring(tmp_path, clock)
    good = keyring.active.kid
    (tmp_path / "garbage.jwk").write_text("{not json")
    document = orjson.loads((tmp_path / f"{good}.jwk").read_bytes())
    (tmp_path / "renamed.jwk").write_bytes(orjson.dumps(document))  # name does not match the kid
    clock.now += 10
    assert ring(tmp_path, clock).active.kid == good
    assert [k["kid"] for k in ring(tmp_path, clock).public_jwks()["keys"]] == [good]


# --- rotation and retirement -----------------------------------------------------------------


def test_rotation_keeps_old_key_published_until_retired(tmp_path):
    clock = Clock()
    keyring = ring(tmp_path, clock, retire_after_s=1_000)
    old = keyring.active
    token, _ = mint_access_token(
        old.key,
        issuer="i",
        audience="a",
        subject="s",
        client_id="c",
        tenant="t",
        scopes=["trade"],
        ttl_s=900,
        now=int(clock.now),
    )
    clock.now += 60
    new = keyring.rotate()
    assert keyring.active.kid == new.kid != old.kid
    assert [k["kid"] for k in keyring.public_jwks()["keys"]] == [new.kid, old.kid]
    assert decode_segment(token, 0)["kid"] == old.kid

    clock.now += 999  # 999 s since the old key stopped signing
    assert not keyring.maintain()
    assert {k.kid for k in keyring.keys()} == {new.kid, old.kid}
    clock.now += 1
    assert keyring.maintain()
    assert [k["kid"] for k in keyring.public_jwks()["keys"]] == [new.kid]
    assert [p.name for p in key_files(tmp_path)] == [f"{new.kid}.jwk"]


def test_several_rotations_retire_in_order(tmp_path):
    clock = Clock()
    keyring = ring(tmp_path, clock, retire_after_s=100)
    kids = [keyring.active.kid]
    for _ in range(3):
        clock.now += 40
        kids.append(keyring.rotate().kid)
    # The first three stopped signing at +40, +80 and +120 (when their successors were created).
    clock.now += 60  # +180: the first two are 100 s past their end, the third is not
    keyring.maintain()
    assert [k.kid for k in keyring.keys()] == [kids[3], kids[2]]


def test_automatic_rotation_of_an_old_key(tmp_path):
    clock = Clock()
    keyring = ring(tmp_path, clock, max_age_s=30 * DAY)
    first = keyring.active.kid
    clock.now += 30 * DAY - 1
    assert not keyring.maintain()
    clock.now += 1
    assert keyring.maintain()
    assert keyring.active.kid != first
    assert {k.kid for k in keyring.keys()} == {first, keyring.active.kid}
    # At start-up too: a ring opened on a directory whose newest key is too old rotates.
    clock.now += 31 * DAY
    reopened = ring(tmp_path, clock, max_age_s=30 * DAY)
    assert reopened.active.created_at == clock.now


def test_another_process_rotation_is_seen(tmp_path):
    clock = Clock()
    here, there = ring(tmp_path, clock), ring(tmp_path, clock)
    clock.now += 5
    new = there.rotate()
    assert here.active.kid == new.kid
    assert new.kid in {k["kid"] for k in here.public_jwks()["keys"]}


_MAINTAIN = textwrap.dedent("""
    import sys
    from pathlib import Path
    from services.api_gateway.keys import KeyRing
    now = float(sys.argv[2])
    ring = KeyRing(Path(sys.argv[1]), max_age_s=100.0, retire_after_s=1_000.0, clock=lambda: now)
    ring.maintain()
    print(ring.active.kid)
""")


def test_concurrent_processes_rotate_a_stale_key_once(tmp_path):
    clock = Clock()
    keyring = ring(tmp_path, clock, max_age_s=100)
    stale = keyring.active.kid
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MAINTAIN, str(tmp_path), str(clock.now + 500)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(6)
    ]
    kids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(kids) == 1 and stale not in kids  # every process ended on the same single new key
    assert len(key_files(tmp_path)) == 2


# --- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway_settings() -> GatewaySettings:
    # Short lifetimes so that retirement can be watched happening: the housekeeping runs every
    # 0.2 s and a key is retired 4 s after it stopped signing (>= token TTL + leeway).
    return GatewaySettings(
        access_token_ttl_s=3,
        service_token_ttl_s=3,
        clock_leeway_s=1,
        key_retire_after_s=4,
        key_publish_ahead_s=0,
        housekeeping_interval_s=0.2,
        auth_failures_per_client=1000,
        auth_failures_per_ip=1000,
    )


async def test_rotation_over_http_then_retirement(client, gateway):
    server = gateway.server
    async with httpx.AsyncClient() as http:
        verifier = TokenVerifier(
            gateway.url,
            "hats-api",
            JwksKeySource(f"{gateway.url}/.well-known/jwks.json", http, min_refresh_interval_s=0),
        )
        before = (await token_for(client, "alpha"))["access_token"]
        assert (await verifier.verify(before)).client_id == "alpha"  # the verifier has fetched the JWKS once
        old_kid = decode_segment(before, 0)["kid"]

        new = await asyncio.to_thread(server.keyring.rotate)
        after = (await token_for(client, "alpha"))["access_token"]
        assert decode_segment(after, 0)["kid"] == new.kid != old_kid
        jwks = (await client.get("/.well-known/jwks.json")).json()
        assert {k["kid"] for k in jwks["keys"]} == {old_kid, new.kid}
        # A token signed before the rotation still verifies from the JWKS; so does the new one
        # (unknown kid: the verifier refetches).
        fresh = TokenVerifier(gateway.url, "hats-api", JwksKeySource(f"{gateway.url}/.well-known/jwks.json", http))
        assert (await fresh.verify(before)).client_id == "alpha"
        assert (await verifier.verify(after)).client_id == "alpha"

        # The housekeeping retires the old key once retire_after has passed.
        for _ in range(100):
            kids = {k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}
            if kids == {new.kid}:
                break
            await asyncio.sleep(0.1)
        assert kids == {new.kid}
        assert not (gateway.var_dir / "keys" / f"{old_kid}.jwk").exists()
        with pytest.raises(InvalidToken):
            await TokenVerifier(gateway.url, "hats-api", LocalKeySource(server.keyring.keyset)).verify(before)


async def test_keys_and_tokens_survive_a_gateway_restart(infra_env, tmp_path):
    _, env, _ = infra_env
    db_url = await create_database(env["DATABASE_URL"], "gw")
    var_dir = tmp_path / "var"
    settings = GatewaySettings(auth_failures_per_client=1000, auth_failures_per_ip=1000)
    try:
        async with (
            running_gateway(infra_env, settings, var_dir=var_dir, db_url=db_url) as first,
            httpx.AsyncClient(base_url=first.url) as http,
        ):
            kid = first.server.keyring.active.kid
            issued = await token_for(http, "bravo")
        async with (
            running_gateway(infra_env, settings, var_dir=var_dir, db_url=db_url) as second,
            httpx.AsyncClient(base_url=second.url) as http,
        ):
            assert second.server.keyring.active.kid == kid
            # The issuer is the gateway's URL, which changed with the port: check the signature
            # against the restarted ring, and the refresh token against the database.
            verifier = TokenVerifier(first.url, "hats-api", LocalKeySource(second.server.keyring.keyset))
            assert (await verifier.verify(issued["access_token"])).client_id == "bravo"
            response = await http.post(
                "/oauth2/token",
                data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]},
                headers=basic("bravo"),
            )
            assert response.status_code == 200, response.text
            replay = await http.post(
                "/oauth2/token",
                data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]},
                headers=basic("bravo"),
            )
            assert_error(replay, 400, "invalid_grant")
    finally:
        await drop_database(env["DATABASE_URL"], db_url)
