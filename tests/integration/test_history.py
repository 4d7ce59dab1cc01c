"""History end to end on the session mesh (real broker, PostgreSQL, ClickHouse, gateway):

* a backfill job of the data-collector pages the connector's ``/rates/range`` (the simulated
  terminal, its clock fixed on a Wednesday of 2024) and sends the bars through the gateway and
  data-bridge to database-service; they are readable at ``GET /api/v1/market/bars``; the same
  backfill again inserts nothing; a live bar of a backfilled minute is kept, before and after;
* ``hats import-bars`` on MT5 bar exports (tab with header, comma without), twice, and with bad rows;
* every rule of ``POST /api/v1/ingest/bars``, each 422 naming the row and the field.

The connector and the collector run in process (their kit lifespans, as ``hats serve`` runs
them), the connector served on a real port; the mesh's own client tier streams live ticks
of today meanwhile, which touch none of the 2024 ranges used here.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from client.data_collector.service import SERVICE as COLLECTOR
from client.data_collector.settings import CollectorSettings
from client.metatrader_connector.service import SERVICE as CONNECTOR
from client.metatrader_connector.settings import ConnectorSettings
from client.metatrader_connector.terminal import SimulatedTerminal
from client.metatrader_connector.terminal import constants as c
from shared.events import MarketBar, Timeframe, bar_event_id, encode_event, now_ns
from shared.kit.service import Overrides
from shared.settings import PlatformSettings
from tests.support import eventually, serve

pytestmark = pytest.mark.slow

NOW = datetime(2024, 3, 13, 15, 30, 12, tzinfo=UTC).timestamp()  # the terminal's "now": a Wednesday


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.asynccontextmanager
async def client_tier(mesh: Any, var: Path, clock: Any = lambda: NOW) -> AsyncIterator[httpx.AsyncClient]:
    """The connector (simulated terminal at ``NOW``) on a real port, and a collector using it and
    the mesh's gateway with the client the first ``hats up`` registered; yields the collector's API."""
    platform = PlatformSettings(hats_var_dir=var)
    connector = CONNECTOR.create_app(
        platform=platform, settings=ConnectorSettings(mode="simulated"), overrides=Overrides(wall_clock=clock)
    )
    credentials = json.loads((mesh.var / "credentials.json").read_text())["data-collector"]
    async with serve(connector) as connector_url:
        settings = CollectorSettings(
            server_url=mesh.url("api-gateway"),
            connector_url=connector_url,
            client_id=credentials["client_id"],
            client_secret=credentials["client_secret"],
            symbols=("GBPUSD",),  # nothing polled: no ticks of 2024 are streamed
            inbox_dir=var / "inbox",
            backfill_page_bars=500,
        )
        collector = COLLECTOR.create_app(platform=platform, settings=settings, overrides=Overrides(wall_clock=clock))
        transport = httpx.ASGITransport(app=collector)
        async with (
            collector.router.lifespan_context(collector),
            httpx.AsyncClient(transport=transport, base_url="http://collector", timeout=30) as client,
        ):
            yield client


async def run_backfill(collector: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    r = await collector.post("/api/v1/collector/backfill", json=body)
    assert r.status_code == 202, r.text
    job_url = r.headers["location"]

    async def ended() -> dict[str, Any] | None:
        job = (await collector.get(job_url)).json()
        return job if job["state"] in ("done", "failed") else None

    job = await eventually(ended, timeout_s=120)
    assert job["state"] == "done", job
    assert job["percent"] == 100.0
    return job


async def stored_bars(http: httpx.AsyncClient, gateway: str, symbol: str, timeframe: str, start: str, end: str):
    r = await http.get(
        gateway + "/api/v1/market/bars",
        params={"symbol": symbol, "timeframe": timeframe, "start": start, "end": end, "limit": 5000},
    )
    assert r.status_code == 200, r.text
    return r.json()


def terminal_bars(symbol: str, timeframe: int, start: int, end: int) -> list[dict[str, Any]]:
    """What the simulated terminal has, as the bars API renders bars (a reference apart from the chain)."""
    term = SimulatedTerminal(clock=lambda: NOW)
    assert term.initialize()
    digits = term.symbol_info(symbol).digits
    rates = term.copy_rates_range(
        symbol, timeframe, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    )
    return [
        {
            "ts": iso(int(r["time"])),
            "open": round(float(r["open"]), digits),
            "high": round(float(r["high"]), digits),
            "low": round(float(r["low"]), digits),
            "close": round(float(r["close"]), digits),
            "volume": int(r["tick_volume"]),
            "real_volume": float(r["real_volume"]),
        }
        for r in rates
    ]


async def publish_live_bar(
    mesh: Any, symbol: str, open_time: int, price: str, built_ns: int | None = None
) -> MarketBar:
    """A bar as data-bridge's bar stage publishes it (on market.bars.v1, stored by database-service)."""
    ns = open_time * 1_000_000_000
    bar = MarketBar(
        event_id=bar_event_id(symbol, Timeframe.M1, ns),
        ts_event=ns,
        ts_init=built_ns or now_ns(),
        symbol=symbol,
        timeframe=Timeframe.M1,
        open=Decimal(price),
        high=Decimal(price),
        low=Decimal(price),
        close=Decimal(price),
        volume=1,
    )
    producer = AIOKafkaProducer(bootstrap_servers=mesh.settings.kafka_servers)
    await producer.start()
    try:
        await producer.send_and_wait(MarketBar.TOPIC, encode_event(bar), key=symbol.encode())
    finally:
        await producer.stop()
    return bar


