"""api-gateway (8000): the OAuth2 authorisation server and, in front of the mesh, the ``/api/v1`` proxy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from infra.postgres import open_service_pool
from services.api_gateway import metadata, oauth
from services.api_gateway.bruteforce import AuthFailureGuard
from services.api_gateway.clients import ClientDirectory, ServiceTokens
from services.api_gateway.grants import GRANTS
from services.api_gateway.keys import KeyRing
from services.api_gateway.openapi_merge import install_merged_openapi, service_upstreams
from services.api_gateway.proxy import GatewayProxy, ProxySettings, install_proxy, upstream_routes
from services.api_gateway.refresh import RefreshTokenStore
from services.api_gateway.revocations import Revocations
from services.api_gateway.security import install_security
from services.api_gateway.server import AuthorizationServer
from services.api_gateway.settings import GatewaySettings
from shared import topics
from shared.auth import LocalKeySource, Principal, RevokedTokens, TokenVerifier
from shared.auth.feed import register_revocation_feed
from shared.bus.broker import create_broker
from shared.bus.publish import BulkPublisher
from shared.kit.app import Kit, build_app
from shared.ratelimit import Limit, SlidingWindowLimiter
from shared.settings import PlatformSettings

NAME = "api-gateway"
log = logging.getLogger(__name__)


def create_app(*, settings: PlatformSettings | None = None, gateway_settings: GatewaySettings | None = None) -> FastAPI:
    """The gateway app; ``settings``/``gateway_settings`` default to the environment (tests pass their own)."""
    gateway = gateway_settings or GatewaySettings()
    app: FastAPI

    @contextlib.asynccontextmanager
    async def lifespan(kit: Kit) -> AsyncIterator[None]:
        platform = kit.settings
        pool = await open_service_pool(kit, max_size=8)

        keyring = KeyRing(
            platform.hats_var_dir / "keys",
            max_age_s=gateway.key_max_age_days * 86_400,
            retire_after_s=gateway.key_retire_after_s,
            publish_ahead_s=gateway.key_publish_ahead_s,
        )
        await asyncio.to_thread(keyring.open)

        broker = create_broker(kit)
        revoked = RevokedTokens()
        # Revocations made by the other gateway processes reach this one's verifier too.
        register_revocation_feed(broker, revoked)
        store = RefreshTokenStore(pool, ttl_s=gateway.refresh_token_ttl_s)
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(gateway.user_service_timeout_s, connect=min(1.0, gateway.user_service_timeout_s)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
        issuer, audience = platform.token_issuer, platform.hats_token_audience
        server = AuthorizationServer(
            settings=gateway,
            issuer=issuer,
            audience=audience,
            keyring=keyring,
            directory=ClientDirectory(
                gateway.user_service_url or platform.url_of("user-service"),
                http,
                ServiceTokens(keyring, issuer=issuer, audience=audience, ttl_s=gateway.service_token_ttl_s),
                timeout_s=gateway.user_service_timeout_s,
            ),
            guard=AuthFailureGuard(
                per_client=gateway.auth_failures_per_client,
                per_ip=gateway.auth_failures_per_ip,
                window_s=gateway.auth_failure_window_s,
                lockout_s=gateway.auth_lockout_s,
            ),
            refresh=store,
            revocations=Revocations(store, revoked, BulkPublisher(broker, topics.AUTH_REVOCATIONS)),
            verifier=TokenVerifier(issuer, audience, LocalKeySource(keyring.keyset), revoked=revoked),
            signatures=TokenVerifier(issuer, audience, LocalKeySource(keyring.keyset)),
            grants=dict(GRANTS),
        )
        app.state.oauth = server

        await broker.start()
        housekeeping = asyncio.create_task(_housekeeping(keyring, store, gateway.housekeeping_interval_s))
        try:
            async with proxy:
                yield
        finally:
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping
            await http.aclose()
            await broker.stop()
            await pool.close()

    app = build_app(
        NAME, lifespan=lifespan, routers=[oauth.router, metadata.router], settings=settings, title="api-gateway"
    )
    platform = settings or PlatformSettings()
    # The proxy is middleware, so it exists before the app starts; the verifier (the keyring's)
    # only once the lifespan has opened the keyring.
    proxy = GatewayProxy(
        upstream_routes(platform),
        _VerifierOf(app),
        SlidingWindowLimiter({"default": Limit(gateway.rate_limit_requests, gateway.rate_limit_window_s)}),
        ProxySettings(read_timeout_s=gateway.upstream_timeout_s, max_body_bytes=gateway.max_body_bytes),
    )
    install_proxy(app, proxy)
    install_security(app, cors_origins=gateway.cors_origins)
    install_merged_openapi(app, service_upstreams(platform), lambda: proxy.session)
    return app


class _VerifierOf:
    """The authorisation server's verifier, looked up when the first request arrives."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    async def verify(self, token: str) -> Principal:
        return await self._app.state.oauth.verifier.verify(token)


async def _housekeeping(keyring: KeyRing, store: RefreshTokenStore, interval_s: float) -> None:
    """Rotate a key past its age, retire keys past ``retire_after``, purge dead refresh tokens."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(keyring.maintain)
            await store.purge()
        except Exception:  # a failed round is retried next interval; the gateway keeps serving
            log.exception("gateway housekeeping failed")
