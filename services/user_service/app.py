"""user-service (8009): owner of tenants, users, role assignments and OAuth2 clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from infra.postgres import open_service_pool
from services.user_service import internal, routes
from services.user_service.bootstrap import AdminOverride, bootstrap
from services.user_service.outbox import Outbox
from services.user_service.repository import Store
from services.user_service.secrets import SecretHasher
from services.user_service.settings import UserServiceSettings
from services.user_service.state import Services
from shared import topics
from shared.auth import TokenVerifier
from shared.auth.service import platform_verifier, protect
from shared.bus.broker import create_broker
from shared.bus.publish import BulkPublisher
from shared.kit.app import Kit, build_app
from shared.settings import PlatformSettings

NAME = "user-service"


def create_app(
    *,
    settings: UserServiceSettings | None = None,
    platform: PlatformSettings | None = None,
    verifier: TokenVerifier | None = None,
) -> FastAPI:
    """The service's ASGI app.

    In production all arguments are left out: settings come from the environment and
    tokens are verified against the gateway's JWKS. Tests pass their own settings and a
    verifier trusting a key they hold.
    """
    settings = settings or UserServiceSettings()
    app: FastAPI

    @contextlib.asynccontextmanager
    async def lifespan(kit: Kit) -> AsyncIterator[None]:
        secret = settings.admin_client_secret
        # Checked first: a bad override should stop the start before anything is touched.
        override = AdminOverride.from_settings(
            settings.admin_client_id, None if secret is None else secret.get_secret_value()
        )
        pool = await open_service_pool(kit, min_size=settings.pool_min_size, max_size=settings.pool_max_size)
        store = Store(pool)
        http: httpx.AsyncClient | None = None
        sweeper: asyncio.Task | None = None
        try:
            hasher = SecretHasher(settings.hash_concurrency, remember_s=settings.verified_secret_ttl_s)
            await hasher.warm_up()
            started = await bootstrap(
                store,
                hasher,
                var_dir=kit.settings.hats_var_dir,
                token_url=kit.settings.token_issuer + "/oauth2/token",
                override=override,
            )
            token_verifier = verifier
            if token_verifier is None:
                http = httpx.AsyncClient(timeout=5.0)
                token_verifier = platform_verifier(kit.settings, http)
            broker = create_broker(kit)
            protect(app, token_verifier, broker)
            outbox = Outbox(store, BulkPublisher(broker, topics.DIRECTORY_CHANGES), grace_s=settings.outbox_grace_s)
            app.state.user_service = Services(store, hasher, outbox)
            await broker.start()
            try:
                await outbox.deliver(started.events)
                sweeper = asyncio.create_task(outbox.run(settings.outbox_sweep_interval_s), name="outbox-sweep")
                yield
            finally:
                if sweeper is not None:
                    sweeper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sweeper
                await broker.stop()
        finally:
            if http is not None:
                await http.aclose()
            await pool.close()

    app = build_app(NAME, lifespan=lifespan, routers=[routes.router, internal.router], settings=platform)
    return app