async def test_a_backfill_stores_the_terminals_bars_once_and_keeps_live_ones(mesh, http, tmp_path):
    gateway = mesh.url("api-gateway")
    start, end = ts("2024-03-12T00:00:00"), ts("2024-03-12T05:59:00")
    live_minute, later_live_minute = ts("2024-03-12T01:00:00"), ts("2024-03-12T02:00:00")
    # The series is read once first, so the bars cache holds it (all of it: it is short) before history
    # arrives: the imported bars must reach the cache too, not only ClickHouse.
    await stored_bars(http, gateway, "EURUSD", "M1", iso(start), iso(end))
    await publish_live_bar(mesh, "EURUSD", live_minute, "2.00000")

    async def live_stored():
        got = await stored_bars(http, gateway, "EURUSD", "M1", iso(live_minute), iso(live_minute))
        return got if got and got[0]["open"] == 2.0 else None

    await eventually(live_stored)
    expected = {
        tf: terminal_bars("EURUSD", code, start, end) for tf, code in (("M1", c.TIMEFRAME_M1), ("H1", c.TIMEFRAME_H1))
    }
    assert len(expected["M1"]) > 300 and len(expected["H1"]) == 6

    body = {"symbols": ["EURUSD"], "timeframes": ["M1", "H1"], "start": iso(start), "end": iso(end)}
    before_backfill = now_ns()
    async with client_tier(mesh, tmp_path) as collector:
        job = await run_backfill(collector, body)
        by_tf = {s["timeframe"]: s for s in job["series"]}
        assert by_tf["M1"]["fetched"] == len(expected["M1"]) and by_tf["H1"]["fetched"] == 6
        assert (by_tf["M1"]["inserted"], by_tf["M1"]["already_stored"]) == (len(expected["M1"]) - 1, 1)
        assert (by_tf["H1"]["inserted"], by_tf["H1"]["already_stored"]) == (6, 0)
        assert job["refused"] == 0

        for tf, bars in expected.items():
            got = await stored_bars(http, gateway, "EURUSD", tf, iso(start), iso(end))
            want = [b if b["ts"] != iso(live_minute) or tf != "M1" else got_live(got, live_minute) for b in bars]
            assert got == want, tf
        live = next(b for b in await stored_bars(http, gateway, "EURUSD", "M1", iso(start), iso(end))
                    if b["ts"] == iso(live_minute))  # fmt: skip
        assert live["open"] == 2.0 and live["volume"] == 1  # the live bar, not the terminal's

        again = await run_backfill(collector, body)
        assert again["inserted"] == 0
        assert again["already_stored"] == len(expected["M1"]) + 6

    # A live bar of a backfilled minute, stored after the history, replaces it (live bars win),
    # even one built before the history was stored (database-service's bar consumer lagging).
    await publish_live_bar(mesh, "EURUSD", later_live_minute, "3.00000", built_ns=before_backfill)

    async def replaced():
        got = await stored_bars(http, gateway, "EURUSD", "M1", iso(later_live_minute), iso(later_live_minute))
        return got if got and got[0]["open"] == 3.0 else None

    await eventually(replaced)
    stats = (await http.get(gateway + "/api/v1/market/symbols")).json()
    eurusd = next((s for s in stats if s["symbol"] == "EURUSD"), None)
    assert eurusd is None or "H1" in eurusd["timeframes"]


def got_live(got: list[dict[str, Any]], minute: int) -> dict[str, Any]:
    return next(b for b in got if b["ts"] == iso(minute))


