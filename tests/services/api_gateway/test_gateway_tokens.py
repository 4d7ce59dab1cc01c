"""The token endpoint, refresh rotation, revocation and introspection, over HTTP on real infrastructure."""

from __future__ import annotations

import asyncio
import base64
import time

import asyncpg
import httpx
import pytest
from gateway_harness import CLIENTS, TOKEN_FORM, assert_error, assert_no_store, basic, decode_segment, token_for

from services.api_gateway.refresh import token_hash
from shared.auth import InvalidToken, JwksKeySource, LocalKeySource, TokenVerifier
from shared.auth.scopes import CLIENT_SCOPES

pytestmark = pytest.mark.timeout(120)


# --- client authentication ----------------------------------------------------------------


async def test_client_credentials_with_basic(client, gateway):
    response = await client.post("/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("alpha"))
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == gateway.server.settings.access_token_ttl_s
    assert set(body["scope"].split()) == {"market:read", "trade"}
    assert "refresh_token" not in body  # alpha is not registered for the refresh_token grant
    assert gateway.users.callers[-1] == "service:api-gateway"


async def test_basic_credentials_are_form_urlencoded(client):
    # bravo's secret holds ':', ' ', '%', '+', '&', '='; RFC 6749 §2.3.1 encodes it before base64.
    body = await token_for(client, "bravo")
    assert body["access_token"]


async def test_client_credentials_with_form_fields(client):
    response = await client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "bravo", "client_secret": CLIENTS["bravo"].secret},
    )
    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"]


async def test_basic_and_form_secret_together_is_invalid_request(client):
    response = await client.post(
        "/oauth2/token",
        headers=basic("alpha"),
        data={"grant_type": "client_credentials", "client_id": "alpha", "client_secret": "alpha-secret"},
    )
    assert_error(response, 400, "invalid_request")


async def test_no_credentials_is_invalid_client(client):
    response = await client.post("/oauth2/token", data={"grant_type": "client_credentials"})
    assert_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"] == 'Basic realm="hats"'


async def test_wrong_secret_is_invalid_client_with_basic_challenge(client):
    response = await client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("alpha", "wrong")
    )
    assert_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"] == 'Basic realm="hats"'
    response = await client.post(
        "/oauth2/token", data={"grant_type": "client_credentials", "client_id": "alpha", "client_secret": "wrong"}
    )
    assert_error(response, 401, "invalid_client")


async def test_malformed_basic_header_is_invalid_client(client):
    response = await client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, headers={"Authorization": "Basic !!not-base64!!"}
    )
    assert_error(response, 401, "invalid_client")


# --- request format and grant types --------------------------------------------------------


async def test_json_body_is_invalid_request(client):
    response = await client.post("/oauth2/token", json={"grant_type": "client_credentials"}, headers=basic("alpha"))
    assert_error(response, 400, "invalid_request")


async def test_repeated_parameter_is_invalid_request(client):
    response = await client.post(
        "/oauth2/token",
        content="grant_type=client_credentials&scope=trade&scope=trade",
        headers={**TOKEN_FORM, **basic("alpha")},
    )
    assert_error(response, 400, "invalid_request")


async def test_missing_grant_type_is_invalid_request(client):
    response = await client.post("/oauth2/token", data={"scope": "trade"}, headers=basic("alpha"))
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "grant", ["password", "implicit", "authorization_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"]
)
async def test_unsupported_grant_types(client, gateway, grant):
    calls = gateway.users.calls
    response = await client.post(
        "/oauth2/token", data={"grant_type": grant, "username": "u", "password": "p"}, headers=basic("alpha")
    )
    assert_error(response, 400, "unsupported_grant_type")
    assert gateway.users.calls == calls  # refused before asking user-service


async def test_grant_not_registered_for_client_is_unauthorized_client(client):
    response = await client.post(
        "/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": "x"}, headers=basic("alpha")
    )
    assert_error(response, 400, "unauthorized_client")


# --- scopes --------------------------------------------------------------------------------


async def test_scope_narrowing(client):
    body = await token_for(client, "alpha", scope="trade")
    assert body["scope"] == "trade"
    assert decode_segment(body["access_token"], 1)["scope"] == "trade"


@pytest.mark.parametrize("scope", ["admin", "trade admin", "internal", "bad\\scope"])
async def test_scope_beyond_the_client_is_invalid_scope(client, scope):
    response = await client.post(
        "/oauth2/token", data={"grant_type": "client_credentials", "scope": scope}, headers=basic("alpha")
    )
    assert_error(response, 400, "invalid_scope")


