"""The market-data path end to end on real embedded infrastructure: ingest, bars, storage, DLQ, redelivery."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

import pandas as pd
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.synthetic import synthetic_ticks
from shared import topics
from shared.bus import deadletter
from shared.events import MarketTick, Timeframe, encode_event, tick_event_id
from tests.support import eventually

#: Every consumer of market.ticks.v1 in the mesh, by the group its dead letters name.
TICK_READERS = {"database-service.ticks", "data-bridge.bars", "trading-engine.ticks", "performance-analytics.marks"}

pytestmark = pytest.mark.slow

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


async def ingest(http, mesh, ticks, source="test"):
    for i in range(0, len(ticks), 2000):
        r = await http.post(
            mesh.url("data-bridge") + "/api/v1/ingest/ticks", json={"source": source, "ticks": ticks[i : i + 2000]}
        )
        assert r.status_code == 202, r.text
    return r


async def stored_ticks(http, mesh, symbol) -> int:
    symbols = (await http.get(mesh.url("database-service") + "/api/v1/market/symbols")).json()
    return next((s["ticks"] for s in symbols if s["symbol"] == symbol), 0)


async def bars(http, mesh, symbol, timeframe, **params):
    r = await http.get(
        mesh.url("database-service") + "/api/v1/market/bars",
        params={"symbol": symbol, "timeframe": timeframe, "limit": 5000, **params},
    )
    assert r.status_code == 200, r.text
    return r.json()


def reference_bars(ticks: list[dict], timeframe: Timeframe, watermark_ms: int) -> list[dict]:
    """Bars computed directly from the ticks with pandas, independent of the platform's builder."""
    frame = pd.DataFrame({"t": [t["time_msc"] for t in ticks], "bid": [float(t["bid"]) for t in ticks]})
    frame["open_ms"] = frame.t - frame.t % (timeframe.seconds * 1000)
    frame = frame[frame.open_ms + timeframe.seconds * 1000 <= watermark_ms]  # only bars that are final
    grouped = frame.sort_values("t").groupby("open_ms").bid.agg(["first", "max", "min", "last", "count"])
    return [
        {
            "ts": pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ"),
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": int(n),
        }
        for ms, (o, h, lo, c, n) in grouped.iterrows()
    ]


async def test_stored_bars_equal_bars_computed_directly_from_the_ticks(mesh, http):
    ticks = synthetic_ticks("TSTBARS", BASE_MS, 6000, step_ms=1500, seed=11)
    await ingest(http, mesh, ticks)
    watermark = ticks[-1]["time_msc"] - 2000  # the bridge's default allowed lateness
    for timeframe in Timeframe:
        expected = reference_bars(ticks, timeframe, watermark)
        assert expected, timeframe

        async def complete(timeframe=timeframe, expected=expected):
            got = await bars(http, mesh, "TSTBARS", timeframe.value, start="2026-01-01T00:00:00Z")
            return got if len(got) >= len(expected) else None

        got = await eventually(complete, timeout_s=60)
        assert [{k: b[k] for k in ("ts", "open", "high", "low", "close", "volume")} for b in got] == expected
    # Ticks are stored by their own consumer group, which may trail the bar stage.
    assert await eventually(lambda: _equals(stored_ticks(http, mesh, "TSTBARS"), len(ticks)))
    # The latest bars: with an explicit end the FastAPI route answers; without, the fast path does.
    for timeframe in ("M1", "H1"):
        for limit in (1, 100, 5000):
            routed = await bars(http, mesh, "TSTBARS", timeframe, limit=limit, end="2100-01-01T00:00:00Z")
            assert await bars(http, mesh, "TSTBARS", timeframe, limit=limit) == routed and routed


async def test_bad_ticks_are_rejected_with_a_reason_and_the_rest_accepted(mesh, http):
    good = synthetic_ticks("TSTVALID", BASE_MS, 3, seed=3)
    crossed = {**good[0], "time_msc": good[0]["time_msc"] + 1, "ask": "1.0", "bid": "1.2"}
    malformed = {"symbol": "TSTVALID", "time_msc": "yesterday", "bid": "1.1", "ask": "1.2"}
    future = {**good[1], "time_msc": 4_102_444_800_000}
    r = await http.post(
        mesh.url("data-bridge") + "/api/v1/ingest/ticks",
        json={"source": "test", "ticks": [*good, crossed, malformed, future]},
    )
    assert r.status_code == 202
    body = r.json()
    assert body["accepted"] == 3
    assert [(x["index"], x["reason"]) for x in body["rejected"]] == [
        (3, "crossed_quote"),
        (4, "malformed"),
        (5, "timestamp_in_future"),
    ]
    bad_body = await http.post(mesh.url("data-bridge") + "/api/v1/ingest/ticks", content=b"{not json")
    assert bad_body.status_code == 422
    assert bad_body.headers["content-type"] == "application/problem+json"
    metrics = (await http.get(mesh.url("data-bridge") + "/metrics")).text
    assert 'ticks_rejected_total{reason="crossed_quote"}' in metrics


