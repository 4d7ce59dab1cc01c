"""api-gateway (8000): the OAuth2 authorisation server and, in front of the mesh, the ``/api/v1`` proxy."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from services.api_gateway import metadata, oauth
from services.api_gateway.bruteforce import AuthFailureGuard
from services.api_gateway.clients import ClientDirectory, ServiceTokens
from services.api_gateway.grants import GRANTS
from services.api_gateway.keys import KeyRing
from services.api_gateway.openapi_merge import install_merged_openapi, service_upstreams
from services.api_gateway.proxy import GatewayProxy, ProxySettings, install_proxy, upstream_routes
from services.api_gateway.refresh import RefreshTokenStore
from services.api_gateway.revocation_ledger import RevocationLedger
from services.api_gateway.revocations import Revocations
from services.api_gateway.security import install_security
from services.api_gateway.server import AuthorizationServer
from services.api_gateway.settings import GatewaySettings
from shared import ports
from shared.auth import LocalKeySource, Principal, RevokedTokens, TokenVerifier
from shared.auth.feed import register_revocation_feed
from shared.events import ClientTokensRevoked, TokenRevoked
from shared.kit.app import ServiceApp
from shared.kit.contract import Consumes, Contract
from shared.kit.deps import Bus, HttpClient, Postgres
from shared.kit.service import Runtime, ServiceDefinition
from shared.ratelimit import Limit, SlidingWindowLimiter

log = logging.getLogger(__name__)

CONTRACT = Contract(
    produces=(TokenRevoked,),
    consumes=(
        Consumes(TokenRevoked, group=None, purpose="revocations by any gateway instance reach this one's verifier"),
        Consumes(
            ClientTokensRevoked,
            group=None,
            purpose="refuse a revoked client's tokens, and keep the cut-off for GET /oauth2/revocations",
        ),
    ),
    # Client authentication, and every service that owns an /api/v1 area (the proxy, the merged /docs).
    calls=tuple(dict.fromkeys(("user-service", *ports.ROUTES.values()))),
)

GatewayRuntime = Runtime[GatewaySettings, AuthorizationServer]


def _user_service_http(settings: GatewaySettings) -> dict[str, Any]:
    timeout_s = settings.user_service_timeout_s
    return {
        "timeout": httpx.Timeout(timeout_s, connect=min(1.0, timeout_s)),
        "limits": httpx.Limits(max_connections=64, max_keepalive_connections=16),
    }


async def start(rt: GatewayRuntime) -> AuthorizationServer:
    gateway, platform = rt.settings, rt.platform
    keyring = KeyRing(
        platform.hats_var_dir / "keys",
        max_age_s=gateway.key_max_age_days * 86_400,
        retire_after_s=gateway.key_retire_after_s,
        publish_ahead_s=gateway.key_publish_ahead_s,
    )
    await asyncio.to_thread(keyring.open)
    ledger = RevocationLedger(rt.postgres)
    revoked = RevokedTokens()
    # The durable record first (the topics may have been lost with a broker restart), then the bus:
    # revocations made by the other gateway processes, and user-service's client cut-offs, which
    # every gateway process records (idempotently) so GET /oauth2/revocations serves them.
    (await ledger.live()).apply_to(revoked)
    register_revocation_feed(rt.bus, revoked, on_client_revoked=lambda event: _keep(ledger, event))
    store = RefreshTokenStore(rt.postgres, ttl_s=gateway.refresh_token_ttl_s)
    issuer, audience = platform.token_issuer, platform.hats_token_audience
    directory = ClientDirectory(
        rt.url_of("user-service", override=gateway.user_service_url),
        rt.http,
        ServiceTokens(keyring, issuer=issuer, audience=audience, ttl_s=gateway.service_token_ttl_s),
        timeout_s=gateway.user_service_timeout_s,
    )
    guard = AuthFailureGuard(
        per_client=gateway.auth_failures_per_client,
        per_ip=gateway.auth_failures_per_ip,
        window_s=gateway.auth_failure_window_s,
        lockout_s=gateway.auth_lockout_s,
    )

    revocations = Revocations(store, ledger, revoked, rt.bus.publisher(TokenRevoked))

    async def housekeeping() -> None:
        await _housekeeping(keyring, store, ledger, gateway.housekeeping_interval_s)

    async def revocation_sweeps() -> None:
        await revocations.run_sweeps(gateway.revocation_sweep_interval_s)

    rt.background("housekeeping", housekeeping)
    rt.background("revocation-sweep", revocation_sweeps)
    return AuthorizationServer(
        settings=gateway,
        issuer=issuer,
        audience=audience,
        keyring=keyring,
        directory=directory,
        guard=guard,
        refresh=store,
        revocations=revocations,
        verifier=TokenVerifier(issuer, audience, LocalKeySource(keyring.keyset), revoked=revoked),
        signatures=TokenVerifier(issuer, audience, LocalKeySource(keyring.keyset)),
        grants=dict(GRANTS),
        token_quota=SlidingWindowLimiter(
            {"default": Limit(gateway.token_requests_per_client, gateway.token_request_window_s)}, safety_margin=1.0
        ),
    )


def configure(app: ServiceApp, rt: GatewayRuntime) -> None:
    """The proxy, the security headers and the merged /docs are middleware and routes: they exist
    before the app starts (the proxy's verifier, the keyring's, is looked up per request)."""
    gateway = rt.settings
    rt.platform.check_publish_within(gateway.upstream_timeout_s)
    proxy = GatewayProxy(
        upstream_routes(rt.url_of),
        _StartedVerifier(rt),
        SlidingWindowLimiter({"default": Limit(gateway.rate_limit_requests, gateway.rate_limit_window_s)}),
        ProxySettings(read_timeout_s=gateway.upstream_timeout_s, max_body_bytes=gateway.max_body_bytes),
    )
    install_proxy(app, proxy)
    rt.after_start(proxy.start)
    rt.on_stop(proxy.aclose)
    install_security(app, cors_origins=gateway.cors_origins)
    install_merged_openapi(app, service_upstreams(rt.url_of), lambda: proxy.session)


async def _keep(ledger: RevocationLedger, event: ClientTokensRevoked) -> None:
    """Record a client cut-off for ``GET /oauth2/revocations``; a failure is logged, not raised (the
    feed goes on: every verifier already refuses the tokens, only a later-starting one could miss it)."""
    try:
        await ledger.record_client(event)
    except Exception:
        log.exception("could not record the token cut-off of client %s in PostgreSQL", event.client_id)


class _StartedVerifier:
    """The authorisation server's verifier, once the gateway has started."""

    def __init__(self, rt: GatewayRuntime) -> None:
        self._rt = rt

    async def verify(self, token: str) -> Principal:
        return await self._rt.state.verifier.verify(token)


async def _housekeeping(
    keyring: KeyRing, store: RefreshTokenStore, ledger: RevocationLedger, interval_s: float
) -> None:
    """Rotate a key past its age, retire keys past ``retire_after``, purge dead refresh tokens and cut-offs."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(keyring.maintain)
            await store.purge()
            await ledger.purge()
        except Exception:  # a failed round is retried next interval; the gateway keeps serving
            log.exception("gateway housekeeping failed")


SERVICE = ServiceDefinition(
    "api-gateway",
    settings=GatewaySettings,
    contract=CONTRACT,
    uses=(Postgres(max_size=8), Bus(), HttpClient(options=_user_service_http)),
    routers=(oauth.router, metadata.router),
    start=start,
    configure=configure,
)
