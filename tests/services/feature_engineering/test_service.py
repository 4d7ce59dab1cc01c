"""feature-engineering running for real: its own embedded broker (so a mesh started by other tests,
whose feature-engineering shares the consumer group, cannot take its partitions), its own database
on the session's PostgreSQL, the app in-process. Bars in -> vectors out; duplicates skipped; a
malformed record dead-lettered; a restart keeps the warm-ups (state restored from PostgreSQL);
``POST /api/v1/features/compute`` against TA-Lib and each 422 naming its field."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
import talib
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from joserfc.jwk import OKPKey

from infra import kafka
from services.feature_engineering.service import SERVICE
from services.feature_engineering.settings import FeatureEngineeringSettings
from shared import topics
from shared.bus.broker import ensure_topics
from shared.bus.deadletter import CONSUMER_GROUP, REASON
from shared.events import FeatureVector, encode_event, feature_vector_id
from shared.features import FeatureSet
from shared.kit.service import Overrides
from shared.settings import PlatformSettings
from tests.intelligence_support import bearer, verifier_trusting
from tests.services.feature_engineering.support import M1, make_bars
from tests.support import own_database

SYMBOL = "FETEST"


@pytest.fixture(scope="module")
async def broker(infra_env, tmp_path_factory) -> AsyncIterator[str]:
    _, _, session = infra_env
    port = session.port_of("kafka") + 17
    process: subprocess.Popen = kafka.start_broker(port, tmp_path_factory.mktemp("fe-kafka") / "kafka.log")
    servers = f"127.0.0.1:{port}"
    await ensure_topics(servers)
    yield servers
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
async def database(infra_env) -> AsyncIterator[str]:
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], "fe") as url:
        yield url


@pytest.fixture(scope="module")
def signing_key() -> OKPKey:
    key = OKPKey.generate_key("Ed25519", private=True)
    key.ensure_kid()
    return key


@pytest.fixture(scope="module")
def platform(infra_env, broker, database, tmp_path_factory) -> PlatformSettings:
    _, _, session = infra_env
    return PlatformSettings(
        hats_var_dir=tmp_path_factory.mktemp("fe-var"),
        hats_port_offset=session.hats_port_offset,
        kafka_bootstrap_servers=broker,
        database_url=database,
    )


@contextlib.asynccontextmanager
async def running(platform: PlatformSettings, key: OKPKey) -> AsyncIterator[httpx.AsyncClient]:
    verifier = verifier_trusting(key, platform)
    # No warm-up from storage here (no database-service in this test; test_pipeline covers it).
    app = SERVICE.create_app(
        platform=platform,
        settings=FeatureEngineeringSettings(warmup_bars=0),
        overrides=Overrides(token_verifier=verifier),
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://feature-engineering") as http:
            yield http


class Feed:
    """Records of one topic for one key, from the start of the log."""

    def __init__(self, servers: str, topic: str) -> None:
        self.records: list = []
        self._consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest")
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Feed:
        await self._consumer.start()
        self._task = asyncio.create_task(self._follow())
        return self

    async def _follow(self) -> None:
        async for record in self._consumer:
            self.records.append(record)

    async def __aexit__(self, *exc) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._consumer.stop()

    async def until(self, predicate, timeout_s: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not predicate(self.records):
            assert asyncio.get_running_loop().time() < deadline, f"timed out with {len(self.records)} records"
            await asyncio.sleep(0.05)


async def send(servers: str, payloads: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        for payload in payloads:
            await producer.send_and_wait(topics.MARKET_BARS, payload, key=SYMBOL.encode())
    finally:
        await producer.stop()


async def test_bars_in_vectors_out_duplicates_skipped_restart_keeps_the_warm_ups(platform, signing_key) -> None:
    bars = make_bars(SYMBOL, 90)
    state = FeatureSet.core().new_state()
    expected = [state.update(b) for b in bars]
    servers = platform.kafka_servers

    def vectors(records) -> list[FeatureVector]:
        return [FeatureVector.model_validate_json(r.value) for r in records]

    async with Feed(servers, topics.FEATURES) as out, Feed(servers, topics.DEAD_LETTERS) as dead:
        async with running(platform, signing_key) as http:
            await send(servers, [encode_event(b) for b in bars[:50]])
            await out.until(lambda r: len(r) >= 50)
            # Redeliveries and an older bar, a malformed record, then the next bar.
            await send(servers, [encode_event(b) for b in bars[40:50]] + [b"{not a bar", encode_event(bars[50])])
            await out.until(lambda r: len(r) >= 51)
            await dead.until(lambda r: len(r) >= 1)
            metrics = (await http.get("/metrics")).text
            assert "feature_bars_skipped_total 10.0" in metrics
            assert "feature_vectors_published_total 51.0" in metrics
        assert dead.records[0].value == b"{not a bar"
        headers = dict(dead.records[0].headers)
        assert headers[REASON] == b"malformed" and headers[CONSUMER_GROUP] == b"feature-engineering"

        async with running(platform, signing_key):  # a restart: the states come from PostgreSQL
            await send(servers, [encode_event(b) for b in bars[45:]])  # the log replayed in part, then new bars
            await out.until(lambda r: len(r) >= 90)
            await asyncio.sleep(0.5)  # nothing more may come

    got = vectors(out.records)
    assert len(got) == 90, "a redelivered or older bar produced a vector"
    assert [v.event_id for v in got] == [feature_vector_id(SYMBOL, M1, b.ts_event, "core-1") for b in bars]
    assert [v.bar_event_id for v in got] == [b.event_id for b in bars]
    assert [v.features for v in got] == expected  # after the restart too: the warm-ups were kept
    assert all(v is not None for v in got[60].features.values())


@pytest.fixture(scope="module")
async def compute_http(platform, signing_key) -> AsyncIterator[httpx.AsyncClient]:
    """One running app for the endpoint tests (started after the bus test, which restarts its own)."""
    async with running(platform, signing_key) as http:
        yield http


def columns(n: int = 300, seed: int = 5) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    high = close + np.abs(rng.normal(0, 0.5, n))
    low = close - np.abs(rng.normal(0, 0.5, n))
    return {
        "open": close.tolist(),
        "high": high.tolist(),
        "low": low.tolist(),
        "close": close.tolist(),
        "volume": rng.integers(1, 1000, n).astype(float).tolist(),
    }


async def test_compute_matches_talib(platform, signing_key, compute_http) -> None:
    body: dict[str, Any] = dict(columns())
    body["indicators"] = [
        {"name": "RSI", "params": {"timeperiod": 14}},
        {"name": "MACD", "params": {"fastperiod": 12, "slowperiod": 26, "signalperiod": 9}},
        {"name": "BBANDS"},
        {"name": "STOCH", "params": {"slowk_matype": 1}},
        {"name": "MFI"},
    ]
    arrays = {k: np.array(v) for k, v in body.items() if k != "indicators"}
    http = compute_http
    r = await http.post("/api/v1/features/compute", json=body, headers=bearer(signing_key, platform))
    assert r.status_code == 200, r.text
    unauthorised = await http.post("/api/v1/features/compute", json=body)
    assert unauthorised.status_code == 401
    wrong_scope = await http.post(
        "/api/v1/features/compute", json=body, headers=bearer(signing_key, platform, ("trade",))
    )
    assert wrong_scope.status_code == 403
    answers = r.json()["indicators"]
    assert [a["name"] for a in answers] == ["RSI", "MACD", "BBANDS", "STOCH", "MFI"]
    assert answers[2]["params"] == {"timeperiod": 20, "nbdevup": 2.0, "nbdevdn": 2.0, "matype": 0}
    c, h, low, v = arrays["close"], arrays["high"], arrays["low"], arrays["volume"]
    references = [
        {"real": talib.RSI(c, 14)},
        dict(zip(("macd", "macdsignal", "macdhist"), talib.MACD(c, 12, 26, 9), strict=True)),
        dict(zip(("upperband", "middleband", "lowerband"), talib.BBANDS(c), strict=True)),
        dict(zip(("slowk", "slowd"), talib.STOCH(h, low, c, slowk_matype=talib.MA_Type.EMA), strict=True)),
        {"real": talib.MFI(h, low, c, v)},
    ]
    for answer, reference in zip(answers, references, strict=True):
        assert list(answer["outputs"]) == list(reference)
        for name, expected in reference.items():
            got = answer["outputs"][name]
            assert len(got) == len(expected) == 300
            for a, b in zip(got, expected, strict=True):
                assert (a is None) if math.isnan(b) else math.isclose(a, b, rel_tol=1e-9), (name, a, b)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b["volume"].pop(), "volume"),
        (lambda b: b["close"].__setitem__(3, float("nan")), "close.3"),
        (lambda b: b["high"].__setitem__(7, float("inf")), "high.7"),
        (lambda b: b["high"].__setitem__(9, b["low"][9] - 1), "high[9]"),
        (lambda b: b["indicators"].append({"name": "FOO"}), "indicators[1].name"),
        (lambda b: b["indicators"].append({"name": "RSI", "params": {"period": 3}}), "indicators[1].params.period"),
        (lambda b: b["indicators"].append({"name": "SMA", "params": {"timeperiod": 31}}), "indicators[1].params.timeperiod"),  # noqa: E501
        (lambda b: b["indicators"].append({"name": "BBANDS", "params": {"matype": 5}}), "indicators[1].params.matype"),
        (lambda b: [b[k].clear() for k in ("open", "high", "low", "close", "volume")], "open"),
        (lambda b: [b[k].extend(b[k] * 3334) for k in ("open", "high", "low", "close", "volume")], "open"),
    ],
    ids=["unequal", "nan", "inf", "high<low", "unknown-indicator", "unknown-param", "period>rows", "matype",
         "empty", "too-many-rows"],
)  # fmt: skip
async def test_compute_refuses_bad_input_naming_the_field(platform, signing_key, compute_http, change, field) -> None:
    body: dict[str, Any] = dict(columns(30))
    body["indicators"] = [{"name": "RSI"}]
    change(body)
    r = await compute_http.post(
        "/api/v1/features/compute",
        content=json.dumps(body),  # NaN and Infinity as Python writes them
        headers={**bearer(signing_key, platform), "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"].split(":")[0].removeprefix("body.") == field, r.json()
