"""data-collector (9002): sources -> disk buffer -> server, with nothing lost in between."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from client.data_collector.buffer import TickBuffer
from client.data_collector.forwarder import Forwarder
from client.data_collector.server import ClientCredentials, ServerClient
from client.data_collector.settings import CollectorSettings
from client.data_collector.sources import ConnectorSource, InboxSource
from shared.kit.app import Kit, build_app

NAME = "data-collector"
log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/collector", tags=["collector"])


@router.get("/status", operation_id="collector_status", summary="Buffer depth, delivery and source state")
async def status(request: Request) -> Response:
    s = request.app.state
    return Response(
        orjson.dumps(
            {
                "buffered": s.buffer.depth(),
                "delivered": s.forwarder.delivered,
                "rejected_by_server": s.forwarder.rejected,
                "server_reachable": s.forwarder.reachable,
                "server_unreachable_since": s.forwarder.unreachable_since,
                "last_error": s.forwarder.last_error,
                "connector_reachable": s.connector.reachable,
                "gaps": len(s.buffer.gaps()),
            }
        ),
        media_type="application/json",
    )


@router.get("/gaps", operation_id="collector_gaps", summary="Silences longer than the gap threshold")
async def gaps(request: Request) -> Response:
    return Response(orjson.dumps(request.app.state.buffer.gaps()), media_type="application/json")


async def _every(seconds: float, step) -> None:
    while True:
        try:
            await step()
        except Exception:  # a failing source must not stop the others
            log.exception("collector step failed")
        await asyncio.sleep(seconds)


def create_app() -> FastAPI:
    settings = CollectorSettings()
    app: FastAPI

    @contextlib.asynccontextmanager
    async def lifespan(kit: Kit) -> AsyncIterator[None]:
        var = kit.settings.hats_var_dir / "collector"
        buffer = TickBuffer(var / "buffer.sqlite3", gap_threshold_ms=settings.gap_threshold_s * 1000)
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=2.0),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
        )
        connector = ConnectorSource(
            http,
            settings.connector_url or kit.settings.url_of("metatrader-connector"),
            settings.symbols,
            buffer,
            backfill_s=settings.backfill_s,
        )
        inbox = InboxSource(settings.inbox_dir or var / "inbox", buffer)
        server_url = settings.server_url or kit.settings.url_of("api-gateway")
        configured = (
            ClientCredentials(settings.client_id, settings.client_secret.get_secret_value())
            if settings.client_id and settings.client_secret
            else None
        )
        server = ServerClient(
            server_url,
            settings.token_url or server_url.rstrip("/") + "/oauth2/token",
            configured,
            kit.settings.hats_var_dir / "credentials.json",
            http,
        )
        forwarder = Forwarder(server, buffer, batch_size=settings.batch_size)

        async def collect() -> None:
            if await connector.poll() + await asyncio.to_thread(inbox.scan):
                forwarder.wake.set()

        async def purge() -> None:
            await asyncio.to_thread(buffer.purge_delivered, settings.dedupe_window_s)

        async def server_ready() -> str | None:
            return None if forwarder.reachable else f"server unreachable ({forwarder.last_error}); buffering"

        async def buffer_ready() -> str | None:
            await asyncio.to_thread(buffer.depth)  # the SQLite file opens and answers
            return None

        kit.add_check("buffer", buffer_ready)
        kit.add_check("server", server_ready)
        app.state.buffer, app.state.forwarder, app.state.connector = buffer, forwarder, connector
        tasks = [
            asyncio.create_task(forwarder.run()),
            asyncio.create_task(_every(settings.poll_interval_ms / 1000, collect)),
            asyncio.create_task(_every(60, purge)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await http.aclose()
            buffer.close()

    app = build_app(NAME, lifespan=lifespan, routers=[router])
    return app