async def test_rows_the_server_refuses_are_reported_and_the_rest_of_their_page_stored(mesh, http, tmp_path):
    """The terminal's clock runs an hour ahead of the server's: the bars it has of the server's
    future are refused by data-bridge (not closed yet, by its clock) row by row; the collector
    reports them and stores the rest of each page. BTCUSD trades every day, so the weekday does
    not matter; the mesh's own collector streams it live, so some minutes are stored already."""
    server_now = time.time()
    start = int(server_now) // 60 * 60 - 600
    end = start + 1800
    async with client_tier(mesh, tmp_path, clock=lambda: time.time() + 3600) as collector:
        body = {"symbols": ["BTCUSD"], "timeframes": ["M1"], "start": iso(start), "end": iso(end)}
        job = await run_backfill(collector, body)
    series = job["series"][0]
    assert series["fetched"] == 31  # every minute of the range: the terminal's clock is past all of it
    assert series["fetched"] == series["inserted"] + series["already_stored"] + len(series["refused"])
    refused = [row["time"] for row in series["refused"]]
    assert {row["field"] for row in series["refused"]} == {"time"}
    assert all("has not closed yet" in row["msg"] for row in series["refused"])
    # Refused: the bars opening after the server's now (give or take the seconds the job took).
    assert refused == list(range(refused[0], end + 1, 60)) and start + 600 < refused[0] <= start + 780
    got = await stored_bars(http, mesh.url("api-gateway"), "BTCUSD", "M1", iso(start), iso(end))
    assert [b["ts"] for b in got] == [iso(t) for t in range(start, refused[0], 60)]


async def test_a_backfill_request_is_checked(mesh, tmp_path):
    async with client_tier(mesh, tmp_path) as collector:
        for body, field in [
            ({"timeframes": ["M2"], "start": "2024-03-12T00:00:00Z"}, "timeframes"),
            ({"timeframes": [], "start": "2024-03-12T00:00:00Z"}, "timeframes"),
            ({"timeframes": ["M1"], "start": "2024-03-12T00:00:00Z", "end": "2024-03-11T00:00:00Z"}, "end"),
            ({"timeframes": ["M1"]}, "start"),
        ]:
            r = await collector.post("/api/v1/collector/backfill", json=body)
            assert r.status_code == 422, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert field in r.json()["detail"].split(":")[0]
        r = await collector.get(f"/api/v1/collector/backfill/{uuid.uuid4().hex}")
        assert r.status_code == 404


# -- hats import-bars -----------------------------------------------------------------------------

HEADER = "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"


def export_rows(start: int, count: int, step: int) -> list[list[str]]:
    rows = []
    for i in range(count):
        t = datetime.fromtimestamp(start + i * step, UTC)
        base = Decimal("1.10000") + Decimal(i) / 10_000
        rows.append([
            t.strftime("%Y.%m.%d"), t.strftime("%H:%M:%S"), f"{base:.5f}", f"{base + Decimal('0.0005'):.5f}",
            f"{base - Decimal('0.0003'):.5f}", f"{base + Decimal('0.0001'):.5f}", str(10 + i), "0", "7",
        ])  # fmt: skip
    return rows


def hats_import(infra_env, path: Path, symbol: str, timeframe: str) -> subprocess.CompletedProcess[str]:
    _, env, _ = infra_env
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", "import-bars", str(path), "--symbol", symbol, "--timeframe", timeframe],
        env={**env, "PYTHONPATH": os.getcwd()},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("form", ["tab-with-header", "comma-without-header"])
async def test_import_bars_stores_an_mt5_export_once(mesh, http, infra_env, tmp_path, form):
    symbol = "TSTCSVTAB" if form.startswith("tab") else "TSTCSVCOMMA"
    start = ts("2024-02-01T00:00:00")
    rows = export_rows(start, 120, 300)
    if form.startswith("tab"):
        text = "\n".join([HEADER, *("\t".join(r) for r in rows)]) + "\n"
    else:
        rows[5][1] = rows[5][1][:5]  # HH:MM, as some exports write it
        text = "\r\n".join(",".join(r) for r in rows) + "\r\n"
    path = tmp_path / f"{symbol}_M5.csv"
    path.write_text(text)

    first = hats_import(infra_env, path, symbol, "M5")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "120 bars inserted, 0 already stored, 0 rows refused" in first.stdout
    again = hats_import(infra_env, path, symbol, "M5")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 bars inserted, 120 already stored, 0 rows refused" in again.stdout

    got = await stored_bars(http, mesh.url("api-gateway"), symbol, "M5", iso(start), iso(start + 119 * 300))
    assert [(b["ts"], Decimal(str(b["open"])), Decimal(str(b["low"])), b["volume"]) for b in got] == [
        (iso(start + i * 300), Decimal(r[2]), Decimal(r[4]), int(r[6])) for i, r in enumerate(rows)
    ]


