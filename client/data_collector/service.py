"""data-collector (9002): sources -> disk buffer -> server, with nothing lost in between."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import httpx
from prometheus_client import Gauge

from client.data_collector.backfill import Backfills
from client.data_collector.buffer import TickBuffer, TickStore
from client.data_collector.confirmation import Confirmer
from client.data_collector.forwarder import Forwarder
from client.data_collector.routes import QUARANTINE_PATH, router
from client.data_collector.settings import CollectorSettings
from client.data_collector.sources import ConnectorSource, InboxSource
from client.data_collector.state import Collector
from client.server_client import server_client
from shared.kit.app import Notice
from shared.kit.client_key import client_key_headers
from shared.kit.contract import Contract
from shared.kit.deps import HttpClient
from shared.kit.service import Runtime, ServiceDefinition
from shared.periodic import every

log = logging.getLogger(__name__)

#: Ticks come from the local terminal; they go to the server through its one public door.
CONTRACT = Contract(calls=("metatrader-connector", "api-gateway"))


def _http_options(_: CollectorSettings) -> dict[str, Any]:
    return {
        "timeout": httpx.Timeout(10.0, connect=2.0),
        "limits": httpx.Limits(max_connections=8, max_keepalive_connections=8),
    }


def _every(seconds: float, step: Callable[[], Awaitable[Any]]) -> Awaitable[None]:
    # A failing source must not stop the others.
    return every(seconds, step, log=log, what="collector step")


#: A forwarder or confirmation loop that failed is started again after this pause (readiness red meanwhile).
RESTART_AFTER_S = 1.0
#: The server refuses ticks more than this far ahead of its clock (data-bridge's validator).
SERVER_MAX_FUTURE_S = 60.0


async def start(rt: Runtime[CollectorSettings, Collector]) -> Collector:
    settings = rt.settings
    var = rt.platform.hats_var_dir / "collector"
    # One wall clock for every part: retry times are written by the forwarder and compared by the buffer.
    clock = rt.overrides.wall_clock or time.time
    buffer = await TickBuffer.open(
        var / "buffer.sqlite3",
        gap_threshold_ms=settings.gap_threshold_s * 1000,
        max_ticks=settings.max_buffered_ticks,
        clock=clock,
    )
    rt.on_stop(buffer.close)
    connector_url = rt.url_of("metatrader-connector", override=settings.connector_url)
    connector = ConnectorSource(
        rt.http,
        connector_url,
        settings.symbols,
        buffer,
        backfill_s=settings.backfill_s,
        headers=client_key_headers(rt.platform),
        clock=clock,
    )
    inbox = InboxSource(settings.inbox_dir or var / "inbox", buffer)
    server = server_client(rt, settings, wall_clock=clock)
    forwarder = Forwarder(
        server,
        buffer,
        batch_size=settings.batch_size,
        clock=clock,
        retry_first_s=settings.retry_first_s,
        retry_max_s=settings.retry_max_s,
    )
    confirmer = Confirmer(server, buffer, forwarder, interval_s=settings.confirm_interval_s)
    backfills = Backfills(
        rt.http,
        connector_url,
        server,
        page_bars=settings.backfill_page_bars,
        headers=client_key_headers(rt.platform),
        clock=clock,
    )
    rt.on_stop(backfills.close)

    if settings.history_days > 0 and settings.history_timeframes:
        history = (list(settings.symbols), list(settings.history_timeframes), int(settings.history_days * 86_400))
        rt.background("history", lambda: backfills.history(*history), restart_after_s=RESTART_AFTER_S)
    held = Gauge("collector_ticks", "Ticks in the collector's buffer, by state", ["state"], registry=rt.registry)

    async def collect() -> None:
        if await connector.poll() + await inbox.scan():
            forwarder.wake.set()

    async def purge() -> None:
        await buffer.call(TickStore.purge_confirmed, settings.dedupe_window_s)

    async def count() -> None:
        for state, n in asdict(await buffer.call(TickStore.counts)).items():
            held.labels(state).set(n)

    # A full buffer, a quarantine or a skewed clock are Notices, not failures: the collector still
    # does all it can, and a red /readyz would keep `hats up` (which waits for ready) from starting.

    async def buffer_ready() -> str | None:
        counts = await buffer.call(TickStore.counts)  # the SQLite file opens and answers
        if counts.unconfirmed >= settings.max_buffered_ticks:
            return Notice(
                f"buffer full ({counts.unconfirmed} unconfirmed ticks, cap {settings.max_buffered_ticks}): "
                "the sources are paused until the server confirms deliveries"
            )
        return None

    async def quarantine_ready() -> str | None:
        reasons = await buffer.call(TickStore.quarantine_reasons)
        if not reasons:
            return None
        listed = ", ".join(f"{reason}: {n}" for reason, n in sorted(reasons.items()))
        return Notice(
            f"{sum(reasons.values())} ticks refused by the server are quarantined ({listed}); see {QUARANTINE_PATH}"
        )

    async def server_ready() -> str | None:
        if server.auth_problem:
            return server.auth_problem
        if not forwarder.reachable:
            return f"server unreachable ({forwarder.last_error}); buffering"
        skew = server.clock_skew_s
        if skew is not None and -skew > SERVER_MAX_FUTURE_S:
            return Notice(
                f"this host's clock is {-skew:.0f}s ahead of the server's: ticks are held and sent again until "
                "the server's clock reaches them; synchronise the clocks"
            )
        return None

    rt.add_check("buffer", buffer_ready)
    rt.add_check("quarantine", quarantine_ready)
    rt.add_check("server", server_ready)
    rt.background("forwarder", forwarder.run, restart_after_s=RESTART_AFTER_S)
    rt.background("confirmation", confirmer.run, restart_after_s=RESTART_AFTER_S)
    rt.background("collect", lambda: _every(settings.poll_interval_ms / 1000, collect))
    rt.background("purge", lambda: _every(60, purge))
    rt.background("metrics", lambda: _every(5, count))
    return Collector(buffer, forwarder, confirmer, server, connector, backfills, settings.symbols)


SERVICE = ServiceDefinition(
    "data-collector",
    settings=CollectorSettings,
    contract=CONTRACT,
    uses=(HttpClient(options=_http_options),),
    routers=(router,),
    start=start,
)
