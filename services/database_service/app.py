"""database-service (8008): owner of the stores; market data in ClickHouse, served over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from starlette.middleware import Middleware

from infra.migrations import pg as pg_migrations
from infra.postgres import database_url
from services.database_service import consumers
from services.database_service.bars_fast_path import BarsFastPath
from services.database_service.cache import BarCache, SeriesKey
from services.database_service.clickhouse import migrate, open_clickhouse
from services.database_service.repository import MarketRepository
from services.database_service.routes import router
from services.database_service.settings import DatabaseServiceSettings
from shared import topics
from shared.auth.service import platform_verifier, protect
from shared.bus.broker import create_broker
from shared.kit.app import Kit, build_app

NAME = "database-service"


def create_app() -> FastAPI:
    settings = DatabaseServiceSettings()
    app: FastAPI

    @contextlib.asynccontextmanager
    async def lifespan(kit: Kit) -> AsyncIterator[None]:
        platform = kit.settings
        # The OLTP store's schema is this service's to keep current, like the time series one.
        await pg_migrations.migrate(database_url(platform))
        clickhouse_url = platform.clickhouse_url.get_secret_value() if platform.clickhouse_url else None
        ch = open_clickhouse(clickhouse_url, platform.hats_var_dir)
        await migrate(ch)
        repo = MarketRepository(ch)
        cache = BarCache(settings.cache_bars_per_series)
        loading: dict[SeriesKey, asyncio.Future] = {}

        async def read_series(key: SeriesKey) -> None:
            cache.load(key, await repo.bars(key[0], key[1], start_ms=None, end_ms=None, limit=cache.capacity))

        async def load_series(key: SeriesKey) -> None:
            # One ClickHouse read per series, however many requests ask for it at once.
            task = loading.get(key)
            if task is None:
                task = loading[key] = asyncio.ensure_future(read_series(key))
            try:
                await asyncio.shield(task)
            except Exception:
                loading.pop(key, None)  # let the next request try again
                raise

        async def clickhouse_ready() -> str | None:
            await ch.rows("SELECT 1")
            return None

        kit.add_check("clickhouse", clickhouse_ready)
        app.state.settings, app.state.repo, app.state.cache = settings, repo, cache
        app.state.load_series = load_series

        broker = create_broker(kit)
        jwks_http = httpx.AsyncClient(timeout=5.0)
        protect(app, platform_verifier(kit.settings, jwks_http), broker)
        consumers.register(broker, kit, repo, cache, settings)
        feed: consumers.CatchUp = kit.state["bars_feed"]
        await feed.capture(platform.kafka_servers, topics.MARKET_BARS)
        cache.caught_up = feed.done()
        await broker.start()
        try:
            yield
        finally:
            await broker.stop()  # drains handlers, commits offsets
            await jwks_http.aclose()
            ch.close()

    app = build_app(NAME, lifespan=lifespan, routers=[router])
    # Innermost, like a route: the metrics, the server span and the error handlers wrap it.
    app.user_middleware.append(Middleware(BarsFastPath))
    return app
