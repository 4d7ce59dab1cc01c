"""The data-collector's faults against the real server side: the session mesh's gateway,
data-bridge and database-service, on the real broker, PostgreSQL and ClickHouse.

* A forwarder failure: the network path to the gateway (a TCP proxy, token endpoint included)
  is cut while batches are in flight. Readiness goes red, then green once the path is back,
  and every tick is stored once: none lost, none extra (a batch whose answer the cut lost
  is sent again; the store keeps a tick once by its id).
* Clocks 70 s apart: the collector runs with its wall clock injected 70 s ahead of this host's
  (``Overrides.wall_clock``; the host's clock is untouched), so its ticks are 70 s ahead of the
  server, which accepts 60 s. They are refused for now, held and sent again until the server's
  clock reaches them: every tick is delivered and stored, none quarantined.

The collector runs in process (its kit lifespan, loops and API, as ``hats serve`` runs it), its
buffer on disk; ticks enter through its inbox. The same faults against a fake server are in
``tests/client/data_collector/test_collector_service.py``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.synthetic import synthetic_ticks
from client.data_collector.service import SERVICE
from client.data_collector.settings import CollectorSettings
from shared.kit.service import Overrides
from shared.settings import PlatformSettings
from tests.faults.proxy import TcpProxy
from tests.support import eventually, stored_ticks

pytestmark = pytest.mark.slow


class Running:
    """The collector's own API (status, readiness), in process."""

    def __init__(self, client: httpx.AsyncClient, inbox: Path) -> None:
        self.client, self.inbox = client, inbox

    async def status(self) -> dict[str, Any]:
        return (await self.client.get("/api/v1/collector/status")).json()

    async def readiness(self) -> tuple[int, dict[str, Any]]:
        r = await self.client.get("/readyz")
        return r.status_code, r.json()["checks"]

    def drop(self, name: str, ticks: list[dict[str, Any]]) -> None:
        """An export dropped into the inbox, written aside first so it is never read half-written."""
        part = self.inbox.parent / name
        pq.write_table(pa.Table.from_pylist(ticks), part)
        part.rename(self.inbox / name)