async def test_internal_is_never_granted(client):
    body = await token_for(client, "sneaky")
    assert body["scope"] == "market:read"


# --- the access token ----------------------------------------------------------------------


async def test_access_token_claims_and_verification(client, gateway):
    started = int(time.time())
    body = await token_for(client, "alpha")
    token = body["access_token"]
    header, claims = decode_segment(token, 0), decode_segment(token, 1)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == gateway.server.keyring.active.kid
    assert claims["iss"] == gateway.url
    assert claims["aud"] == "hats-api"
    assert claims["exp"] - claims["iat"] == gateway.server.settings.access_token_ttl_s
    assert started - 1 <= claims["iat"] <= time.time() + 1
    assert claims["sub"] == "client:alpha" and claims["client_id"] == "alpha" and claims["tenant"] == "acme"
    assert len(claims["jti"]) == 32

    keyring = gateway.server.keyring
    local = TokenVerifier(gateway.url, "hats-api", LocalKeySource(keyring.keyset))
    principal = await local.verify(token)
    assert principal.scopes == {"market:read", "trade"} and principal.tenant == "acme"
    async with httpx.AsyncClient() as http:
        remote = TokenVerifier(gateway.url, "hats-api", JwksKeySource(f"{gateway.url}/.well-known/jwks.json", http))
        assert (await remote.verify(token)).token_id == claims["jti"]
    with pytest.raises(InvalidToken):
        await TokenVerifier(gateway.url, "another-api", LocalKeySource(keyring.keyset)).verify(token)


# --- refresh tokens ----------------------------------------------------------------------


async def refresh(client: httpx.AsyncClient, token: str, client_id: str = "bravo", **form: str) -> httpx.Response:
    return await client.post(
        "/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": token, **form}, headers=basic(client_id)
    )


async def test_refresh_rotates(client, gateway):
    first = await token_for(client, "bravo")
    response = await refresh(client, first["refresh_token"])
    assert response.status_code == 200, response.text
    assert_no_store(response)
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert set(second["scope"].split()) == {"market:read", "trade"}
    # Only hashes are stored.
    conn = await asyncpg.connect(gateway.db_url)
    try:
        stored = await conn.fetch(
            "SELECT token_hash, used_at FROM gateway.refresh_tokens WHERE token_hash = ANY($1)",
            [token_hash(first["refresh_token"]), token_hash(second["refresh_token"])],
        )
        assert len(stored) == 2
        assert not await conn.fetchval(
            "SELECT count(*) FROM gateway.refresh_tokens WHERE token_hash = $1", first["refresh_token"]
        )
    finally:
        await conn.close()
    assert {r["token_hash"]: r["used_at"] is not None for r in stored} == {
        token_hash(first["refresh_token"]): True,
        token_hash(second["refresh_token"]): False,
    }


async def test_refresh_with_narrower_scope(client):
    first = await token_for(client, "bravo")
    response = await refresh(client, first["refresh_token"], scope="trade")
    assert response.status_code == 200, response.text
    narrowed = response.json()
    assert narrowed["scope"] == "trade"
    # The refresh token keeps the grant's full scope (RFC 6749 §6); wider than that is refused.
    response = await refresh(client, narrowed["refresh_token"], scope="market:read trade")
    assert response.status_code == 200, response.text
    response = await refresh(client, response.json()["refresh_token"], scope="trade admin")
    assert_error(response, 400, "invalid_scope")


async def test_refresh_token_of_another_client_is_invalid_grant(client):
    bravo = await token_for(client, "bravo")
    response = await refresh(client, bravo["refresh_token"], client_id="charlie")
    assert_error(response, 400, "invalid_grant")
    # Not consumed by the failed attempt.
    assert (await refresh(client, bravo["refresh_token"])).status_code == 200


async def test_unknown_and_expired_refresh_tokens_are_invalid_grant(client, gateway):
    assert_error(await refresh(client, "no-such-token"), 400, "invalid_grant")
    assert_error(
        await client.post("/oauth2/token", data={"grant_type": "refresh_token"}, headers=basic("bravo")),
        400,
        "invalid_request",
    )
    issued = await token_for(client, "bravo")
    conn = await asyncpg.connect(gateway.db_url)
    try:
        await conn.execute(
            "UPDATE gateway.refresh_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
            token_hash(issued["refresh_token"]),
        )
    finally:
        await conn.close()
    assert_error(await refresh(client, issued["refresh_token"]), 400, "invalid_grant")


