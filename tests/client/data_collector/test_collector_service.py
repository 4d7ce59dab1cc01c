"""The whole collector service (kit lifespan, its loops, readiness, its API) against a faithful server.

Ticks enter through the inbox (a Parquet file), as an operator's export would; the
server is ``fake_server.FakeServer`` over real HTTP; the buffer is SQLite on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from client.data_collector.buffer import TickStore
from client.data_collector.service import SERVICE
from client.data_collector.settings import CollectorSettings
from services.data_bridge.domain.validation import TickValidator
from shared.settings import PlatformSettings
from tests.client.data_collector.fake_server import CLIENT_ID, SECRET, FakeServer
from tests.support import eventually


def ticks(symbol: str, n: int, start_ms: int) -> list[dict[str, Any]]:
    return [
        {
            "symbol": symbol,
            "time_msc": start_ms + i * 10,
            "bid": f"1.{1000 + i}",
            "ask": f"1.{1002 + i}",
            "last": None,
            "volume": "0",
            "flags": 0,
        }
        for i in range(n)
    ]


def drop(inbox: Path, name: str, batch: list[dict[str, Any]]) -> None:
    pq.write_table(pa.Table.from_pylist(batch), inbox / name)


def write_credentials(var: Path, secret: str) -> None:
    (var / "credentials.json").write_text(
        json.dumps({"data-collector": {"client_id": CLIENT_ID, "client_secret": secret}})
    )


class Running:
    def __init__(self, client: httpx.AsyncClient, inbox: Path) -> None:
        self.client, self.inbox = client, inbox

    async def status(self) -> dict[str, Any]:
        return (await self.client.get("/api/v1/collector/status")).json()

    async def check(self, name: str) -> dict[str, Any]:
        return (await self.client.get("/readyz")).json()["checks"][name]


@contextlib.asynccontextmanager
async def collector(server_url: str, var: Path, **settings: Any) -> AsyncIterator[Running]:
    inbox = var / "inbox"
    options = {
        "server_url": server_url,
        "connector_url": "http://127.0.0.1:9",  # no terminal here: the inbox is the source
        "inbox_dir": inbox,
        "poll_interval_ms": 50,
        "confirm_interval_s": 0.05,
        "retry_first_s": 0.1,
        "retry_max_s": 0.5,
        **settings,
    }
    app = SERVICE.create_app(platform=PlatformSettings(hats_var_dir=var), settings=CollectorSettings(**options))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            yield Running(client, inbox)


async def test_clocks_70s_apart_delay_ticks_but_drop_or_quarantine_none(tmp_path):
    """Fault: the client tier's clock is 70 s ahead of the server's (the server allows 60 s).

    The server's clock is injected: 70 s behind this host's at the start, catching up
    (as an operator's NTP fix would) at 3 s per second, so the test takes seconds.
    """
    t0, started = time.time(), time.monotonic()

    def server_clock() -> float:
        return t0 - 70 + 3 * (time.monotonic() - started)

    write_credentials(tmp_path, SECRET)
    batch = ticks("EURUSD", 40, start_ms=int(t0 * 1000) - 400)  # stamped by this host's clock
    async with FakeServer(clock=server_clock) as fake, collector(fake.url, tmp_path) as running:
        drop(running.inbox, "EURUSD_export.parquet", batch)

        async def refused_for_now() -> dict[str, Any] | None:
            status = await running.status()
            return status if status["refused_for_now"] else None

        status = await eventually(refused_for_now, timeout_s=10, interval_s=0.02)
        assert -72 <= status["clock_skew_s"] <= -65  # measured from the server's Date header
        assert status["quarantined"] == 0
        server_check = await running.check("server")
        assert server_check["ok"] and "ahead of the server's" in server_check["detail"]

        async def all_confirmed() -> dict[str, Any] | None:
            status = await running.status()
            return status if status["ticks"]["confirmed"] == 40 else None

        status = await eventually(all_confirmed, timeout_s=30)
        assert status["quarantined"] == 0 and status["buffered"] == 0
    assert sorted(t["time_msc"] for t in fake.accepted) == [t["time_msc"] for t in batch]


@pytest.mark.parametrize(("task", "method"), [("forwarder", "pending"), ("confirmation", "receipts")])
async def test_a_failing_loop_turns_readiness_red_is_restarted_and_delivers(tmp_path, monkeypatch, task, method):
    write_credentials(tmp_path, SECRET)
    original = getattr(TickStore, method)
    failures: list[str] = []

    def failing_once(self: TickStore, *args: Any) -> Any:
        result = original(self, *args)
        if result and getattr(result, "seqs", True) and not failures:  # once there is work to do
            failures.append("disk I/O error")
            raise sqlite3.OperationalError("disk I/O error")
        return result

    monkeypatch.setattr(TickStore, method, failing_once)
    async with FakeServer() as fake, collector(fake.url, tmp_path) as running:
        drop(running.inbox, "EURUSD_export.parquet", ticks("EURUSD", 25, start_ms=int(time.time() * 1000) - 5000))

        async def tasks_red() -> dict[str, Any] | None:
            check = await running.check("tasks")
            return check if not check["ok"] else None

        red = await eventually(tasks_red, timeout_s=10, interval_s=0.02)
        assert red["detail"] == f"{task}: OperationalError: disk I/O error (restarting)"

        async def delivered() -> bool:
            return (await running.status())["ticks"]["confirmed"] == 25 and (await running.check("tasks"))["ok"]

        await eventually(delivered, timeout_s=15)
    assert len(fake.accepted) == 25


async def test_a_stale_secret_is_not_hammered_and_a_new_one_is_picked_up(tmp_path):
    write_credentials(tmp_path, SECRET)
    async with FakeServer() as fake:
        fake.secret = "rotated"  # the secret was rotated on the server; the file still has the old one
        async with collector(fake.url, tmp_path) as running:
            drop(running.inbox, "EURUSD_export.parquet", ticks("EURUSD", 10, start_ms=int(time.time() * 1000) - 5000))

            async def refused() -> dict[str, Any] | None:
                check = await running.check("server")
                return check if not check["ok"] and "refused the credentials" in check["detail"] else None

            await eventually(refused, timeout_s=10)
            await asyncio.sleep(3)  # the forwarder keeps trying to deliver meanwhile
            assert fake.token_attempts == [False]  # one failed authentication, not one per attempt
            assert (await running.status())["buffered"] == 10

            write_credentials(tmp_path, "rotated")  # the operator writes the new secret

            async def delivered() -> bool:
                return (await running.status())["ticks"]["confirmed"] == 10 and (await running.check("server"))["ok"]

            await eventually(delivered, timeout_s=15)
    assert fake.token_attempts == [False, True]


async def test_a_full_buffer_pauses_the_inbox_says_so_and_resumes_once_delivered(tmp_path):
    write_credentials(tmp_path, SECRET)
    now_ms = int(time.time() * 1000)
    fake = FakeServer()  # its port is reserved, nothing answers there yet: the server is down
    async with collector(fake.url, tmp_path, max_buffered_ticks=30) as running:
        drop(running.inbox, "A_first.parquet", ticks("EURUSD", 30, start_ms=now_ms - 9000))

        async def full() -> dict[str, Any] | None:
            check = await running.check("buffer")
            return check if "detail" in check else None

        check = await eventually(full, timeout_s=10)
        assert check["ok"] and "buffer full" in check["detail"]  # said, without holding back `hats up`
        drop(running.inbox, "B_second.parquet", ticks("GBPUSD", 10, start_ms=now_ms - 9000))
        await asyncio.sleep(0.5)  # several scans of the inbox
        assert (running.inbox / "B_second.parquet").exists()  # left in place: nothing taken, nothing lost
        assert (await running.status())["buffered"] == 30

        async with fake:  # the server comes back

            async def everything_delivered() -> bool:
                return (await running.status())["ticks"]["confirmed"] == 40

            await eventually(everything_delivered, timeout_s=20)
        assert (running.inbox / "done" / "B_second.parquet").exists()
        assert await running.check("buffer") == {"ok": True}


async def test_quarantined_ticks_are_listed_said_in_readiness_and_can_be_released(tmp_path):
    write_credentials(tmp_path, SECRET)
    now_ms = int(time.time() * 1000)
    async with FakeServer() as fake, collector(fake.url, tmp_path) as running:
        fake.validator = TickValidator(symbols=frozenset({"EURUSD"}))  # the server does not trade GBPUSD yet
        drop(running.inbox, "mixed.parquet", ticks("EURUSD", 5, now_ms - 5000) + ticks("GBPUSD", 3, now_ms - 5000))

        async def quarantined() -> dict[str, Any] | None:
            check = await running.check("quarantine")
            return check if "detail" in check else None

        check = await eventually(quarantined, timeout_s=10)
        assert check["ok"] and check["detail"].startswith(
            "3 ticks refused by the server are quarantined (unknown_symbol: 3)"
        )
        listed = (await running.client.get("/api/v1/collector/quarantine")).json()
        assert {q["tick"]["symbol"] for q in listed} == {"GBPUSD"} and len(listed) == 3
        assert (await running.status())["ticks"]["confirmed"] == 5

        fake.validator = TickValidator()  # GBPUSD added on the server: send them again
        assert (await running.client.post("/api/v1/collector/quarantine/release")).json() == {"released": 3}

        async def all_delivered() -> bool:
            confirmed = (await running.status())["ticks"]["confirmed"]
            return confirmed == 8 and await running.check("quarantine") == {"ok": True}

        await eventually(all_delivered, timeout_s=10)