async def test_import_bars_names_every_bad_row_by_line_and_stores_the_rest(mesh, http, infra_env, tmp_path):
    symbol, start = "TSTCSVBAD", ts("2024-02-02T00:00:00")
    rows = export_rows(start, 10, 60)
    rows[1][3] = "1.00000"  # line 3: high below low
    rows[3][1] = "00:03:30"  # line 5: not aligned to M1
    rows[5][2] = "abc"  # line 7: not a number
    rows[6][2] = "1.100000001"  # line 8: 9 decimals
    rows[8] = rows[8][:5]  # line 10: too few fields
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([HEADER, *("\t".join(r) for r in rows)]) + "\n")
    done = hats_import(infra_env, path, symbol, "M1")
    assert done.returncode == 1, done.stdout + done.stderr
    refused = [
        line.split(": refused: ")[0].rsplit(":", 1)[1] for line in done.stdout.splitlines() if ": refused: " in line
    ]
    assert refused == ["3", "5", "7", "8", "10"], done.stdout
    assert "bad.csv:3: refused: high:" in done.stdout and "bad.csv:5: refused: time:" in done.stdout
    assert "5 bars inserted, 0 already stored, 5 rows refused" in done.stdout
    got = await stored_bars(http, mesh.url("api-gateway"), symbol, "M1", iso(start), iso(start + 600))
    assert [b["ts"] for b in got] == [iso(start + i * 60) for i in (0, 2, 4, 7, 9)]


# -- POST /api/v1/ingest/bars ---------------------------------------------------------------------


def bar(time: int, o="1.10000", h="1.10050", lo="1.09970", cl="1.10010", **extra) -> dict[str, Any]:
    return {"time": time, "open": o, "high": h, "low": lo, "close": cl, "tick_volume": 5, **extra}


T0 = 1_706_918_400  # 2024-02-03T00:00:00Z


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [
        (bar(T0 + 60, h="1.09000"), "high", "below low"),
        (bar(T0 + 60, o="1.20000"), "open", "outside"),
        (bar(T0 + 60, cl="1.00000"), "close", "outside"),
        (bar(T0 + 90), "time", "not a multiple"),
        (bar(4_102_444_800), "time", "not closed"),
        (bar(T0), "time", "repeats row 0"),
        (bar(T0 + 60, o="1.100000001"), "open", "decimal"),
        (bar(T0 + 60, lo="-1"), "low", "greater than 0"),
        (bar(T0 + 60, tick_volume=-1), "tick_volume", "greater than or equal"),
        (bar(T0 + 60, colour="red"), "colour", "Extra inputs"),
    ],
)
async def test_each_rule_of_the_bar_ingest_names_the_row_and_field(mesh, http, bad, field, words):
    symbol = f"TSTRULE{uuid.uuid4().hex[:8].upper()}"  # its own series: nothing another case stored
    body = {"symbol": symbol, "timeframe": "M1", "bars": [bar(T0), bad, bar(T0 + 120)]}
    r = await http.post(mesh.url("data-bridge") + "/api/v1/ingest/bars", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["detail"].startswith(f"bars[1].{field}:") or problem["detail"].startswith(f"body.bars.1.{field}:")
    assert words in problem["detail"]
    assert [e["loc"] for e in problem["errors"]] == [["body", "bars", 1, field]]
    # All or nothing: the good rows of a refused request are not stored.
    got = await stored_bars(http, mesh.url("database-service"), symbol, "M1", iso(T0), iso(T0 + 120))
    assert got == []


async def test_the_bar_ingest_refuses_oversized_batches_and_bad_envelopes(mesh, http):
    url = mesh.url("data-bridge") + "/api/v1/ingest/bars"
    big = {"symbol": "TSTBARRULES", "timeframe": "M1", "bars": [bar(T0 + 60 * i) for i in range(10_001)]}
    r = await http.post(url, json=big)
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    for envelope, field in [
        ({"symbol": "TSTBARRULES", "timeframe": "M2", "bars": []}, "timeframe"),
        ({"symbol": "bad symbol", "timeframe": "M1", "bars": []}, "symbol"),
        ({"timeframe": "M1", "bars": []}, "symbol"),
    ]:
        r = await http.post(url, json=envelope)
        assert r.status_code == 422, r.text
        assert r.json()["detail"].startswith(f"body.{field}:")
    r = await http.post(url, json={"symbol": "TSTBARONE", "timeframe": "M1", "bars": [bar(T0)]})
    assert r.status_code == 200 and r.json() == {"inserted": 1, "already_stored": 0}
    async with httpx.AsyncClient() as anonymous:
        r = await anonymous.post(url, json={"symbol": "TSTBARONE", "timeframe": "M1", "bars": []})
    assert r.status_code == 401