async def test_reuse_revokes_the_family_and_its_access_tokens(client, gateway, revocations):
    first = await token_for(client, "bravo")
    second = (await refresh(client, first["refresh_token"])).json()
    third = (await refresh(client, second["refresh_token"])).json()

    replay = await refresh(client, first["refresh_token"])
    assert_error(replay, 400, "invalid_grant")
    # The whole family is gone: the newest refresh token too.
    assert_error(await refresh(client, third["refresh_token"]), 400, "invalid_grant")

    jtis = {
        decode_segment(t["access_token"], 1)["jti"]: decode_segment(t["access_token"], 1)["exp"]
        for t in (first, second, third)
    }
    events = await revocations.wait_for(set(jtis))
    for jti, event in events.items():
        assert event.expires_at == jtis[jti]
        assert event.reason == "refresh_token_reuse"
    for issued in (first, second, third):
        response = await client.post(
            "/oauth2/introspect", data={"token": issued["access_token"]}, headers=basic("bravo")
        )
        assert response.json() == {"active": False}
    with pytest.raises(InvalidToken, match="revoked"):
        await gateway.server.verifier.verify(third["access_token"])


async def test_concurrent_double_refresh_one_succeeds(client):
    issued = await token_for(client, "bravo")
    results = await asyncio.gather(*(refresh(client, issued["refresh_token"]) for _ in range(2)))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 400], [r.text for r in results]
    loser = next(r for r in results if r.status_code == 400)
    assert loser.json()["error"] == "invalid_grant"


# --- revocation (RFC 7009) -------------------------------------------------------------------


async def test_revoke_access_token_publishes_and_deactivates(client, gateway, revocations):
    issued = await token_for(client, "alpha")
    jti = decode_segment(issued["access_token"], 1)["jti"]
    response = await client.post(
        "/oauth2/revoke",
        data={"token": issued["access_token"], "token_type_hint": "access_token"},
        headers=basic("alpha"),
    )
    assert response.status_code == 200, response.text
    assert_no_store(response)
    event = (await revocations.wait_for({jti}))[jti]
    assert event.expires_at == decode_segment(issued["access_token"], 1)["exp"]
    introspection = await client.post(
        "/oauth2/introspect", data={"token": issued["access_token"]}, headers=basic("alpha")
    )
    assert introspection.json() == {"active": False}
    # Other gateway processes see it through PostgreSQL, not only this one's memory.
    assert await gateway.server.refresh.is_access_revoked(jti)


async def test_revoke_refresh_token_revokes_its_grant(client, revocations):
    issued = await token_for(client, "bravo")
    response = await client.post(
        "/oauth2/revoke",
        data={"token": issued["refresh_token"], "token_type_hint": "refresh_token"},
        headers=basic("bravo"),
    )
    assert response.status_code == 200
    assert_error(await refresh(client, issued["refresh_token"]), 400, "invalid_grant")
    jti = decode_segment(issued["access_token"], 1)["jti"]
    await revocations.wait_for({jti})


@pytest.mark.parametrize("token", ["unknown-refresh-token", "a.b.c", "eyJhbGciOiJub25lIn0.eyJqdGkiOiJ4In0."])
async def test_revoke_unknown_or_invalid_is_200(client, token):
    response = await client.post("/oauth2/revoke", data={"token": token}, headers=basic("alpha"))
    assert response.status_code == 200
    assert response.content == b""


async def test_revoke_requires_client_authentication_and_a_token(client):
    assert_error(await client.post("/oauth2/revoke", data={"token": "x"}), 401, "invalid_client")
    assert_error(await client.post("/oauth2/revoke", data={}, headers=basic("alpha")), 400, "invalid_request")


async def test_revoke_another_clients_token_is_refused(client):
    issued = await token_for(client, "charlie")
    response = await client.post("/oauth2/revoke", data={"token": issued["access_token"]}, headers=basic("alpha"))
    assert_error(response, 400, "invalid_grant")
    response = await client.post("/oauth2/introspect", data={"token": issued["access_token"]}, headers=basic("charlie"))
    assert response.json()["active"] is True


# --- introspection (RFC 7662) ----------------------------------------------------------------


