"""The collector buffers on disk while the server is unreachable, then delivers everything, in order.

"Delivered" is "confirmed": the server said (``/api/v1/ingest/progress``) that every tick
was stored and is in a durable bar checkpoint, or, from a server without the delivery
protocol, answered 202. Nothing may be quarantined or held back on the way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaConsumer

from bench.synthetic import synthetic_ticks
from shared import topics
from shared.events import MarketTick, decode_event
from tests.faults.proxy import TcpProxy
from tests.support import eventually

pytestmark = pytest.mark.slow

#: Its own ports, beside the mesh's collector: the session's offset plus this (the offsets of
#: parallel test sessions are multiples of 1000).
EXTRA_OFFSET = 500
TICKS = 3000


async def test_collector_buffers_through_an_outage_and_loses_nothing(mesh, market_token, tmp_path):
    collector_offset = mesh.settings.hats_port_offset + EXTRA_OFFSET
    proxy_port = 9555 + collector_offset
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    # The client tier's own client (market:write only), as the first `hats up` created it.
    collector_client = json.loads((mesh.var / "credentials.json").read_text())["data-collector"]
    env = {
        **mesh.env,
        "HATS_PORT_OFFSET": str(collector_offset),
        "HATS_VAR_DIR": str(tmp_path),
        "DATA_COLLECTOR_CLIENT_ID": collector_client["client_id"],
        "DATA_COLLECTOR_CLIENT_SECRET": collector_client["client_secret"],
        # The whole network path to the server, token endpoint included, goes through the proxy.
        "DATA_COLLECTOR_SERVER_URL": f"http://127.0.0.1:{proxy_port}",  # nothing listens there yet
        "DATA_COLLECTOR_CONNECTOR_URL": "http://127.0.0.1:9",  # no terminal: the file source only
        "DATA_COLLECTOR_INBOX_DIR": str(inbox),
        "DATA_COLLECTOR_BATCH_SIZE": "700",
    }
    log = (tmp_path / "collector.log").open("ab")
    collector = subprocess.Popen(  # noqa: ASYNC220 - started once; the test then waits on HTTP
        [sys.executable, "-m", "infra.cli", "serve", "data-collector"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    status_url = f"http://127.0.0.1:{9002 + collector_offset}/api/v1/collector/status"
    try:
        async with httpx.AsyncClient(timeout=5, headers={"Authorization": f"Bearer {market_token}"}) as http:

            async def status():
                try:
                    return (await http.get(status_url)).json()
                except httpx.HTTPError:
                    return None

            await eventually(status, timeout_s=60)
            ticks = synthetic_ticks("TSTBUF", 1_767_225_600_000, TICKS, seed=21)
            pq.write_table(pa.Table.from_pylist(ticks), inbox / "TSTBUF_export.parquet")

            async def buffered_while_down():
                s = await status()
                return s if s and s["buffered"] == TICKS and not s["server_reachable"] else None

            await eventually(buffered_while_down, timeout_s=30)

            # The server comes back: everything is delivered, nothing twice.
            async with TcpProxy(mesh.settings.port_of("api-gateway"), port=proxy_port):

                async def drained():
                    s = await status()
                    return s if s and s["buffered"] == 0 and s["delivered"] == TICKS else None

                drained_status = await eventually(drained, timeout_s=60)
                assert drained_status["quarantined"] == 0 and drained_status["refused_for_now"] == 0

            async def stored():
                symbols = (await http.get(mesh.url("database-service") + "/api/v1/market/symbols")).json()
                return next((s["ticks"] for s in symbols if s["symbol"] == "TSTBUF"), 0) == TICKS

            await eventually(stored, timeout_s=30)
    finally:
        collector.terminate()
        collector.wait(15)

    # In order: the ticks reached the bus in the order they were produced.
    consumer = AIOKafkaConsumer(
        topics.MARKET_TICKS, bootstrap_servers=mesh.settings.kafka_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    times: list[int] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch:
                break
            for records in batch.values():
                for record in records:
                    if record.key == b"TSTBUF":
                        times.append(decode_event(MarketTick, record.value).ts_event // 1_000_000)
    finally:
        await consumer.stop()
    assert times == [t["time_msc"] for t in ticks]
    assert collector.returncode == 0 or collector.returncode == -15, os.strerror(0)
