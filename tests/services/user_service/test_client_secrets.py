"""Client secrets: argon2id hashes only, shown once, rotation, and authentication that reveals nothing."""

from __future__ import annotations

import re

import pytest
from argon2 import PasswordHasher

from services.user_service.secrets import HASH_PREFIX, SecretHasher, new_client_id, new_secret

INTERNAL = ("internal",)
AUTHENTICATE = "/internal/v1/clients/authenticate"


async def test_secret_and_client_id_format():
    secret, client_id = new_secret(), new_client_id()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)
    assert re.fullmatch(r"hc_[A-Za-z0-9_-]{16}", client_id)
    assert new_secret() != secret and new_client_id() != client_id


async def test_hasher_makes_salted_argon2id_hashes_and_verifies_them():
    hasher = SecretHasher(concurrency=2)
    secret = new_secret()
    first, second = await hasher.hash(secret), await hasher.hash(secret)
    assert first.startswith(HASH_PREFIX) and first != second  # a fresh salt each time
    assert "m=65536,t=3,p=4" in first  # RFC 9106 low-memory profile
    assert await hasher.verify(first, secret) and await hasher.verify(second, secret)
    assert not await hasher.verify(first, secret + "x")
    assert not await hasher.verify("not a hash", secret)
    assert not hasher.needs_rehash(first)
    await hasher.verify_nothing(secret)  # spends the time, answers nothing


class CountingHasher(PasswordHasher):
    """argon2-cffi's hasher, counting the verifications it actually runs."""

    verifies = 0

    def verify(self, hash, password):
        type(self).verifies += 1
        return super().verify(hash, password)


async def test_a_recent_match_skips_argon2_but_a_wrong_or_rotated_secret_never_does():
    now = [0.0]
    CountingHasher.verifies = 0
    hasher = SecretHasher(concurrency=2, hasher=CountingHasher(), remember_s=300, clock=lambda: now[0])
    secret = new_secret()
    stored = await hasher.hash(secret)
    assert await hasher.verify(stored, secret) and await hasher.verify(stored, secret)
    assert CountingHasher.verifies == 1  # the second answer came from memory
    assert not await hasher.verify(stored, secret + "x") and not await hasher.verify(stored, secret + "x")
    assert CountingHasher.verifies == 3  # a wrong secret always pays for argon2
    rotated = await hasher.hash(new_secret())
    assert not await hasher.verify(rotated, secret)  # the old secret against the new hash
    assert CountingHasher.verifies == 4
    now[0] = 301.0
    assert await hasher.verify(stored, secret)
    assert CountingHasher.verifies == 5  # remembered for a while only