async def test_introspect_own_access_token(client, gateway):
    issued = await token_for(client, "alpha")
    claims = decode_segment(issued["access_token"], 1)
    response = await client.post("/oauth2/introspect", data={"token": issued["access_token"]}, headers=basic("alpha"))
    assert response.status_code == 200
    assert_no_store(response)
    assert response.json() == {
        "active": True,
        "scope": claims["scope"],
        "client_id": "alpha",
        "sub": "client:alpha",
        "tenant": "acme",
        "exp": claims["exp"],
        "iat": claims["iat"],
        "jti": claims["jti"],
        "token_type": "Bearer",
        "iss": gateway.url,
        "aud": "hats-api",
    }


async def test_introspect_other_clients_token_only_as_platform_admin(client):
    issued = await token_for(client, "charlie")
    for outsider in ("alpha", "tenant-admin"):
        response = await client.post(
            "/oauth2/introspect", data={"token": issued["access_token"]}, headers=basic(outsider)
        )
        assert response.json() == {"active": False}, outsider
    response = await client.post("/oauth2/introspect", data={"token": issued["access_token"]}, headers=basic("root"))
    assert response.json()["active"] is True
    assert response.json()["client_id"] == "charlie"


async def test_introspect_refresh_token(client):
    issued = await token_for(client, "bravo")
    response = await client.post(
        "/oauth2/introspect",
        data={"token": issued["refresh_token"], "token_type_hint": "refresh_token"},
        headers=basic("bravo"),
    )
    body = response.json()
    assert body["active"] is True and body["client_id"] == "bravo" and body["tenant"] == "acme"
    assert "token_type" not in body
    assert (
        await client.post("/oauth2/introspect", data={"token": issued["refresh_token"]}, headers=basic("charlie"))
    ).json() == {"active": False}
    await refresh(client, issued["refresh_token"])
    assert (
        await client.post("/oauth2/introspect", data={"token": issued["refresh_token"]}, headers=basic("bravo"))
    ).json() == {"active": False}


async def test_introspect_garbage_is_inactive(client):
    for token in ("garbage", "x.y.z", base64.urlsafe_b64encode(b"{}").decode() + ".e30.sig"):
        response = await client.post("/oauth2/introspect", data={"token": token}, headers=basic("alpha"))
        assert response.status_code == 200
        assert response.json() == {"active": False}


async def test_introspect_requires_client_authentication(client):
    assert_error(await client.post("/oauth2/introspect", data={"token": "x"}), 401, "invalid_client")


# --- discovery -----------------------------------------------------------------------------


async def test_metadata_document(client, gateway):
    response = await client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    doc = response.json()
    issuer = gateway.url
    assert doc["issuer"] == issuer
    assert doc["token_endpoint"] == f"{issuer}/oauth2/token"
    assert doc["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert doc["revocation_endpoint"] == f"{issuer}/oauth2/revoke"
    assert doc["introspection_endpoint"] == f"{issuer}/oauth2/introspect"
    assert doc["grant_types_supported"] == ["client_credentials", "refresh_token"]
    methods = ["client_secret_basic", "client_secret_post"]
    assert doc["token_endpoint_auth_methods_supported"] == methods
    assert doc["revocation_endpoint_auth_methods_supported"] == methods
    assert doc["introspection_endpoint_auth_methods_supported"] == methods
    assert set(doc["scopes_supported"]) == CLIENT_SCOPES and "internal" not in doc["scopes_supported"]
    assert doc["response_types_supported"] == []
    assert "code_challenge_methods_supported" not in doc and "authorization_endpoint" not in doc


async def test_jwks_has_public_parts_only(client, gateway):
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    assert '"d"' not in response.text
    keys = response.json()["keys"]
    assert [k["kid"] for k in keys] == [k.kid for k in gateway.server.keyring.keys()]
    for key in keys:
        assert set(key) == {"kty", "crv", "x", "kid", "alg", "use"}
        assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")


async def test_oversized_credentials_are_refused_without_asking_user_service(client, gateway):
    calls = gateway.users.calls
    response = await client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("alpha", "s" * 257)
    )
    assert_error(response, 401, "invalid_client")
    assert gateway.users.calls == calls


async def test_revoking_again_publishes_again(client, revocations):
    issued = await token_for(client, "alpha")
    jti = decode_segment(issued["access_token"], 1)["jti"]
    for _ in range(2):
        response = await client.post("/oauth2/revoke", data={"token": issued["access_token"]}, headers=basic("alpha"))
        assert response.status_code == 200
    await revocations.wait_for({jti}, times=2)
    published = [e for e in revocations.seen if e.token_id == jti]
    # A repeated revocation (the retry after a bus failure) is published again, as the same event.
    assert len(published) == 2 and published[0].event_id == published[1].event_id
