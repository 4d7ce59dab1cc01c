"""data-bridge (8001): the server edge for the client tier; ticks in, bars out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from prometheus_client import Counter

from infra.postgres import open_service_pool
from services.data_bridge import bar_stage
from services.data_bridge.domain.validation import TickValidator
from services.data_bridge.ingest import router
from services.data_bridge.settings import DataBridgeSettings
from shared import topics
from shared.auth.service import platform_verifier, protect
from shared.bus.broker import create_broker
from shared.bus.deadletter import DeadLetters
from shared.bus.publish import BulkPublisher
from shared.kit.app import Kit, build_app

NAME = "data-bridge"


class IngestMetrics:
    def __init__(self, kit: Kit) -> None:
        self.received = Counter("ticks_received_total", "Ticks received at the ingest edge", registry=kit.registry)
        self.rejected = Counter(
            "ticks_rejected_total", "Ticks rejected at the ingest edge", ["reason"], registry=kit.registry
        )
        self.published = Counter("ticks_published_total", "Ticks published to the bus", registry=kit.registry)


def create_app() -> FastAPI:
    settings = DataBridgeSettings()
    app: FastAPI

    @contextlib.asynccontextmanager
    async def lifespan(kit: Kit) -> AsyncIterator[None]:
        pool = await open_service_pool(kit)
        broker = create_broker(kit)
        jwks_http = httpx.AsyncClient(timeout=5.0)
        protect(app, platform_verifier(kit.settings, jwks_http), broker)
        stage = bar_stage.BarStage(
            kit,
            settings,
            bar_stage.CheckpointStore(pool),
            BulkPublisher(broker, topics.MARKET_BARS),
            DeadLetters(broker, kit, bar_stage.GROUP),
        )
        pacer = bar_stage.register(broker, stage, kit.settings.kafka_fetch_max_wait_ms)
        app.state.settings = settings
        app.state.validator = TickValidator(
            symbols=settings.symbols or None,
            max_future_ns=settings.max_future_s * 10**9,
            max_spread_ratio=settings.max_spread_ratio,
        )
        app.state.tick_publisher = BulkPublisher(broker, topics.MARKET_TICKS)
        app.state.metrics = IngestMetrics(kit)
        await broker.start()
        try:
            async with pacer.running():
                yield
        finally:
            await stage.close()
            await broker.stop()
            await jwks_http.aclose()
            await pool.close()

    app = build_app(NAME, lifespan=lifespan, routers=[router])
    return app
