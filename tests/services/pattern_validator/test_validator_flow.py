"""pattern-validator end to end on the real broker and PostgreSQL: signal in -> verdict out,
stored and listed; stale and drifted signals rejected (with a FeatureDrift event); duplicates;
a redelivered signal keeps its verdict; the endpoint's validation."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaConsumer

from services.pattern_validator.psi import TrainingDistribution
from services.pattern_validator.service import definition
from services.pattern_validator.settings import PatternValidatorSettings
from shared import topics
from shared.events import (
    Contribution,
    FeatureDrift,
    FeatureVector,
    MarketBar,
    RejectedSignal,
    Signal,
    Timeframe,
    ValidatedSignal,
    bar_event_id,
    feature_vector_id,
    now_ns,
    signal_id,
)
from shared.ml.drift import Distribution
from tests.intelligence_support import (
    Feed,
    Producer,
    bearer,
    new_key,
    platform_of,
    running,
    service_database,
    unique_symbol,
)
from tests.support import eventually

M1 = Timeframe.M1
MIN = M1.nanos
WED = 1_767_744_000_000_000_000  # Wednesday 2026-01-07 00:00 UTC
BARS = 40
NOW_S = (WED + BARS * MIN) / 1e9 + 1  # one second after the last bar closed
DRIFTY = uuid.uuid4()


class FakeDistributions:
    """``rsi_14`` of the model ``DRIFTY`` was trained around 50; the live vectors sit near 20."""

    async def of(self, model_id: uuid.UUID) -> TrainingDistribution | None:
        if model_id != DRIFTY:
            return None
        bins = Distribution(edges=[30.0, 70.0], proportions=[0.2, 0.6, 0.2])
        return TrainingDistribution(DRIFTY, "drifty", 3, {"rsi_14": bins})


def bar(symbol: str, i: int) -> MarketBar:
    t = WED + i * MIN
    price = Decimal("1.1000") + Decimal(i % 3) / 10_000
    return MarketBar(
        event_id=bar_event_id(symbol, M1, t), ts_event=t, ts_init=now_ns(), symbol=symbol, timeframe=M1,
        open=price, high=price + Decimal("0.0004"), low=price - Decimal("0.0003"), close=price + Decimal("0.0002"),
        volume=10,
    )  # fmt: skip


def vector(symbol: str, i: int) -> FeatureVector:
    t = WED + i * MIN
    return FeatureVector(
        event_id=feature_vector_id(symbol, M1, t, "core-1"), ts_event=t, ts_init=now_ns(), symbol=symbol,
        timeframe=M1, bar_event_id=bar_event_id(symbol, M1, t), feature_set="core-1",
        features={"rsi_14": 20.0 + i % 5, "adx_14": 22.0, "natr_14": 0.1, "close": 1.1, "ema_50": 1.0},
    )  # fmt: skip


def signal(
    symbol: str, i: int, *, model: uuid.UUID | None = None, tf: Timeframe = M1, action: str = "enter_long"
) -> Signal:
    t = WED + i * MIN
    model_id = model or uuid.uuid4()
    return Signal(
        event_id=signal_id(symbol, tf, t, "ensemble-1"), ts_event=t, ts_init=now_ns(), symbol=symbol, timeframe=tf,
        feature_vector_id=feature_vector_id(symbol, M1, t, "core-1"), direction="long", action=action, strength=0.5,
        confidence=0.61, strategy="ensemble-1",
        contributions=[
            Contribution(model_id=model_id, model_name="drifty" if model else "xgb", model_version=3,
                         model_kind="xgboost", score=0.5, weight=1.0)
        ],
    )  # fmt: skip


SETTINGS = PatternValidatorSettings(psi_min_bars=10, stale_bars=2, max_delay_s=60)


@pytest.fixture(scope="module")
def key():
    return new_key()


@pytest.fixture(scope="module")
async def platform(infra_env, tmp_path_factory):
    async with service_database(infra_env, definition(lambda rt: FakeDistributions())) as url:
        yield platform_of(infra_env, url, tmp_path_factory.mktemp("validator"))


@pytest.fixture(scope="module")
async def app(platform, key):
    service = definition(lambda rt: FakeDistributions())
    async with running(service, platform, SETTINGS, key, wall_clock=lambda: NOW_S) as (http, _):
        yield http


@pytest.fixture(scope="module")
async def producer(infra_env):
    async with Producer(infra_env[2].kafka_servers) as p:
        yield p


@pytest.fixture
async def feeds(infra_env):
    servers = infra_env[2].kafka_servers
    async with (
        Feed(ValidatedSignal, servers) as ok,
        Feed(RejectedSignal, servers) as no,
        Feed(FeatureDrift, servers) as d,
    ):
        yield ok, no, d


async def history(producer: Producer, symbol: str) -> None:
    for i in range(BARS):
        await producer.send(bar(symbol, i), vector(symbol, i))


async def listed(app, platform, key, symbol: str, **params) -> list[dict]:
    r = await app.get("/api/v1/signals", params={"symbol": symbol, **params}, headers=bearer(key, platform))
    assert r.status_code == 200, r.text
    return r.json()


async def test_signal_in_verdict_out_stored_and_listed_and_redelivery_keeps_it(app, producer, feeds, platform, key):
    validated, rejected, _ = feeds
    symbol = unique_symbol("OK")
    await history(producer, symbol)
    s = signal(symbol, BARS - 1)
    await producer.send(s)
    verdict = await validated.wait_for(lambda v: v.signal.event_id == s.event_id)
    assert verdict.signal == s
    assert all(note.code != "stale_data" for note in verdict.notes)
    [row] = await eventually(lambda: listed(app, platform, key, symbol))
    assert row["verdict"] == "validated" and row["signal_id"] == str(s.event_id)
    assert row["verdict_id"] == str(verdict.event_id)
    assert (row["direction"], row["action"], row["confidence"]) == ("long", "enter_long", 0.61)
    assert row["models"][0]["name"] == "xgb" and row["models"][0]["version"] == 3

    await producer.send(s)  # delivered again: the same verdict, published again under the same id

    async def published_twice() -> list[ValidatedSignal] | None:
        both = validated.where(lambda v: v.signal.event_id == s.event_id)
        return both if len(both) >= 2 else None

    first, again = (await eventually(published_twice))[:2]
    assert again.event_id == first.event_id == verdict.event_id
    assert len(await listed(app, platform, key, symbol)) == 1
    assert not rejected.where(lambda v: v.signal.event_id == s.event_id)  # never a duplicate of itself


async def test_stale_signal_is_rejected(app, producer, feeds):
    _, rejected, _ = feeds
    symbol = unique_symbol("ST")
    await history(producer, symbol)
    s = signal(symbol, BARS - 6)  # five bars behind the newest
    await producer.send(s)
    verdict = await rejected.wait_for(lambda v: v.signal.event_id == s.event_id)
    assert "stale_data" in {r.code for r in verdict.reasons}


async def test_a_second_signal_of_the_same_minute_is_a_duplicate(app, producer, feeds):
    validated, rejected, _ = feeds
    symbol = unique_symbol("DU")
    await history(producer, symbol)
    first = signal(symbol, BARS - 1)
    await producer.send(first)
    await validated.wait_for(lambda v: v.signal.event_id == first.event_id)
    other = signal(symbol, BARS - 1, tf=Timeframe.M5)  # another signal, same symbol, direction, strategy, minute
    await producer.send(other)
    verdict = await rejected.wait_for(lambda v: v.signal.event_id == other.event_id)
    assert [r.code for r in verdict.reasons if r.code == "duplicate"] == ["duplicate"]


async def test_drifted_inputs_reject_the_entry_and_raise_one_drift_event(app, producer, feeds, platform, key):
    _, rejected, drifts = feeds
    symbol = unique_symbol("DR")
    await history(producer, symbol)
    s = signal(symbol, BARS - 1, model=DRIFTY)
    await producer.send(s)
    verdict = await rejected.wait_for(lambda v: v.signal.event_id == s.event_id)
    [reason] = [r for r in verdict.reasons if r.code == "feature_drift"]
    assert "drifty@3" in reason.detail and "rsi_14" in reason.detail
    alert = await drifts.wait_for(lambda d: d.model_id == DRIFTY and d.symbol == symbol)
    assert alert.drifted == ["rsi_14"] and alert.psi["rsi_14"] > 0.25 and alert.threshold == 0.25
    [row] = await listed(app, platform, key, symbol)
    assert row["verdict"] == "rejected" and "feature_drift" in {r["code"] for r in row["reasons"]}


async def test_the_endpoint_validates_its_parameters(app, platform, key):
    headers = bearer(key, platform)
    for params, field in (({"symbol": "EURUSD", "limit": 0}, "limit"), ({"symbol": "EURUSD", "limit": 10_000}, "limit"),
                          ({"symbol": "not a symbol"}, "symbol"), ({}, "symbol")):  # fmt: skip
        r = await app.get("/api/v1/signals", params=params, headers=headers)
        assert r.status_code == 422, params
        assert r.headers["content-type"].startswith("application/problem+json") and field in r.text
    assert (await app.get("/api/v1/signals", params={"symbol": "EURUSD"})).status_code == 401
    assert (await app.get("/api/v1/signals/dedup", headers=headers)).json()["window_s"] == 300


async def test_an_undecodable_signal_is_dead_lettered_and_the_next_one_validated(app, producer, feeds, infra_env):
    validated, _, _ = feeds
    dlq = AIOKafkaConsumer(
        topics.DEAD_LETTERS, bootstrap_servers=infra_env[2].kafka_servers, auto_offset_reset="latest"
    )
    await dlq.start()
    try:
        while not dlq.assignment():
            await asyncio.sleep(0.05)
        for tp in dlq.assignment():
            await dlq.position(tp)
        symbol = unique_symbol("DL")
        await history(producer, symbol)
        await producer.send_raw(topics.SIGNALS, b'{"event_type": "signals.signal"}', key=symbol.encode())
        s = signal(symbol, BARS - 1)
        await producer.send(s)
        await validated.wait_for(lambda v: v.signal.event_id == s.event_id)
        letters = await dlq.getmany(timeout_ms=3000)
        groups = [dict(r.headers).get("x-consumer-group") for batch in letters.values() for r in batch]
        assert b"pattern-validator.signals" in groups
    finally:
        await dlq.stop()
