"""ai-orchestration end to end on the real broker and PostgreSQL, with a fake model catalog:
one signal per bar, the deadline, skipped members and why, lifecycle flags, idempotent
redelivery, dead letters, state across a restart, and the members endpoint."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaConsumer

from services.ai_orchestration.catalog import Champion
from services.ai_orchestration.service import definition
from services.ai_orchestration.settings import AiOrchestrationSettings
from shared import topics
from shared.events import (
    FeatureVector,
    ModelLifecycle,
    Prediction,
    PredictionRefused,
    Signal,
    Timeframe,
    bar_event_id,
    feature_vector_id,
    now_ns,
    prediction_id,
    signal_id,
)
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

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z, ns
M1 = Timeframe.M1


class FakeCatalog:
    def __init__(self) -> None:
        self.by_symbol: dict[str, list[Champion]] = {}

    async def champions(self, symbol: str, timeframe: Timeframe) -> Sequence[Champion]:
        return self.by_symbol.get(symbol, [])


def champion(name: str, flagged: bool = False) -> Champion:
    return Champion(uuid.uuid4(), name, 1, "xgboost", flagged=flagged, flag_reason="expired" if flagged else None)


def vector(symbol: str, i: int, rsi: float = 50.0, tf: Timeframe = M1) -> FeatureVector:
    t = T0 + i * tf.nanos
    return FeatureVector(
        event_id=feature_vector_id(symbol, tf, t, "core-1"),
        ts_event=t,
        ts_init=now_ns(),
        symbol=symbol,
        timeframe=tf,
        bar_event_id=bar_event_id(symbol, tf, t),
        feature_set="core-1",
        features={"rsi_14": rsi, "close": 1.1, "ema_50": 1.0},
    )


def prediction(v: FeatureVector, model: Champion, score: float) -> Prediction:
    return Prediction(
        event_id=prediction_id(model.model_id, v.event_id),
        ts_event=v.ts_event,
        ts_init=now_ns(),
        symbol=v.symbol,
        timeframe=v.timeframe,
        feature_vector_id=v.event_id,
        model_id=model.model_id,
        model_name=model.name,
        model_version=model.version,
        model_kind=model.kind,
        task="direction",
        horizon_bars=1,
        score=score,
        probability_up=(score + 1) / 2,
    )


def refusal(v: FeatureVector, model: Champion) -> PredictionRefused:
    return PredictionRefused(
        event_id=uuid.uuid4(),
        ts_event=v.ts_event,
        ts_init=now_ns(),
        symbol=v.symbol,
        timeframe=v.timeframe,
        feature_vector_id=v.event_id,
        model_id=model.model_id,
        model_name=model.name,
        model_version=model.version,
        reason="feature_list_mismatch",
        detail="rsi_14 missing",
    )


@pytest.fixture(scope="module")
async def database(infra_env):
    async with service_database(infra_env, definition(lambda rt: FakeCatalog())) as url:
        yield url


@pytest.fixture(scope="module")
def catalog() -> FakeCatalog:
    return FakeCatalog()


@pytest.fixture(scope="module")
def key():
    return new_key()


@pytest.fixture(scope="module")
def platform(infra_env, database, tmp_path_factory):
    return platform_of(infra_env, database, tmp_path_factory.mktemp("orchestration"))


#: The module's app makes signals of M1; the tests that start an app of their own use another
#: timeframe, so the two instances (group-less, both reading everything) do not answer for each other.
SETTINGS = AiOrchestrationSettings(
    deadline_ms=400, rsi_maturity_bars=2, checkpoint_interval_s=0.2, signal_timeframes=[Timeframe.M1]
)
M5, M15 = Timeframe.M5, Timeframe.M15


@pytest.fixture(scope="module")
async def app(platform, catalog, key):
    async with running(definition(lambda rt: catalog), platform, SETTINGS, key) as (http, _):
        yield http


@pytest.fixture
async def signals(infra_env):
    async with Feed(Signal, infra_env[2].kafka_servers) as feed:
        yield feed


@pytest.fixture(scope="module")
async def producer(infra_env):
    async with Producer(infra_env[2].kafka_servers) as p:
        yield p


async def test_one_signal_at_the_deadline_names_every_member_left_out_and_why(app, catalog, signals, producer):
    symbol = unique_symbol("DL")
    answers, refuses, silent, flagged = (
        champion("answers"),
        champion("refuses"),
        champion("silent"),
        champion("old", True),
    )
    catalog.by_symbol[symbol] = [answers, refuses, silent, flagged]
    v = vector(symbol, 0)
    await producer.send(prediction(v, answers, 0.6))  # before its vector: kept until the vector comes
    sent = time.monotonic()
    await producer.send(v, refusal(v, refuses))
    signal = await signals.wait_for(lambda s: s.symbol == symbol)
    waited = time.monotonic() - sent
    assert signal.event_id == signal_id(symbol, M1, v.ts_event, "ensemble-1")
    assert signal.feature_vector_id == v.event_id and signal.ts_event == v.ts_event
    assert [c.model_name for c in signal.contributions] == ["answers"]
    assert {(s.model_name, s.reason) for s in signal.skipped} == {
        ("refuses", "refused"),
        ("silent", "deadline"),
        ("old", "flagged"),
        ("rsi-14", "immature"),
    }
    assert waited >= SETTINGS.deadline_ms / 1000 * 0.9  # it waited for the silent model
    assert signal.direction == "long" and signal.strength == pytest.approx(0.6)
    assert 0 <= signal.confidence <= 1
    await asyncio.sleep(1.0)
    assert len(signals.where(lambda s: s.symbol == symbol)) == 1  # one signal per bar


async def test_the_signal_goes_out_as_soon_as_every_expected_member_answered(
    app, catalog, signals, producer, platform, key
):
    symbol = unique_symbol("ALL")
    a, b = champion("a"), champion("b")
    catalog.by_symbol[symbol] = [a, b]
    slow = AiOrchestrationSettings(deadline_ms=10_000, rsi_maturity_bars=2, signal_timeframes=[M15])
    async with running(definition(lambda rt: catalog), platform, slow, key):
        v = vector(symbol, 0, tf=M15)
        sent = time.monotonic()
        await producer.send(v, prediction(v, a, 0.5), prediction(v, b, -0.1))
        signal = await signals.wait_for(lambda s: s.symbol == symbol, timeout_s=9)
        assert time.monotonic() - sent < 5  # far from the 10 s deadline
        assert signal.skipped == [s for s in signal.skipped if s.model_name == "rsi-14"]
        assert {c.model_name for c in signal.contributions} == {"a", "b"}
        assert sum(c.weight for c in signal.contributions) == pytest.approx(1.0)


async def test_the_models_alone_open_and_close_a_position_once_the_series_is_mature(app, catalog, signals, producer):
    symbol = unique_symbol("MO")
    model = champion("opener")
    catalog.by_symbol[symbol] = [model]
    actions = []
    for i, score in enumerate((0.8, 0.8, 0.8, -0.5)):  # the RSI rule stays neutral (RSI 50) throughout
        v = vector(symbol, i)
        await producer.send(v, prediction(v, model, score))
        signal = await signals.wait_for(lambda s, t=v.ts_event: s.symbol == symbol and s.ts_event == t)
        actions.append(signal.action)
    # bar 0: not mature yet (2 bars); bar 1: the model alone enters; bar 2: holds; bar 3: reversal exits.
    assert actions == ["hold", "enter_long", "hold", "exit_long"]


async def test_a_flag_from_the_lifecycle_topic_stops_trust_at_the_next_bar(app, catalog, signals, producer):
    symbol = unique_symbol("FL")
    m = champion("drifty")
    catalog.by_symbol[symbol] = [m]
    v0 = vector(symbol, 0)
    await producer.send(v0, prediction(v0, m, 0.4))
    first = await signals.wait_for(lambda s: s.symbol == symbol)
    assert [c.model_name for c in first.contributions] == ["drifty"]
    await producer.send(
        ModelLifecycle(
            event_id=uuid.uuid4(), ts_event=now_ns(), ts_init=now_ns(), model_id=m.model_id, model_name=m.name,
            model_version=1, model_kind="xgboost", action="flagged", status="champion", reason="drift", actor="test",
        )
    )  # fmt: skip
    await asyncio.sleep(1.0)
    v1 = vector(symbol, 1)
    await producer.send(v1, prediction(v1, m, 0.4))
    second = await signals.wait_for(lambda s: s.symbol == symbol and s.ts_event == v1.ts_event)
    assert second.contributions == [] or all(c.model_name != "drifty" for c in second.contributions)
    assert ("drifty", "flagged") in {(s.model_name, s.reason) for s in second.skipped}
    assert second.direction == "flat"


async def test_a_redelivered_vector_makes_no_second_signal_and_garbage_is_dead_lettered(
    app, catalog, signals, producer, infra_env
):
    symbol = unique_symbol("RD")
    catalog.by_symbol[symbol] = []
    v = vector(symbol, 0)
    dlq = AIOKafkaConsumer(
        topics.DEAD_LETTERS, bootstrap_servers=infra_env[2].kafka_servers, auto_offset_reset="latest"
    )
    await dlq.start()
    try:
        while not dlq.assignment():
            await asyncio.sleep(0.05)
        for tp in dlq.assignment():
            await dlq.position(tp)
        await producer.send_raw(topics.FEATURES, b'{"not": "a vector"}', key=symbol.encode())
        await producer.send(v)
        await signals.wait_for(lambda s: s.symbol == symbol)
        await producer.send(v)  # delivered again
        letters = await dlq.getmany(timeout_ms=3000)
        reasons = [dict(r.headers).get("x-dlq-reason") for batch in letters.values() for r in batch]
        assert b"malformed" in reasons
    finally:
        await dlq.stop()
    await asyncio.sleep(1.0)
    assert len(signals.where(lambda s: s.symbol == symbol)) == 1


async def test_the_rsi_rule_trades_after_maturity_and_its_state_survives_a_restart(
    catalog, signals, producer, infra_env, tmp_path, key
):
    symbol = unique_symbol("RS")
    catalog.by_symbol[symbol] = []
    settings = AiOrchestrationSettings(
        deadline_ms=50, rsi_maturity_bars=2, checkpoint_interval_s=0.1, signal_timeframes=[M5]
    )
    service = definition(lambda rt: catalog)
    async with service_database(infra_env, service) as url:
        platform = platform_of(infra_env, url, tmp_path)
        await rsi_rule_across_a_restart(service, platform, settings, symbol, signals, producer, key)


async def rsi_rule_across_a_restart(service, platform, settings, symbol, signals, producer, key):
    def at(i: int):
        return lambda s: s.symbol == symbol and s.ts_event == T0 + i * M5.nanos

    async with running(service, platform, settings, key) as (http, _):
        for i, rsi in enumerate((50.0, 20.0)):
            await producer.send(vector(symbol, i, rsi, tf=M5))
            await signals.wait_for(at(i))
        entered = signals.where(lambda s: s.symbol == symbol)[-1]
        assert entered.action == "enter_long" and entered.direction == "long"
        assert [c.model_name for c in entered.contributions] == ["rsi-14"]
        await asyncio.sleep(0.5)  # a checkpoint
    async with running(service, platform, settings, key) as (http, _):
        r = await http.get(
            "/api/v1/orchestration/members", params={"symbol": symbol, "timeframe": "M5"}, headers=bearer(key, platform)
        )
        assert r.status_code == 200, r.text
        [rule] = [m for m in r.json()["members"] if m["name"] == "rsi-14"]
        assert rule["position"] == "long" and rule["bars"] == 2 and rule["mature"]
        assert (r.json()["position"], r.json()["position_owner"]) == ("long", "rule")  # the signals' own
        await producer.send(vector(symbol, 2, 70.0, tf=M5))  # >= 65: the long exits (the position was restored)
        exited = await signals.wait_for(at(2))
        assert exited.action == "exit_long"
        await producer.send(vector(symbol, 1, 20.0, tf=M5))  # an old vector again: handled before, no signal
        await asyncio.sleep(1.0)
        assert len(signals.where(at(1))) == 1


async def test_members_endpoint(app, catalog, platform, key):
    symbol = unique_symbol("MB")
    m = champion("listed")
    catalog.by_symbol[symbol] = [m]
    r = await app.get("/api/v1/orchestration/members", params={"symbol": symbol}, headers=bearer(key, platform))
    assert r.status_code == 200
    rows = {row["name"]: row for row in r.json()["members"]}
    assert set(rows) == {"listed", "rsi-14"}
    assert rows["listed"]["hit_rate"] is None  # too few outcomes: the prior weighs it
    assert rows["listed"]["weight"] == pytest.approx(0.5) == rows["rsi-14"]["weight"]
    bad = await app.get("/api/v1/orchestration/members", params={"symbol": "bad symbol"}, headers=bearer(key, platform))
    assert bad.status_code == 422 and "symbol" in bad.text
    assert (await app.get("/api/v1/orchestration/members", params={"symbol": symbol})).status_code == 401
