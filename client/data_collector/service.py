"""data-collector (9002): sources -> disk buffer -> server, with nothing lost in between."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from client.data_collector.buffer import TickBuffer
from client.data_collector.forwarder import Forwarder
from client.data_collector.routes import router
from client.data_collector.server import ClientCredentials, ServerClient
from client.data_collector.settings import CollectorSettings
from client.data_collector.sources import ConnectorSource, InboxSource
from client.data_collector.state import Collector
from shared.kit.client_key import client_key_headers
from shared.kit.contract import Contract
from shared.kit.deps import HttpClient
from shared.kit.service import Runtime, ServiceDefinition

log = logging.getLogger(__name__)

#: Ticks come from the local terminal; they go to the server through its one public door.
CONTRACT = Contract(calls=("metatrader-connector", "api-gateway"))


def _http_options(_: CollectorSettings) -> dict[str, Any]:
    return {
        "timeout": httpx.Timeout(10.0, connect=2.0),
        "limits": httpx.Limits(max_connections=8, max_keepalive_connections=8),
    }


async def _every(seconds: float, step: Callable[[], Awaitable[Any]]) -> None:
    while True:
        try:
            await step()
        except Exception:  # a failing source must not stop the others
            log.exception("collector step failed")
        await asyncio.sleep(seconds)


async def start(rt: Runtime[CollectorSettings, Collector]) -> Collector:
    settings = rt.settings
    var = rt.platform.hats_var_dir / "collector"
    buffer = TickBuffer(var / "buffer.sqlite3", gap_threshold_ms=settings.gap_threshold_s * 1000)

    async def close_buffer() -> None:
        buffer.close()

    rt.on_stop(close_buffer)
    connector = ConnectorSource(
        rt.http,
        rt.url_of("metatrader-connector", override=settings.connector_url),
        settings.symbols,
        buffer,
        backfill_s=settings.backfill_s,
        headers=client_key_headers(rt.platform),
    )
    inbox = InboxSource(settings.inbox_dir or var / "inbox", buffer)
    server_url = rt.url_of("api-gateway", override=settings.server_url)
    configured = (
        ClientCredentials(settings.client_id, settings.client_secret.get_secret_value())
        if settings.client_id and settings.client_secret
        else None
    )
    server = ServerClient(
        server_url,
        settings.token_url or server_url.rstrip("/") + "/oauth2/token",
        configured,
        rt.platform.hats_var_dir / "credentials.json",
        rt.http,
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

    rt.add_check("buffer", buffer_ready)
    rt.add_check("server", server_ready)
    rt.background("forwarder", forwarder.run)
    rt.background("collect", lambda: _every(settings.poll_interval_ms / 1000, collect))
    rt.background("purge", lambda: _every(60, purge))
    return Collector(buffer, forwarder, connector)


SERVICE = ServiceDefinition(
    "data-collector",
    settings=CollectorSettings,
    contract=CONTRACT,
    uses=(HttpClient(options=_http_options),),
    routers=(router,),
    start=start,
)