async def _created_client(user_app, mint, **body) -> dict:
    response = await user_app.http.post(
        "/api/v1/users/clients", headers=mint("platform"), json={"name": "feed", "scopes": ["market:read"], **body}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def _authenticate(user_app, mint, client_id: str, secret: str):
    return await user_app.http.post(
        AUTHENTICATE,
        headers=mint("platform", INTERNAL, client_id="api-gateway"),
        json={"client_id": client_id, "client_secret": secret},
    )


async def test_secret_is_stored_only_as_argon2id_hash_and_shown_once(user_app, mint, store):
    created = await _created_client(user_app, mint)
    secret = created["client_secret"]
    async with store.reading() as directory:
        stored = await directory.conn.fetchval(
            "SELECT secret_hash FROM users.clients WHERE client_id = $1", created["client_id"]
        )
        whole_row = await directory.conn.fetchval(
            "SELECT c::text FROM users.clients c WHERE client_id = $1", created["client_id"]
        )
    assert stored.startswith("$argon2id$") and stored != secret
    assert secret not in whole_row
    one = await user_app.http.get(f"/api/v1/users/clients/{created['client_id']}", headers=mint("platform"))
    listed = await user_app.http.get("/api/v1/users/clients", headers=mint("platform"))
    for text in (one.text, listed.text):
        for leak in (secret, "secret_hash", "client_secret", "$argon2"):
            assert leak not in text
    assert one.json()["client_id"] == created["client_id"]


async def test_authenticate_returns_the_clients_grants(user_app, mint):
    created = await _created_client(
        user_app, mint, scopes=["market:read", "trade"], grant_types=["refresh_token", "client_credentials"]
    )
    response = await _authenticate(user_app, mint, created["client_id"], created["client_secret"])
    assert response.status_code == 200, response.text
    assert response.json() == {
        "client_id": created["client_id"],
        "tenant": "platform",
        "scopes": ["market:read", "trade"],
        "grant_types": ["client_credentials", "refresh_token"],
    }


async def test_rotate_secret_invalidates_the_old_one(user_app, mint):
    created = await _created_client(user_app, mint)
    rotated = await user_app.http.post(
        f"/api/v1/users/clients/{created['client_id']}/rotate-secret", headers=mint("platform")
    )
    assert rotated.status_code == 200, rotated.text
    new_secret_ = rotated.json()["client_secret"]
    assert new_secret_ != created["client_secret"] and rotated.json()["client_id"] == created["client_id"]
    assert (await _authenticate(user_app, mint, created["client_id"], created["client_secret"])).status_code == 401
    assert (await _authenticate(user_app, mint, created["client_id"], new_secret_)).status_code == 200
    after = await user_app.http.get(f"/api/v1/users/clients/{created['client_id']}", headers=mint("platform"))
    assert after.json()["secret_rotated_at"] > created["secret_rotated_at"]
    assert new_secret_ not in after.text


async def test_every_refusal_is_the_same_401(user_app, mint):
    tenant = "refusals"
    assert (
        await user_app.http.post(
            "/api/v1/users/tenants", headers=mint("platform"), json={"id": tenant, "name": "Refusals"}
        )
    ).status_code == 201
    good = await _created_client(user_app, mint)
    disabled = await _created_client(user_app, mint)
    assert (
        await user_app.http.post(f"/api/v1/users/clients/{disabled['client_id']}/disable", headers=mint("platform"))
    ).status_code == 200
    in_disabled_tenant = await _created_client(user_app, mint, tenant=tenant)
    assert (
        await _authenticate(user_app, mint, in_disabled_tenant["client_id"], in_disabled_tenant["client_secret"])
    ).status_code == 200
    assert (
        await user_app.http.post(f"/api/v1/users/tenants/{tenant}/disable", headers=mint("platform"))
    ).status_code == 200

    refusals = {
        "wrong secret": await _authenticate(user_app, mint, good["client_id"], good["client_secret"] + "x"),
        "unknown id": await _authenticate(user_app, mint, "hc_doesnotexist0", good["client_secret"]),
        "disabled client": await _authenticate(user_app, mint, disabled["client_id"], disabled["client_secret"]),
        "disabled tenant": await _authenticate(
            user_app, mint, in_disabled_tenant["client_id"], in_disabled_tenant["client_secret"]
        ),
    }
    bodies = {why: (r.status_code, r.headers["content-type"], r.content) for why, r in refusals.items()}
    assert len(set(bodies.values())) == 1, bodies
    status, content_type, body = bodies["unknown id"]
    assert status == 401 and content_type == "application/problem+json"
    assert b"invalid client credentials" in body
    # The good client still works: the refusals were about the others.
    assert (await _authenticate(user_app, mint, good["client_id"], good["client_secret"])).status_code == 200


@pytest.mark.parametrize("scopes", [("admin",), ("market:read", "trade", "admin", "compliance")])
async def test_authenticate_requires_the_internal_scope(user_app, mint, scopes):
    response = await user_app.http.post(
        AUTHENTICATE, headers=mint("platform", scopes), json={"client_id": "x", "client_secret": "y"}
    )
    assert response.status_code == 403
    assert (await user_app.http.post(AUTHENTICATE, json={"client_id": "x", "client_secret": "y"})).status_code == 401


async def test_authenticate_body_is_strict(user_app, mint):
    response = await user_app.http.post(
        AUTHENTICATE,
        headers=mint("platform", INTERNAL),
        json={"client_id": "x", "client_secret": "y", "scope": "admin"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_unknown_client_id_costs_as_long_as_a_wrong_secret(user_app, mint):
    """Coarse on purpose: without the dummy verify an unknown id answers ~100x faster."""
    import time

    created = await _created_client(user_app, mint)

    async def median(client_id: str) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            assert (await _authenticate(user_app, mint, client_id, "wrong")).status_code == 401
            times.append(time.perf_counter() - started)
        return sorted(times)[2]

    wrong_secret, unknown_id = await median(created["client_id"]), await median("hc_unknownclient0")
    assert unknown_id > 0.5 * wrong_secret, (unknown_id, wrong_secret)
