"""Delivery across restarts, on a mesh of its own that runs its own embedded broker and PostgreSQL
exactly as ``make run`` does (``hats up`` starts both; ``var/`` is kept across runs).

* A second run after a first one builds bars at once, continuing the first run's bars (finding 0).
* A client that follows the delivery protocol (receipts, ``/ingest/progress``, re-sending what a
  new epoch lost) loses no tick and doubles none, and the bars equal the bars computed from the
  stored ticks, when the broker is killed mid-stream (finding 1) and when data-bridge and
  database-service are (the supervisor restarts them).
* Ticks sent again after database-service restarted are stored and counted (``/symbols``) once.

The mesh runs the server side only (no simulated market), with ports of its own
(``HATS_TEST_PORT_OFFSET`` + 2500) beside the session mesh of ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import tempfile
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from bench.synthetic import synthetic_ticks
from services.data_bridge.domain.bars import bars_from_ticks
from shared.bus.epoch import EPOCH_HEADER
from shared.events import MarketTick, Timeframe, tick_event_id
from tests.conftest import PORT_OFFSET, Mesh
from tests.support import client_token, eventually, stored_ticks

pytestmark = pytest.mark.slow

#: +2500: a mesh's ports span 8000-9092 plus its offset, so +1000 put this mesh's services
#: (8001 + 1000) on the session mesh's client tier (9001): data-bridge could not bind, and
#: the gateway reached the session's terminal instead (404). +2500 overlaps no port of the
#: session mesh nor of the +500 fault meshes.
OFFSET = PORT_OFFSET + 2500
SERVER_SIDE = "--only=api-gateway,user-service,data-bridge,database-service"
#: Generous, so that the protocol client below can keep every tick it has not had confirmed
#: within it (see ``ProtocolClient``): then a tick sent again after a broker restart is never late.
LATENESS_MS = 120_000
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STEP_MS = 1_000  # ticks ~1 s apart in event time: ~20 M1 bars per 1,200 ticks


@pytest.fixture(scope="module")
def own_mesh():
    var = Path(tempfile.mkdtemp(prefix="hats-delivery-"))
    var.chmod(0o755)  # the embedded PostgreSQL runs as its own user and must reach its data directory
    env = {
        k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "CLICKHOUSE_URL")
    }
    env |= {
        "HATS_VAR_DIR": str(var),
        "HATS_PORT_OFFSET": str(OFFSET),
        "HATS_LOG_LEVEL": "INFO",
        "DATA_BRIDGE_ALLOWED_LATENESS_MS": str(LATENESS_MS),
    }
    mesh = Mesh(var, env, args=(SERVER_SIDE,), port_offset=OFFSET)
    mesh.start()
    try:
        yield mesh
    finally:
        mesh.stop()
        shutil.rmtree(var, ignore_errors=True)


@pytest.fixture(scope="module")
async def token(own_mesh) -> str:
    gateway = own_mesh.url("api-gateway")
    admin = json.loads((own_mesh.var / "credentials.json").read_text())["admin"]
    admin_token = await client_token(gateway, admin["client_id"], admin["client_secret"])
    async with httpx.AsyncClient(timeout=30.0, headers={"Authorization": f"Bearer {admin_token}"}) as client:
        r = await client.post(
            gateway + "/api/v1/users/clients",
            json={"name": "delivery-tests", "scopes": ["market:read", "market:write"]},
        )
    assert r.status_code == 201, r.text
    return await client_token(gateway, r.json()["client_id"], r.json()["client_secret"])


@pytest.fixture
async def http(token):
    async with httpx.AsyncClient(timeout=30.0, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


class Unavailable(Exception):
    pass


class ProtocolClient:
    """The client side of the delivery protocol, small: every accepted tick is kept with its receipt
    until ``/ingest/progress`` confirms it; ticks of a receipt whose epoch is not the current one are
    sent again, before anything newer. It never has more than ``window_ms`` of event time between its
    oldest unconfirmed tick and the newest it sends (below the bar stage's allowed lateness, so a
    tick sent again is never late)."""

    def __init__(self, http: httpx.AsyncClient, gateway: str, window_ms: int = LATENESS_MS - 20_000) -> None:
        self.http, self.gateway, self.window_ms = http, gateway, window_ms
        self.pending: list[tuple[dict, list[dict]]] = []  # (receipt, ticks)
        self.accepted: dict[tuple[str, int], dict] = {}
        self.resent = 0
        self.refused_for_epoch = 0
        self.epochs: set[str] = set()

    async def stream(self, ticks: list[dict], chunk: int = 25) -> None:
        for i in range(0, len(ticks), chunk):
            part = ticks[i : i + chunk]
            while self.pending and part[-1]["time_msc"] - self._oldest_pending() > self.window_ms:
                await self._sync_or_wait()
            await self.send(part)
        while self.pending:
            await self._sync_or_wait()

    async def send(self, ticks: list[dict]) -> None:
        while True:
            # The epoch of what is unconfirmed: if that log is gone, the server publishes nothing (409).
            headers = {EPOCH_HEADER: self.pending[-1][0]["epoch"]} if self.pending else {}
            try:
                r = await self.http.post(
                    self.gateway + "/api/v1/ingest/ticks", json={"source": "t", "ticks": ticks}, headers=headers
                )
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code == 202:
                break
            if r is not None and r.status_code == 409:
                self.refused_for_epoch += 1
                assert r.headers[EPOCH_HEADER] != headers[EPOCH_HEADER]
                with contextlib.suppress(Unavailable):
                    await self.sync()  # sends the lost ticks again first
                continue
            assert r is None or r.status_code in (502, 503, 504), r.text
            await asyncio.sleep(0.2)
            # Something failed: learn the epoch first, so what a new log lost goes out before these.
            with contextlib.suppress(Unavailable):
                await self.sync()
        body = r.json()
        assert body["accepted"] == len(ticks) and body["rejected"] == [], body
        receipt = body["receipt"]
        assert set(receipt["offsets"]) and all(isinstance(o, int) for o in receipt["offsets"].values())
        self.pending.append((receipt, ticks))
        for t in ticks:
            self.accepted[(t["symbol"], t["time_msc"])] = t

    async def sync(self) -> None:
        try:
            r = await self.http.get(self.gateway + "/api/v1/ingest/progress")
        except httpx.TransportError as exc:
            raise Unavailable() from exc
        if r.status_code != 200:
            assert r.status_code in (502, 503, 504), r.text
            raise Unavailable()
        progress = r.json()
        epoch, done = progress["epoch"], progress["done"]
        self.epochs.add(epoch)
        keep, lost = [], []
        for receipt, ticks in self.pending:
            if receipt["epoch"] != epoch:
                lost.extend(ticks)  # never to be confirmed: that log is gone
            elif not all(offset < done[p] for p, offset in receipt["offsets"].items()):
                keep.append((receipt, ticks))
        self.pending = keep
        if lost:
            self.resent += len(lost)
            lost.sort(key=lambda t: t["time_msc"])
            for i in range(0, len(lost), 100):
                await self.send(lost[i : i + 100])

    async def _sync_or_wait(self) -> None:
        with contextlib.suppress(Unavailable):
            await self.sync()
        await asyncio.sleep(0.2)

    def _oldest_pending(self) -> int:
        return min(t["time_msc"] for _, ticks in self.pending for t in ticks)


def market_tick(t: dict) -> MarketTick:
    bid, ask = Decimal(t["bid"]), Decimal(t["ask"])
    volume = Decimal(t["volume"])
    return MarketTick(
        event_id=tick_event_id(t["symbol"], t["time_msc"], bid, ask, None, volume, t["flags"]),
        ts_event=t["time_msc"] * 1_000_000,
        ts_init=0,
        symbol=t["symbol"],
        bid=bid,
        ask=ask,
        volume=volume,
        flags=t["flags"],
    )


def expected_m1(ticks: list[dict]) -> list[dict]:
    """The M1 bars the bar stage must have closed: computed in one batch from the ticks."""
    watermark_ns = (max(t["time_msc"] for t in ticks) - LATENESS_MS) * 1_000_000
    bars = bars_from_ticks([market_tick(t) for t in ticks], (Timeframe.M1,))
    return [
        {
            "ts_ms": b.ts_event // 1_000_000,
            "open": b.open,
            "high": b.high,
            "low": b.low,
            "close": b.close,
            "volume": b.volume,
        }
        for b in bars
        if b.ts_event + Timeframe.M1.nanos <= watermark_ns
    ]


async def stored_m1(http, mesh, symbol: str) -> list[dict]:
    r = await http.get(
        mesh.url("database-service") + "/api/v1/market/bars",
        params={"symbol": symbol, "timeframe": "M1", "start": "2026-01-01T00:00:00Z", "limit": 5000},
    )
    assert r.status_code == 200, r.text
    return [
        {
            "ts_ms": int(_parse_ts(b["ts"])),
            "open": Decimal(str(b["open"])),
            "high": Decimal(str(b["high"])),
            "low": Decimal(str(b["low"])),
            "close": Decimal(str(b["close"])),
            "volume": b["volume"],
        }
        for b in r.json()
    ]


def _parse_ts(text: str) -> int:

    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


async def stored_summary(http, mesh, symbol: str) -> dict | None:
    """database-service's stored ticks of a symbol (``FINAL``: one row per tick id): count and time range."""
    ticks = await stored_ticks(http, mesh.url("database-service"), symbol)
    if not ticks:
        return None
    times = [t["time_msc"] for t in ticks.values()]
    return {"ticks": len(times), "first_tick_ms": min(times), "last_tick_ms": max(times)}


