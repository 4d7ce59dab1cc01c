"""shared.auth: access tokens are verified with real Ed25519 keys, real JWKS over HTTP, no mocks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import time
import uuid

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives import serialization
from joserfc import jws
from joserfc.jwk import KeySet, OKPKey, RSAKey
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared import topics
from shared.auth import (
    InvalidToken,
    JwksKeySource,
    LocalKeySource,
    Principal,
    RevokedTokens,
    TokenVerifier,
    mint_access_token,
)
from shared.auth.feed import register_revocation_feed
from shared.auth.jose import REGISTRY
from shared.auth.keys import parse_jwks
from shared.auth.scopes import ADMIN, MARKET_READ, PLATFORM_TENANT, TRADE
from shared.auth.tokens import REQUIRED_CLAIMS
from shared.bus.broker import ensure_topics
from shared.events import ClientTokensRevoked, TokenRevoked, encode_event, now_ns
from shared.kit.bus import ServiceBus
from shared.kit.contract import Consumes, Contract, ContractUse
from tests.support import ServedApp, eventually, free_port

ISSUER = "http://127.0.0.1:8000"
AUDIENCE = "hats-api"


def ed25519(kid: str) -> OKPKey:
    return OKPKey.generate_key("Ed25519", parameters={"kid": kid})


K1 = ed25519("k1")
K2 = ed25519("k2")


def mint(key: OKPKey = K1, **overrides) -> str:
    args = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "subject": "client:feed",
        "client_id": "feed",
        "tenant": "acme",
        "scopes": [MARKET_READ, TRADE],
        "ttl_s": 900,
        **overrides,
    }
    return mint_access_token(key, **args)[0]


def claims(**overrides) -> dict:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "client:feed",
        "client_id": "feed",
        "tenant": "acme",
        "scope": "market:read",
        "iat": now,
        "exp": now + 900,
        "jti": uuid.uuid4().hex,
    }
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


def sign(body: dict, key: OKPKey = K1, **header) -> str:
    """An EdDSA JWS over arbitrary claims and header, signed with a real key."""
    return jws.serialize_compact(
        {"typ": "at+jwt", "alg": "EdDSA", "kid": key.kid, **header}, orjson.dumps(body), key, registry=REGISTRY
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verifier(*keys: OKPKey, revoked: RevokedTokens | None = None, **kwargs) -> TokenVerifier:
    keyset = KeySet(list(keys or (K1,)))
    return TokenVerifier(ISSUER, AUDIENCE, LocalKeySource(lambda: keyset), revoked=revoked, **kwargs)


async def refused(v: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        await v.verify(token)
    assert not token or token not in caught.value.description
    return caught.value.description


# --- the happy path --------------------------------------------------------------------------------


async def test_a_valid_token_gives_its_principal():
    token, minted = mint_access_token(
        K1,
        issuer=ISSUER,
        audience=AUDIENCE,
        subject="client:feed",
        client_id="feed",
        tenant="acme",
        scopes=[TRADE, MARKET_READ],
        ttl_s=900,
    )
    principal = await verifier().verify(token)
    assert principal == Principal(
        subject="client:feed",
        client_id="feed",
        tenant="acme",
        scopes=frozenset({MARKET_READ, TRADE}),
        token_id=minted["jti"],
        expires_at=minted["exp"],
        issued_at=minted["iat"],
    )
    assert minted["scope"] == "market:read trade" and minted["exp"] - minted["iat"] == 900
    assert principal.has(TRADE) and not principal.has(ADMIN) and not principal.is_platform_admin
    header = orjson.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"typ": "at+jwt", "alg": "EdDSA", "kid": "k1"}


async def test_platform_admin_is_admin_of_the_platform_tenant():
    admin = await verifier().verify(mint(tenant=PLATFORM_TENANT, scopes=[ADMIN]))
    tenant_admin = await verifier().verify(mint(tenant="acme", scopes=[ADMIN]))
    assert admin.is_platform_admin and not tenant_admin.is_platform_admin


async def test_audience_may_be_a_list():
    assert await verifier().verify(sign(claims(aud=["other", AUDIENCE])))
    assert await refused(verifier(), sign(claims(aud=["other", "more"]))) == "wrong audience"


async def test_an_empty_scope_is_a_token_with_no_scopes():
    assert (await verifier().verify(sign(claims(scope="")))).scopes == frozenset()


def test_minting_refuses_what_would_not_verify():
    with pytest.raises(ValueError):
        mint(key=OKPKey.generate_key("Ed448", parameters={"kid": "x"}))
    with pytest.raises(ValueError):
        mint(key=OKPKey.import_key(K1.as_dict(private=False)))  # public half cannot sign
    with pytest.raises(ValueError):
        mint(scopes=["market:read trade"])
    with pytest.raises(ValueError):
        mint(ttl_s=0)


# --- refusals ----------------------------------------------------------------------------------------


async def test_expired():
    assert await refused(verifier(), mint(now=int(time.time()) - 1000, ttl_s=900)) == "token expired"


async def test_leeway_tolerates_small_clock_skew():
    token = mint(now=int(time.time()) - 905, ttl_s=900)
    assert await refused(verifier(), token) == "token expired"
    assert await verifier(leeway_s=30).verify(token)


async def test_not_yet_valid():
    now = int(time.time())
    assert await refused(verifier(), sign(claims(nbf=now + 300))) == "token not yet valid"
    assert await refused(verifier(), mint(now=now + 300)) == "token issued in the future"
    assert await verifier(leeway_s=600).verify(sign(claims(nbf=now + 300)))


async def test_tampered_payload():
    header, _, signature = mint().split(".")
    forged = b64(orjson.dumps(claims(tenant=PLATFORM_TENANT, scope="admin")))
    assert await refused(verifier(), f"{header}.{forged}.{signature}") == "bad signature"


async def test_tampered_signature():
    header, payload, signature = mint().split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[10] ^= 0x01
    assert await refused(verifier(), f"{header}.{payload}.{b64(bytes(raw))}") == "bad signature"


async def test_a_token_signed_by_another_key_under_a_known_kid():
    impostor = ed25519("k1")
    assert await refused(verifier(), mint(key=impostor)) == "bad signature"


async def test_alg_none():
    header = b64(orjson.dumps({"typ": "at+jwt", "alg": "none", "kid": "k1"}))
    body = b64(orjson.dumps(claims()))
    assert await refused(verifier(), f"{header}.{body}.") == "unsupported signature algorithm"


@pytest.mark.parametrize("secret", ["pem", "raw", "jwk"])
async def test_hs256_signed_with_the_public_key_is_refused(secret):
    """Key confusion: an HMAC keyed with the (public) verification key must not pass."""
    public = K1.public_key
    key_bytes = {
        "pem": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "raw": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        "jwk": orjson.dumps(K1.as_dict(private=False)),
    }[secret]
    signing_input = (
        b64(orjson.dumps({"typ": "at+jwt", "alg": "HS256", "kid": "k1"})) + "." + b64(orjson.dumps(claims()))
    )
    mac = hmac.new(key_bytes, signing_input.encode(), hashlib.sha256).digest()
    assert await refused(verifier(), f"{signing_input}.{b64(mac)}") == "unsupported signature algorithm"


async def test_rs256_is_refused_even_with_a_published_rsa_key():
    rsa = RSAKey.generate_key(2048, parameters={"kid": "r1"})
    token = jws.serialize_compact(
        {"typ": "at+jwt", "alg": "RS256", "kid": "r1"}, orjson.dumps(claims()), rsa, algorithms=["RS256"]
    )
    v = TokenVerifier(ISSUER, AUDIENCE, LocalKeySource(lambda: KeySet([K1, rsa])))
    assert await refused(v, token) == "unsupported signature algorithm"


async def test_ed448_is_refused_although_eddsa_covers_it():
    ed448 = OKPKey.generate_key("Ed448", parameters={"kid": "e448"})
    token = sign(claims(), key=ed448)
    v = TokenVerifier(ISSUER, AUDIENCE, LocalKeySource(lambda: KeySet([K1, ed448])))
    assert await refused(v, token) == "unknown signing key"


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "a.b.c.d", "é.b.c", "x" * 5000])
async def test_malformed(token):
    assert await refused(verifier(), token) == "malformed token"


async def test_a_signed_payload_that_is_not_a_claims_object():
    token = jws.serialize_compact({"typ": "at+jwt", "alg": "EdDSA", "kid": "k1"}, b"[1, 2]", K1, registry=REGISTRY)
    assert await refused(verifier(), token) == "malformed token"


async def test_wrong_audience():
    assert await refused(verifier(), mint(audience="someone-else")) == "wrong audience"


async def test_wrong_issuer():
    assert await refused(verifier(), mint(issuer="https://evil.example")) == "wrong issuer"


@pytest.mark.parametrize("name", REQUIRED_CLAIMS)
async def test_missing_claim(name):
    assert await refused(verifier(), sign(claims(**{name: None}))) == f"missing claim: {name}"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("exp", "tomorrow"),
        ("exp", True),
        ("iat", {"at": 1}),
        ("sub", ""),
        ("tenant", 7),
        ("scope", ["market:read"]),
        ("jti", {"id": 1}),
    ],
)
async def test_ill_typed_claim(name, value):
    assert await refused(verifier(), sign(claims(**{name: value}))) == f"invalid claim: {name}"


async def test_unknown_kid():
    assert await refused(verifier(K1), mint(key=K2)) == "unknown signing key"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"typ": None}, "not an access token"),
        ({"typ": "JWT"}, "not an access token"),
        ({"kid": None}, "token names no signing key"),
        ({"jku": "https://evil.example/jwks"}, "unsupported token header"),
    ],
)
async def test_header_outside_the_profile(header, reason):
    fields = {"typ": "at+jwt", "alg": "EdDSA", "kid": "k1", **header}
    fields = {k: v for k, v in fields.items() if v is not None}
    token = jws.serialize_compact(fields, orjson.dumps(claims()), K1, registry=REGISTRY)
    assert await refused(verifier(), token) == reason


# --- revocation and the cache ----------------------------------------------------------------------


async def test_revoked_jti():
    revoked = RevokedTokens()
    token, minted = mint_access_token(
        K1,
        issuer=ISSUER,
        audience=AUDIENCE,
        subject="client:feed",
        client_id="feed",
        tenant="acme",
        scopes=[MARKET_READ],
        ttl_s=900,
    )
    revoked.add(minted["jti"], minted["exp"])
    assert await refused(verifier(revoked=revoked), token) == "token revoked"


async def test_cache_hit_returns_the_same_principal_and_still_honours_revocation():
    revoked = RevokedTokens()
    v = verifier(revoked=revoked)
    token = mint()
    first = await v.verify(token)
    assert await v.verify(token) is first
    revoked.add(first.token_id, first.expires_at)
    assert await refused(v, token) == "token revoked"


async def test_a_cached_token_still_expires():
    now = int(time.time())
    token = mint(now=now, ttl_s=2)
    v = verifier()
    assert await v.verify(token)
    await asyncio.sleep(now + 2 - time.time() + 0.05)
    assert await refused(v, token) == "token expired"


async def test_the_cache_is_bounded_and_evicts_the_least_recently_used():
    keyset = KeySet([K1])
    v = TokenVerifier(ISSUER, AUDIENCE, LocalKeySource(lambda: keyset), cache_size=1)
    older, newer = mint(), mint()
    await v.verify(older)
    await v.verify(newer)
    # With the key gone, only a cached verification can still succeed.
    keyset.keys.clear()
    assert await v.verify(newer)
    assert await refused(v, older) == "unknown signing key"


def principal_of(client_id: str, issued_at: int, token_id: str = "t") -> Principal:
    return Principal(f"client:{client_id}", client_id, "acme", frozenset(), token_id, issued_at + 900, issued_at)


def test_a_client_cut_off_refuses_the_clients_earlier_tokens_only():
    clock = [1000.0]
    revoked = RevokedTokens(clock=lambda: clock[0])
    revoked.revoke_client("feed", issued_before=1000, until=1960)
    assert revoked.refuses(principal_of("feed", 999))
    assert not revoked.refuses(principal_of("feed", 1000))  # issued from the cut-off on: the new secret's
    assert not revoked.refuses(principal_of("other", 999))
    revoked.revoke_client("feed", issued_before=900, until=1860)  # an older one, arriving late
    assert revoked.refuses(principal_of("feed", 999))
    revoked.revoke_client("feed", issued_before=1100, until=2060)  # a later one covers the earlier
    assert revoked.refuses(principal_of("feed", 1050))
    clock[0] = 2061.0
    assert revoked.prune() == 1 and not revoked.refuses(principal_of("feed", 1050))


async def test_a_verifier_refuses_everything_until_its_revocation_set_is_complete():
    revoked = RevokedTokens(complete=False)
    v = verifier(revoked=revoked)
    token = mint()
    assert await refused(v, token) == "revocation list not loaded yet"
    revoked.complete = True
    assert (await v.verify(token)).client_id == "feed"
    revoked.revoke_client("feed", issued_before=int(time.time()) + 1, until=int(time.time()) + 960)
    assert await refused(v, token) == "token revoked"  # the cached verification too


def test_revoked_tokens_forget_expired_ids():
    clock = [1000.0]
    revoked = RevokedTokens(clock=lambda: clock[0])
    revoked.add("dead", 999)  # expired already: not stored
    revoked.add("a", 1010)
    revoked.add("b", 2000)
    assert "a" in revoked and "b" in revoked and "dead" not in revoked
    clock[0] = 1100.0
    assert revoked.prune() == 1 and "a" not in revoked and len(revoked) == 1


async def test_the_revocation_feed_fills_the_set_and_skips_garbage(infra_env):
    _, _, settings = infra_env
    await ensure_topics(settings.kafka_servers)
    revoked = RevokedTokens()
    use = ContractUse(
        "api-gateway",
        Contract(consumes=(Consumes(TokenRevoked, group=None), Consumes(ClientTokensRevoked, group=None))),
    )
    bus = ServiceBus.connect(use, settings.kafka_servers, CollectorRegistry())
    broker = bus.broker
    register_revocation_feed(bus, revoked)
    token_id = uuid.uuid4().hex
    event = TokenRevoked(
        event_id=uuid.uuid4(), ts_event=now_ns(), ts_init=now_ns(), token_id=token_id, expires_at=int(time.time()) + 600
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_servers)
    await producer.start()
    await broker.start()
    try:
        await producer.send_and_wait(topics.AUTH_REVOCATIONS, b"not json")
        await producer.send_and_wait(topics.AUTH_REVOCATIONS, encode_event(event))

        async def seen():
            return token_id in revoked

        assert await eventually(seen)
    finally:
        await broker.stop()
        await producer.stop()


# --- JWKS over real HTTP ------------------------------------------------------------------------------


class JwksServer(ServedApp):
    """A real HTTP server (uvicorn) publishing a JWKS that a test can change, counting requests."""

    def __init__(self, *keys: OKPKey) -> None:
        self.keys = list(keys)
        self.hits = 0
        self.delay_s = 0.0
        super().__init__(Starlette(routes=[Route("/.well-known/jwks.json", self._jwks)]))
        self.url = self.base_url + "/.well-known/jwks.json"

    async def _jwks(self, request):
        self.hits += 1
        await asyncio.sleep(self.delay_s)
        return JSONResponse(KeySet(self.keys).as_dict(private=False))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


async def test_jwks_is_fetched_lazily_once_and_cached(http):
    async with JwksServer(K1) as server:
        source = JwksKeySource(server.url, http)
        v = TokenVerifier(ISSUER, AUDIENCE, source)
        assert server.hits == 0
        for _ in range(5):
            assert await v.verify(mint())
        assert server.hits == 1 and source.fetches == 1


async def test_concurrent_lookups_share_one_fetch_that_a_cancelled_caller_does_not_abort(http):
    async with JwksServer(K1) as server:
        server.delay_s = 0.3
        v = TokenVerifier(ISSUER, AUDIENCE, JwksKeySource(server.url, http))
        hung_up = asyncio.create_task(v.verify(mint()))
        await asyncio.sleep(0.05)
        others = [asyncio.create_task(v.verify(mint())) for _ in range(20)]
        await asyncio.sleep(0.05)
        hung_up.cancel()
        assert all(p.client_id == "feed" for p in await asyncio.gather(*others))
        assert server.hits == 1


async def test_a_rotated_in_key_is_found_by_a_refetch(http):
    clock = FakeClock()
    async with JwksServer(K1) as server:
        v = TokenVerifier(ISSUER, AUDIENCE, JwksKeySource(server.url, http, min_refresh_interval_s=5.0, clock=clock))
        assert await v.verify(mint(key=K1))
        server.keys.append(K2)  # the gateway rotates: k2 signs, k1 stays published
        clock.now += 5.0
        assert (await v.verify(mint(key=K2))).client_id == "feed"
        assert await v.verify(mint(key=K1))
        assert server.hits == 2


async def test_a_key_the_gateway_stops_publishing_is_dropped_within_max_age(http):
    """Finding 11: a retired (say leaked) key must stop verifying, cached tokens included,
    without waiting for an unknown kid to trigger a refetch."""
    clock = FakeClock()
    async with JwksServer(K1, K2) as server:
        source = JwksKeySource(server.url, http, min_refresh_interval_s=5.0, max_age_s=60.0, clock=clock)
        v = TokenVerifier(ISSUER, AUDIENCE, source)
        leaked = mint(key=K1)
        assert await v.verify(leaked)  # verified once: remembered by the verifier's cache
        server.keys = [K2]  # the gateway retires k1
        clock.now += 59.0
        assert await v.verify(leaked)  # within max_age the set may be stale: the documented bound
        clock.now += 1.0
        assert await refused(v, leaked) == "unknown signing key"
        assert await refused(v, mint(key=K1)) == "unknown signing key"
        assert (await v.verify(mint(key=K2))).client_id == "feed"
        assert server.hits == 2  # one periodic refetch, no more


async def test_a_failed_periodic_refetch_keeps_the_keys_it_had(http):
    clock = FakeClock()
    async with JwksServer(K1) as server:
        source = JwksKeySource(server.url, http, min_refresh_interval_s=5.0, max_age_s=60.0, clock=clock)
        v = TokenVerifier(ISSUER, AUDIENCE, source)
        token = mint(key=K1)
        assert await v.verify(token)
    # The gateway is gone: it retired nothing, so the mesh keeps verifying with what it knows.
    clock.now += 61.0
    assert (await v.verify(token)).client_id == "feed"
    assert source.fetches == 2


async def test_the_gateways_own_verifier_drops_a_removed_key_within_its_recheck(http):
    clock = FakeClock()
    keyset = KeySet([K1, K2])
    v = TokenVerifier(ISSUER, AUDIENCE, LocalKeySource(lambda: keyset, recheck_s=1.0, clock=clock))
    token = mint(key=K1)
    assert await v.verify(token)
    keyset = KeySet([K2])  # a keyring builds a new KeySet whenever its keys change
    assert await v.verify(token)  # not looked at again yet
    clock.now += 1.0
    assert await refused(v, token) == "unknown signing key"


async def test_unknown_kids_refetch_at_most_once_per_interval(http):
    clock = FakeClock()
    bogus = [ed25519(f"bogus-{i}") for i in range(30)]
    async with JwksServer(K1) as server:
        v = TokenVerifier(ISSUER, AUDIENCE, JwksKeySource(server.url, http, min_refresh_interval_s=5.0, clock=clock))
        assert await v.verify(mint())
        clock.now += 5.0
        outcomes = await asyncio.gather(*(v.verify(mint(key=k)) for k in bogus), return_exceptions=True)
        assert all(isinstance(o, InvalidToken) and o.description == "unknown signing key" for o in outcomes)
        assert server.hits == 2  # the initial fetch plus one refetch for the whole flood
        for key in bogus[:5]:
            await refused(v, mint(key=key))
        assert server.hits == 2
        clock.now += 5.0
        await refused(v, mint(key=bogus[0]))
        assert server.hits == 3


async def test_gateway_down_fails_fast_with_keys_unavailable(http):
    url = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"
    v = TokenVerifier(ISSUER, AUDIENCE, JwksKeySource(url, http))
    started = time.monotonic()
    assert await refused(v, mint()) == "signing keys unavailable"
    assert await refused(v, mint()) == "signing keys unavailable"  # within the interval: no new attempt
    assert time.monotonic() - started < 1.0


async def test_a_hanging_gateway_is_given_up_on_after_the_timeout(http):
    async def never_answer(reader, writer):
        with contextlib.suppress(Exception):
            await reader.read()  # hold the connection open until the client gives up
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    source = JwksKeySource(f"http://127.0.0.1:{port}/.well-known/jwks.json", http, timeout_s=0.3)
    try:
        started = time.monotonic()
        assert await refused(TokenVerifier(ISSUER, AUDIENCE, source), mint()) == "signing keys unavailable"
        assert 0.25 <= time.monotonic() - started < 1.5
    finally:
        server.close()
        await server.wait_closed()


async def test_known_keys_keep_working_while_the_gateway_is_down(http):
    clock = FakeClock()
    async with JwksServer(K1) as server:
        source = JwksKeySource(server.url, http, clock=clock, timeout_s=0.5)
        v = TokenVerifier(ISSUER, AUDIENCE, source)
        assert await v.verify(mint())
    clock.now += 10.0
    assert await v.verify(mint())  # k1 is cached
    assert await refused(v, mint(key=K2)) == "signing keys unavailable"  # maybe rotated in: cannot tell


def test_parse_jwks_keeps_only_ed25519_signing_keys():
    rsa = RSAKey.generate_key(2048, parameters={"kid": "r1"})
    ed448 = OKPKey.generate_key("Ed448", parameters={"kid": "e448"})
    x25519 = OKPKey.generate_key("X25519", parameters={"kid": "x1"})
    enc = OKPKey.generate_key("Ed25519", parameters={"kid": "enc", "use": "enc"})
    document = KeySet([K1, rsa, ed448, x25519, enc]).as_dict(private=False)
    document["keys"].append({"kty": "OKP", "crv": "Ed25519", "x": "not base64!", "kid": "broken"})
    assert set(parse_jwks(orjson.dumps(document))) == {"k1"}
    with pytest.raises(ValueError):
        parse_jwks(b'{"no": "keys"}')