async def test_malformed_event_goes_to_the_dead_letter_topic_and_consumers_carry_on(mesh, http):
    servers = mesh.settings.kafka_servers
    marker = f"garbage-{uuid.uuid4()}".encode()
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        await producer.send_and_wait(topics.MARKET_TICKS, marker, key=b"TSTDLQ")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topics.DEAD_LETTERS, bootstrap_servers=servers, auto_offset_reset="earliest")
    await consumer.start()
    try:
        found: dict[str, dict] = {}

        async def dead_lettered():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if record.value == marker:
                        headers = {k: v.decode() for k, v in record.headers}
                        found[headers[deadletter.CONSUMER_GROUP]] = headers
            return len(found) >= len(TICK_READERS)

        await eventually(dead_lettered, timeout_s=30)
    finally:
        await consumer.stop()
    assert set(found) == TICK_READERS
    for headers in found.values():
        assert headers[deadletter.REASON] == "malformed"
        assert headers[deadletter.ORIGINAL_TOPIC] == topics.MARKET_TICKS
        assert "MarketTick" in headers[deadletter.ERROR]
    # Both consumers are still running: a good tick after the bad one is stored.
    await ingest(http, mesh, synthetic_ticks("TSTDLQ", BASE_MS, 5, seed=5))
    assert await eventually(lambda: _equals(stored_ticks(http, mesh, "TSTDLQ"), 5))


async def _equals(awaitable, value):
    return (await awaitable) == value


async def test_redelivered_events_have_no_second_effect(mesh, http):
    ticks = synthetic_ticks("TSTDUP", BASE_MS, 500, seed=9)
    events = []
    for t in ticks:
        bid, ask = Decimal(t["bid"]), Decimal(t["ask"])
        events.append(
            MarketTick(
                event_id=tick_event_id("TSTDUP", t["time_msc"], bid, ask, None, Decimal(0), 6),
                ts_event=t["time_msc"] * 1_000_000,
                ts_init=1,
                symbol="TSTDUP",
                bid=bid,
                ask=ask,
                flags=6,
                source="test",
            )
        )
    producer = AIOKafkaProducer(bootstrap_servers=mesh.settings.kafka_servers)
    await producer.start()
    try:
        for _ in range(3):  # the same events, delivered three times (as a crashed producer might)
            await asyncio.gather(
                *[await producer.send(topics.MARKET_TICKS, encode_event(e), key=b"TSTDUP") for e in events]
            )
    finally:
        await producer.stop()
    # And once more through the HTTP edge, as a collector retrying after a timeout would.
    await ingest(http, mesh, ticks)
    assert await eventually(lambda: _equals(stored_ticks(http, mesh, "TSTDUP"), len(ticks)))
    # Exactly the reference bars: a tick counted twice or dropped changes one.
    expected = reference_bars(ticks, Timeframe.M1, ticks[-1]["time_msc"] - 2000)
    assert expected

    async def complete():
        got = await bars(http, mesh, "TSTDUP", "M1", start="2026-01-01T00:00:00Z")
        return got if len(got) >= len(expected) else None

    m1 = await eventually(complete)
    assert [{k: b[k] for k in ("ts", "open", "high", "low", "close", "volume")} for b in m1] == expected
    assert await stored_ticks(http, mesh, "TSTDUP") == len(ticks)  # and nothing arrived late a second time


async def test_a_restart_of_the_mesh_keeps_stored_data(mesh, http):
    ticks = synthetic_ticks("TSTKEEP", BASE_MS, 800, seed=13)
    await ingest(http, mesh, ticks)
    assert await eventually(lambda: _equals(stored_ticks(http, mesh, "TSTKEEP"), len(ticks)))
    before = await eventually(lambda: bars(http, mesh, "TSTKEEP", "M1", start="2026-01-01T00:00:00Z"))
    await asyncio.to_thread(mesh.restart)
    assert await stored_ticks(http, mesh, "TSTKEEP") == len(ticks)
    assert await bars(http, mesh, "TSTKEEP", "M1", start="2026-01-01T00:00:00Z") == before
    latest = await bars(http, mesh, "TSTKEEP", "M1", limit=10)  # served by the cache after the restart
    assert latest == before[-10:]


def _spans_of(mesh, service: str, trace_id: str) -> list[dict]:
    """The spans of one trace in a service's export, including batch spans that link to it."""
    path = mesh.var / "traces" / f"{service}.jsonl"
    if not path.exists():
        return []
    spans = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [s for s in spans if s["trace_id"] == trace_id or any(k["trace_id"] == trace_id for k in s["links"])]


async def test_one_trace_follows_a_tick_across_http_and_kafka(mesh, http):
    trace_id = uuid.uuid4().hex
    ticks = synthetic_ticks("TSTTRACE", BASE_MS, 5, seed=21)
    r = await http.post(
        mesh.url("data-bridge") + "/api/v1/ingest/ticks",
        json={"source": "test", "ticks": ticks},
        headers={"traceparent": f"00-{trace_id}-{'ab' * 8}-01"},
    )
    assert r.status_code == 202, r.text

    async def both_sides():  # spans are exported in batches, every few seconds
        bridge, store = _spans_of(mesh, "data-bridge", trace_id), _spans_of(mesh, "database-service", trace_id)
        return (bridge, store) if bridge and store else None

    bridge, store = await eventually(both_sides, timeout_s=40)
    server = [s for s in bridge if s["kind"] == "SERVER"]
    assert [s["attributes"].get("http.route") for s in server] == ["/api/v1/ingest/ticks"]
    assert server[0]["parent_span_id"] == "ab" * 8  # continued the caller's trace
    published = {s["span_id"] for s in bridge if s["kind"] == "PRODUCER"}
    assert published
    # The storing consumer, in another process, takes ticks in batches: its span links to the publish.
    linked = {k["span_id"] for s in store if s["kind"] == "CONSUMER" for k in s["links"]}
    assert linked & published