async def assert_delivered_exactly(http, mesh, symbol: str, client: ProtocolClient) -> None:
    """Stored ticks are the accepted ticks, once each, and ``/symbols`` counts them once; stored M1
    bars are the bars computed from them.

    The symbol is the test's own and every tick of it went through ``client``, so the stored set is
    a subset of the accepted set: equal counts (of distinct ticks, ``FINAL``) and ends make them equal.
    """
    accepted = sorted(client.accepted.values(), key=lambda t: t["time_msc"])
    want = {"ticks": len(accepted), "first_tick_ms": accepted[0]["time_msc"], "last_tick_ms": accepted[-1]["time_msc"]}

    async def ticks_stored():
        got = await stored_summary(http, mesh, symbol)
        return got is not None and {k: got[k] for k in want} == want

    await eventually(ticks_stored, timeout_s=30)
    # /symbols counts from a summary kept on insert: a tick stored again (replayed after a
    # crash, re-sent after a broker restart) must not have been counted again.
    listed = (await http.get(mesh.url("database-service") + "/api/v1/market/symbols")).json()
    assert [{k: s[k] for k in want} for s in listed if s["symbol"] == symbol] == [want]
    expected = expected_m1(accepted)
    assert len(expected) >= 10

    async def bars_stored():
        got = await stored_m1(http, mesh, symbol)
        return got if len(got) >= len(expected) else None

    got = await eventually(bars_stored, timeout_s=30)
    assert got == expected