@contextlib.asynccontextmanager
async def collector(
    mesh: Any, var: Path, server_url: str, *, wall_clock: Callable[[], float] | None = None, **settings: Any
) -> AsyncIterator[Running]:
    """The data-collector with the client the first ``hats up`` registered for it, sending to ``server_url``."""
    credentials = json.loads((mesh.var / "credentials.json").read_text())["data-collector"]
    inbox = var / "inbox"
    inbox.mkdir(parents=True)
    options = {
        "server_url": server_url,
        "client_id": credentials["client_id"],
        "client_secret": credentials["client_secret"],
        "connector_url": "http://127.0.0.1:9",  # no terminal: the inbox is the source
        "inbox_dir": inbox,
        "poll_interval_ms": 50,
        "confirm_interval_s": 0.2,
        "retry_first_s": 0.2,
        "retry_max_s": 1.0,
        **settings,
    }
    app = SERVICE.create_app(
        platform=PlatformSettings(hats_var_dir=var),
        settings=CollectorSettings(**options),
        overrides=Overrides(wall_clock=wall_clock),
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector", timeout=10) as client:
            yield Running(client, inbox)


async def stored(http: httpx.AsyncClient, gateway: str, symbol: str) -> list[tuple[int, Decimal, Decimal]]:
    """The symbol's stored ticks through the gateway (each once, ``FINAL``): (time, bid, ask), oldest first."""
    rows = await stored_ticks(http, gateway, symbol)
    assert rows is not None, "GET /api/v1/market/ticks did not answer 200"
    return sorted((t["time_msc"], Decimal(t["bid"]), Decimal(t["ask"])) for t in rows.values())


def sent(ticks: list[dict[str, Any]]) -> list[tuple[int, Decimal, Decimal]]:
    return sorted((t["time_msc"], Decimal(t["bid"]), Decimal(t["ask"])) for t in ticks)


async def assert_stored_exactly(http: httpx.AsyncClient, gateway: str, ticks: list[dict[str, Any]]) -> None:
    """The symbol's stored ticks are the ones dropped in the inbox, each once (the symbol is the test's own)."""
    symbol = ticks[0]["symbol"]
    expected = sent(ticks)

    async def all_stored() -> list[tuple[int, Decimal, Decimal]] | None:
        got = await stored(http, gateway, symbol)
        return got if len(got) >= len(expected) else None

    assert await eventually(all_stored, timeout_s=30, interval_s=0.5) == expected


async def test_a_forwarder_cut_off_from_the_server_turns_readiness_red_then_delivers_every_tick_once(
    mesh, http, tmp_path
):
    gateway = mesh.url("api-gateway")
    ticks = synthetic_ticks("TSTCUT", int(time.time() * 1000) - 3_600_000, 3000, step_ms=500, seed=61)
    first, second = ticks[:2000], ticks[2000:]
    async with (
        TcpProxy(mesh.settings.port_of("api-gateway")) as proxy,
        collector(mesh, tmp_path, f"http://127.0.0.1:{proxy.port}", batch_size=100) as running,
    ):
        running.drop("TSTCUT_1.parquet", first)

        async def some_accepted() -> bool:
            return (await running.status())["accepted_by_server"] > 0

        await eventually(some_accepted, timeout_s=30, interval_s=0.01)
        await proxy.cut()  # mid-stream: requests in flight are reset, new connections refused
        running.drop("TSTCUT_2.parquet", second)  # taken in while the server is away

        async def red() -> dict[str, Any] | None:
            code, checks = await running.readiness()
            return checks["server"] if code == 503 and not checks["server"]["ok"] else None

        check = await eventually(red, timeout_s=15, interval_s=0.05)
        assert check["detail"].startswith("server unreachable")
        assert (await running.status())["buffered"] > 0
        await proxy.restore()

        async def green_and_delivered() -> dict[str, Any] | None:
            code, checks = await running.readiness()
            status = await running.status()
            done = code == 200 and checks["server"] == {"ok": True} and status["delivered"] == len(ticks)
            return status if done else None

        status = await eventually(green_and_delivered, timeout_s=45, interval_s=0.2)
        assert status["buffered"] == 0 and status["quarantined"] == 0
    await assert_stored_exactly(http, gateway, ticks)


#: The collector's clock is this far ahead of the server's; the server takes ticks up to 60 s ahead.
SKEW_S = 70


async def test_a_collector_clock_70_s_ahead_of_the_server_delays_ticks_and_loses_or_quarantines_none(
    mesh, http, tmp_path
):
    gateway = mesh.url("api-gateway")

    def ahead() -> float:  # the client tier's host, its clock 70 s fast
        return time.time() + SKEW_S

    # Stamped by that host's clock (as its terminal would): the last second before the drop.
    ticks = synthetic_ticks("TSTSKEW", int(ahead() * 1000) - 1_000, 200, step_ms=2, seed=67)
    async with collector(mesh, tmp_path, gateway, wall_clock=ahead) as running:
        running.drop("TSTSKEW_export.parquet", ticks)

        async def refused_for_now() -> dict[str, Any] | None:
            status = await running.status()
            return status if status["refused_for_now"] else None

        status = await eventually(refused_for_now, timeout_s=20, interval_s=0.05)
        assert -SKEW_S - 2 <= status["clock_skew_s"] <= -SKEW_S + 1  # measured from the gateway's Date
        code, checks = await running.readiness()
        assert code == 200 and checks["server"]["ok"] and "ahead of the server's" in checks["server"]["detail"]

        async def all_delivered() -> dict[str, Any] | None:
            status = await running.status()
            return status if status["delivered"] == len(ticks) else None

        # The server's clock reaches the ticks ~10 s after they were stamped, then one retry more.
        status = await eventually(all_delivered, timeout_s=40, interval_s=0.2)
        assert status["quarantined"] == 0 and status["buffered"] == 0
    await assert_stored_exactly(http, gateway, ticks)