def kill_broker(mesh: Mesh) -> None:
    """kill -9 the embedded broker of ``mesh`` (the one listening on its Kafka port)."""
    needle = f"tcp://127.0.0.1:{mesh.settings.port_of('kafka')}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes()
            if needle in cmdline and b"broker" in cmdline:
                os.kill(int(proc.name), signal.SIGKILL)
                return
    raise AssertionError("the embedded broker is not running")


def kill_service(mesh: Mesh, name: str) -> None:
    pid = json.loads((mesh.var / "supervisor.json").read_text())["services"][name]["pid"]
    os.kill(pid, signal.SIGKILL)


async def test_a_second_run_builds_bars_at_once_from_where_the_first_stopped(own_mesh, http):
    ticks = synthetic_ticks("TSTRERUN", BASE_MS, 1200, step_ms=STEP_MS, seed=31)
    first, second = ticks[:800], ticks[800:]  # the second run sends fewer ticks than the first one's offsets
    client = ProtocolClient(http, own_mesh.url("api-gateway"))
    await client.stream(first)  # until confirmed: stored, and in a bar checkpoint
    await asyncio.to_thread(own_mesh.restart)  # as `make run` twice: a new broker, var/ (PostgreSQL) kept
    # At once: confirmed only once built into a checkpoint of the new log (a skipped tick never is).
    await asyncio.wait_for(client.stream(second), 60)
    assert len(client.epochs) == 2  # two runs, two logs
    await assert_delivered_exactly(http, own_mesh, "TSTRERUN", client)


async def test_a_broker_killed_mid_stream_loses_and_doubles_nothing(own_mesh, http):
    ticks = synthetic_ticks("TSTBROKER", BASE_MS, 1200, step_ms=STEP_MS, seed=37)
    client = ProtocolClient(http, own_mesh.url("api-gateway"))
    streaming = asyncio.create_task(client.stream(ticks))
    await eventually(lambda: _at_least(client, 500), timeout_s=60, interval_s=0.05)
    kill_broker(own_mesh)  # the supervisor starts a new one: an empty log, a new epoch
    await asyncio.wait_for(streaming, 120)
    assert len(client.epochs) >= 2 and client.resent > 0  # the restart lost unconfirmed ticks; they went again
    await assert_delivered_exactly(http, own_mesh, "TSTBROKER", client)


async def test_data_bridge_and_database_service_killed_mid_stream_lose_and_double_nothing(own_mesh, http):
    ticks = synthetic_ticks("TSTSERVICES", BASE_MS, 1200, step_ms=STEP_MS, seed=41)
    client = ProtocolClient(http, own_mesh.url("api-gateway"))
    streaming = asyncio.create_task(client.stream(ticks))
    await eventually(lambda: _at_least(client, 500), timeout_s=60, interval_s=0.05)
    kill_service(own_mesh, "data-bridge")
    kill_service(own_mesh, "database-service")  # both restarted by the supervisor
    await asyncio.wait_for(streaming, 120)
    assert len(client.epochs) == 1  # the broker lived: nothing had to be sent again for a lost log
    await assert_delivered_exactly(http, own_mesh, "TSTSERVICES", client)


async def test_ticks_sent_again_after_database_service_restarted_are_counted_once(own_mesh, http):
    """A client may send again what the store holds (a request whose answer it lost). With
    database-service restarted in between, its memory of recent ids cannot drop them: the store must,
    or ``/symbols`` counts them twice."""
    ticks = synthetic_ticks("TSTAGAIN", BASE_MS, 1200, step_ms=STEP_MS, seed=43)
    client = ProtocolClient(http, own_mesh.url("api-gateway"))
    await client.stream(ticks)  # until confirmed: stored
    kill_service(own_mesh, "database-service")  # restarted by the supervisor, remembering nothing
    again = ProtocolClient(http, own_mesh.url("api-gateway"))
    await asyncio.wait_for(again.stream(ticks[:600]), 120)  # confirmed once database-service handled them
    await assert_delivered_exactly(http, own_mesh, "TSTAGAIN", client)


async def _at_least(client: ProtocolClient, count: int) -> bool:
    return len(client.accepted) >= count


async def test_the_gateway_routes_and_documents_the_protocol(own_mesh, http):
    gateway = own_mesh.url("api-gateway")
    schema = (await http.get(gateway + "/openapi.json")).json()
    assert "get" in schema["paths"]["/api/v1/ingest/progress"]
    results = [s for s in schema["components"]["schemas"].values() if "accepted" in s.get("properties", {})]
    assert [set(s["properties"]) for s in results] == [{"accepted", "rejected", "receipt"}]
    async with httpx.AsyncClient() as anonymous:  # a market:write token is required
        assert (await anonymous.get(gateway + "/api/v1/ingest/progress")).status_code == 401
    body = (await http.get(gateway + "/api/v1/ingest/progress")).json()
    assert set(body) == {"epoch", "done"} and set(body["done"]) == {str(p) for p in range(6)}
