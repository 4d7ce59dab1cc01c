"""performance-analytics end to end on the real broker and chdb: fills, signals and ticks published
as their producers would; summaries, scopes, equity (JSON and SVG) read back over HTTP; a restart
on a new, empty broker log rebuilds the state from ClickHouse and a redelivered fill counts once;
tenant isolation; bad messages dead-lettered.

One chdb directory per process at a time: every test runs its own instance on the module's var
directory, one after the other."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal as D
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from services.performance_analytics.service import SERVICE
from services.performance_analytics.settings import PerformanceAnalyticsSettings
from services.performance_analytics.state import PerformanceAnalytics
from shared import topics
from shared.auth import mint_access_token
from shared.bus.broker import ensure_topics
from shared.events import (
    Contribution,
    Fill,
    OrderAttribution,
    OrderUpdated,
    Signal,
    Timeframe,
    ValidatedSignal,
    fill_event_id,
    now_ns,
    order_event_id,
    signal_id,
)
from shared.settings import PlatformSettings
from tests.intelligence_support import Producer, new_key, running
from tests.support import OwnBroker, eventually, free_port, quote_tick

T0 = 1_767_744_000.0  # Wednesday 2026-01-07 00:00 UTC
SETTINGS = PerformanceAnalyticsSettings(snapshot_interval_s=3600, returns_period_s=60)
API = "/api/v1/performance"


class Clock:
    """The service's wall clock, moved by the test."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def auth(key, platform, tenant: str = "t1", scopes: Sequence[str] = ("trade",)) -> dict[str, str]:
    token, _ = mint_access_token(
        key, issuer=platform.token_issuer, audience=platform.hats_token_audience, subject=f"client:{tenant}",
        client_id=f"{tenant}-client", tenant=tenant, scopes=scopes, ttl_s=600,
    )  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


def fill(
    account: str,
    side: str,
    qty: str,
    price: str,
    *,
    symbol: str = "EURUSD",
    commission: str = "0",
    tenant: str = "t1",
    deal: str | None = None,
    attribution: OrderAttribution | None = None,
) -> Fill:
    deal = deal or uuid.uuid4().hex[:16]
    return Fill(
        event_id=fill_event_id("paper", account, deal), ts_event=int(T0 * 1e9), ts_init=now_ns(),
        order_id=uuid.uuid4(), client_order_id=f"c-{deal}", tenant=tenant, account_id=account, venue="paper",
        venue_fill_id=deal, symbol=symbol, side=side, quantity=D(qty), price=D(price), commission=D(commission),
        currency="USD", attribution=attribution or OrderAttribution(),
    )  # fmt: skip


def order(account: str, order_id: uuid.UUID, version: int, state: str) -> OrderUpdated:
    return OrderUpdated(
        event_id=order_event_id(order_id, version), ts_event=int(T0 * 1e9) + version, ts_init=now_ns(),
        order_id=order_id, version=version, client_order_id=f"c-{order_id.hex[:8]}", tenant="t1", account_id=account,
        venue="paper", symbol="EURUSD", side="buy", type="market", quantity=D(1), time_in_force="ioc", state=state,
        filled_quantity=D(1) if state == "filled" else D(0),
    )  # fmt: skip


def validated(symbol: str, confidence: float, weights: dict[tuple[str, int], float]) -> ValidatedSignal:
    t = int(T0 * 1e9)
    sig = Signal(
        event_id=signal_id(symbol, Timeframe.M1, t, unique("ens")), ts_event=t, ts_init=now_ns(), symbol=symbol,
        timeframe=Timeframe.M1, feature_vector_id=uuid.uuid4(), direction="long", action="enter_long",
        strength=0.5, confidence=confidence, strategy="ensemble-1",
        contributions=[
            Contribution(model_id=None, model_name=name, model_version=version, model_kind="xgboost", score=0.4,
                         weight=weight)
            for (name, version), weight in weights.items()
        ],
    )  # fmt: skip
    return ValidatedSignal(event_id=uuid.uuid4(), ts_event=t, ts_init=now_ns(), signal=sig)


@pytest.fixture(scope="module")
def key():
    return new_key()


def servers_of(infra_env) -> str:
    """The module's own broker (``own_infra``)."""
    return str(infra_env[2].kafka_servers)


def platform_on(infra_env, servers: str, var) -> PlatformSettings:
    return PlatformSettings(
        hats_var_dir=var, hats_port_offset=infra_env[2].hats_port_offset, kafka_bootstrap_servers=servers
    )


@pytest.fixture(scope="module")
def platform(infra_env, tmp_path_factory):
    return platform_on(infra_env, servers_of(infra_env), tmp_path_factory.mktemp("performance"))


@pytest.fixture(scope="module")
async def producer(infra_env):
    async with Producer(servers_of(infra_env)) as p:
        yield p


@contextlib.asynccontextmanager
async def service(platform, key, clock: Clock) -> AsyncIterator[tuple[Any, PerformanceAnalytics]]:
    async with running(SERVICE, platform, SETTINGS, key, wall_clock=clock) as (http, app):
        yield http, app.runtime.state


async def summary_when(http, headers, account: str, check, timeout_s: float = 30) -> dict[str, Any]:
    seen: list[Any] = []

    async def ready() -> dict[str, Any] | None:
        r = await http.get(f"{API}/accounts/{account}", headers=headers)
        seen[:] = [r.status_code, r.text[:1500]]
        return r.json() if r.status_code == 200 and check(r.json()) else None

    try:
        return await eventually(ready, timeout_s=timeout_s)
    except AssertionError as exc:
        raise AssertionError(f"last answer: {seen}") from exc


async def marked(http, headers, producer, account: str, symbol: str, bid: str, unrealised: str) -> dict[str, Any]:
    """Send quotes of ``symbol`` until the account's unrealised PnL is ``unrealised`` (the ticks
    consumer starts at the topic's end once it is assigned, which the first quotes may precede)."""

    seen: list[Any] = []

    async def ready() -> dict[str, Any] | None:
        await producer.send(quote_tick(symbol, now_ns() // 1_000_000, D(bid)))
        r = await http.get(f"{API}/accounts/{account}", headers=headers)
        seen[:] = [r.status_code, r.text[:1500]]
        return r.json() if r.status_code == 200 and r.json()["pnl"]["unrealised"] == unrealised else None

    try:
        return await eventually(ready, timeout_s=30, interval_s=0.5)
    except AssertionError as exc:
        raise AssertionError(f"last answer: {seen}") from exc


async def test_fills_signals_and_ticks_in_summary_scopes_and_equity_out(platform, key, producer):
    account, xgb, lstm = unique("E2E"), unique("xgb"), unique("lstm")
    clock = Clock(T0)
    headers = auth(key, platform)
    async with service(platform, key, clock) as (http, state):
        signal = validated("EURUSD", 0.72, {(xgb, 3): 0.6, (lstm, 1): 0.2})
        await producer.send(signal)
        await eventually(lambda: _async(str(signal.signal.event_id) in state.analytics.signals))
        opened = OrderAttribution(
            strategy="signals", signal_id=signal.signal.event_id, models=[f"{xgb}:3", f"{lstm}:1"]
        )
        await producer.send(
            fill(account, "buy", "1", "1.1000", commission="3", attribution=opened),
            fill(account, "sell", "1", "1.1010", commission="3"),
            fill(account, "buy", "0.5", "1.1000", commission="1.5", attribution=OrderAttribution(strategy="rsi")),
        )
        # closed: 1 * 100000 * (1.1010 - 1.1000) = 100, commissions 3 + 3; open: 0.5 lot long marked at
        # the bid 1.1020: 0.5 * 100000 * 0.0020 = 100, commission 1.5. Total 100 - 7.5 + 100 = 192.5
        s = await marked(http, headers, producer, account, "EURUSD", "1.1020", "100")
        assert s["fills"] == 3
        assert s["pnl"] == {"realised": "100", "commission": "7.5", "realised_net": "92.5", "unrealised": "100",
                            "total": "192.5"}  # fmt: skip
        assert s["equity"] == "100192.5"
        # exposure: 0.5 * 100000 * 1.1020 = 55100
        assert s["exposure"] == {"gross": "55100", "net": "55100"} and s["open_trades"] == 1
        assert s["trades"]["count"] == 1 and s["trades"]["win_rate"] == 1.0
        assert s["positions"] == [
            {"symbol": "EURUSD", "quantity": "0.5", "average_price": "1.1", "mark": "1.102", "unrealised": "100",
             "opened_at": "2026-01-07T00:00:00Z", "strategy": "rsi"}
        ]  # fmt: skip

        strategies = (await http.get(f"{API}/accounts/{account}/strategies", headers=headers)).json()
        by_name = {r["scope"]["name"]: r for r in strategies}
        assert by_name["signals"]["pnl"]["total"] == "94"  # 100 - 6
        assert by_name["rsi"]["pnl"]["total"] == "98.5"  # 100 unrealised - 1.5
        # models: the signal's weights of the order's models, normalised: 0.6 / 0.8 and 0.2 / 0.8 of 94
        models = {
            r["scope"]["name"]: r for r in (await http.get(f"{API}/accounts/{account}/models", headers=headers)).json()
        }
        assert models[f"{xgb}:3"]["pnl"]["total"] == "70.5" and models[f"{lstm}:1"]["pnl"]["total"] == "23.5"
        assert models[f"{xgb}:3"]["model"]["hit_rate"] == 1.0
        assert models[f"{xgb}:3"]["model"]["calibration"]["buckets"] == [
            {"from": 0.7, "to": 0.8, "trades": 1, "mean_confidence": 0.72, "hit_rate": 1.0}
        ]
        # orders by their newest state; a change delivered twice is one
        first, second = uuid.uuid4(), uuid.uuid4()
        await producer.send(order(account, first, 1, "new"), order(account, first, 2, "accepted"))
        await producer.send(order(account, second, 1, "new"))
        await summary_when(http, headers, account, lambda s: s["orders"] == {"accepted": 1, "new": 1})
        # later versions in another batch (another part in ClickHouse), and a version again
        await producer.send(
            order(account, first, 3, "filled"),
            order(account, second, 2, "rejected"),
            order(account, first, 2, "accepted"),
        )
        await summary_when(http, headers, account, lambda s: s["orders"] == {"filled": 1, "rejected": 1})
        tenant_models = {m["model"]: m for m in (await http.get(f"{API}/models", headers=headers)).json()}
        assert tenant_models[f"{xgb}:3"]["pnl"]["realised_net"] == "70.5"
        symbols = (await http.get(f"{API}/accounts/{account}/symbols", headers=headers)).json()
        assert [(r["scope"]["name"], r["pnl"]["total"]) for r in symbols] == [("EURUSD", "192.5")]

        # equity: snapshots a minute apart, the mark falling in between
        await state.snapshots.take()
        clock.t += 60
        await marked(http, headers, producer, account, "EURUSD", "1.0990", "-50")  # 0.5 * 100000 * -0.0010
        await state.snapshots.take()
        clock.t += 60
        await marked(http, headers, producer, account, "EURUSD", "1.1030", "150")
        await state.snapshots.take()
        r = await http.get(f"{API}/accounts/{account}/equity", headers=headers)
        assert r.status_code == 200, r.text
        points = r.json()["points"]
        assert [p["equity"] for p in points] == [100192.5, 100042.5, 100242.5]
        assert [p["ts"] for p in points] == ["2026-01-07T00:00:00Z", "2026-01-07T00:01:00Z", "2026-01-07T00:02:00Z"]
        window = {"from": "2026-01-07T00:01:00Z", "to": "2026-01-07T00:01:30Z"}
        r = await http.get(f"{API}/accounts/{account}/equity", headers=headers, params=window)
        assert [p["equity"] for p in r.json()["points"]] == [100042.5]
        s = (await http.get(f"{API}/accounts/{account}", headers=headers)).json()
        # drawdown: peak 100192.5 -> 100042.5, i.e. -150 (100042.5 / 100192.5 - 1)
        assert s["risk"]["max_drawdown_amount"] == pytest.approx(-150)
        assert s["risk"]["max_drawdown"] == pytest.approx(100042.5 / 100192.5 - 1)
        assert s["risk"]["returns"] == 2 and s["risk"]["sharpe"] is not None  # per-minute returns (settings)

        r = await http.get(f"{API}/accounts/{account}/equity.svg", headers=headers)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
        svg = ET.fromstring(r.text)
        ns = "{http://www.w3.org/2000/svg}"
        assert svg.tag == f"{ns}svg"
        line = svg.find(f"{ns}polyline")
        assert line is not None and len(line.get("points", "").split()) == 3
        labels = [t.text for t in svg.iter(f"{ns}text")]
        assert "2026-01-07 00:00 UTC" in labels and "2026-01-07 00:02 UTC" in labels
        assert "100,242.50" in labels and "100,042.50" in labels  # the y axis spans min..max


def _async(value):
    async def result():
        return value

    return result()


async def test_restart_on_a_new_broker_log_rebuilds_from_storage_and_a_redelivered_fill_counts_once(
    platform, key, producer, tmp_path, infra_env
):
    account = unique("RS")
    clock = Clock(T0 + 3600)
    headers = auth(key, platform)
    fills = [
        fill(account, "sell", "2", "1.2500", symbol="GBPUSD", commission="4", deal="d1"),
        fill(account, "buy", "1", "1.2490", symbol="GBPUSD", commission="2", deal="d2"),
    ]
    async with service(platform, key, clock) as (http, state):
        await producer.send(*fills)
        # closed 1 of the short: 1 * 100000 * (1.2490 - 1.2500) * -1 = +100; 1 lot short left at 1.25,
        # marked at the ask 1.2481 (bid + 0.0001): -1 * 100000 * (1.2481 - 1.25) = +190
        before = await marked(http, headers, producer, account, "GBPUSD", "1.2480", "190")
        await state.snapshots.take()  # the marks are stored with the snapshot
    assert before["fills"] == 2 and before["pnl"]["total"] == "284"  # 100 + 190 - 4 - 2

    # A new, empty broker log (as after `make run` again): only storage knows the past.
    broker = OwnBroker(free_port(), tmp_path / "kafka.log")
    try:
        await ensure_topics(broker.servers)
        moved = platform_on(infra_env, broker.servers, platform.hats_var_dir)
        async with service(moved, key, clock) as (http, state), Producer(broker.servers) as again:
            after = (await http.get(f"{API}/accounts/{account}", headers=headers)).json()
            for field in ("fills", "pnl", "equity", "exposure", "positions", "trades"):
                assert after[field] == before[field], field
            # the engine's outbox publishes the first fill again, then a new one closes the short
            await again.send(fills[0], fill(account, "buy", "1", "1.2480", symbol="GBPUSD", deal="d3"))
            s = await summary_when(http, headers, account, lambda s: s["fills"] == 3, timeout_s=60)
            # 1 * 100000 * (1.2480 - 1.25) * -1 = +200 more realised; had d1 counted twice, 2 more lots short
            assert s["pnl"]["realised"] == "300" and s["positions"] == [] and s["trades"]["count"] == 1
            await asyncio.sleep(1.0)  # nothing else arrives
            assert (await http.get(f"{API}/accounts/{account}", headers=headers)).json()["fills"] == 3
    finally:
        broker.stop()


async def test_tenants_see_only_their_own_accounts(platform, key, producer):
    account = unique("TN")
    t1, t2 = auth(key, platform, "t1"), auth(key, platform, "t2")
    async with service(platform, key, Clock(T0)) as (http, _):
        await producer.send(
            fill(account, "buy", "0.1", "2000", symbol="XAUUSD", tenant="t1"),
            fill(account, "sell", "0.3", "2000", symbol="XAUUSD", tenant="t2"),
        )
        own = await summary_when(http, t1, account, lambda s: s["fills"] == 1)
        theirs = await summary_when(http, t2, account, lambda s: s["fills"] == 1)
        assert own["positions"][0]["quantity"] == "0.1" and theirs["positions"][0]["quantity"] == "-0.3"
        other = unique("T1ONLY")
        await producer.send(fill(other, "buy", "0.1", "2000", symbol="XAUUSD", tenant="t1"))
        await summary_when(http, t1, other, lambda s: s["fills"] == 1)
        for path in ("", "/equity", "/equity.svg", "/symbols", "/strategies", "/bots", "/models"):
            r = await http.get(f"{API}/accounts/{other}{path}", headers=t2)
            assert r.status_code == 404, (path, r.status_code)
            assert r.headers["content-type"].startswith("application/problem+json")
        listed = [a["account_id"] for a in (await http.get(f"{API}/accounts", headers=t2)).json()]
        assert account in listed and other not in listed
        # the scope, the token, and bad input
        assert (await http.get(f"{API}/accounts/{account}")).status_code == 401
        assert (
            await http.get(f"{API}/accounts/{account}", headers=auth(key, platform, scopes=("market:read",)))
        ).status_code == 403
        r = await http.get(
            f"{API}/accounts/{account}/equity", headers=t1, params={"from": "2026-01-02", "to": "2026-01-01"}
        )
        assert r.status_code == 422 and "to" in r.json()["detail"]
        r = await http.get(f"{API}/accounts/{account}/equity", headers=t1, params={"from": "yesterday"})
        assert r.status_code == 422 and "from" in r.text
        assert (await http.get(f"{API}/accounts/bad%20id", headers=t1)).status_code == 422


async def test_bad_fills_are_dead_lettered_and_the_next_one_counted(platform, key, producer, infra_env):
    account = unique("DL")
    headers = auth(key, platform)
    dlq = AIOKafkaConsumer(topics.DEAD_LETTERS, bootstrap_servers=servers_of(infra_env), auto_offset_reset="latest")
    await dlq.start()
    try:
        while not dlq.assignment():
            await asyncio.sleep(0.05)
        for tp in dlq.assignment():
            await dlq.position(tp)
        async with service(platform, key, Clock(T0)) as (http, _):
            await producer.send_raw(topics.FILLS, b'{"event_type": "trading.fill"}', key=account.encode())
            await producer.send(fill(account, "buy", "1", "10", symbol="ZZZUSD"))
            await producer.send(fill(account, "buy", "0.01", "50000", symbol="BTCUSD"))
            s = await summary_when(http, headers, account, lambda s: s["fills"] == 1)
            assert s["positions"][0]["symbol"] == "BTCUSD"

            async def letters() -> list[tuple[str, str]] | None:
                batches = await dlq.getmany(timeout_ms=500)
                found.extend(
                    (h["x-dlq-reason"].decode(), h["x-consumer-group"].decode())
                    for records in batches.values()
                    for h in (dict(r.headers) for r in records)
                )
                return found if len(found) >= 2 else None

            found: list[tuple[str, str]] = []
            got = await eventually(letters, timeout_s=15)
            assert sorted(got) == [
                ("malformed", "performance-analytics.fills"),
                ("unknown_instrument", "performance-analytics.fills"),
            ]
    finally:
        await dlq.stop()


async def test_a_fill_whose_storing_failed_is_redelivered_and_counted_once(platform, key, producer):
    account = unique("OUT")
    headers = auth(key, platform)
    async with service(platform, key, Clock(T0)) as (http, state):
        store = state.store
        real = store.insert_fills
        failures: list[int] = []

        async def failing_once(facts):
            if not failures:
                failures.append(len(facts))
                raise ConnectionError("ClickHouse away")
            await real(facts)

        store.insert_fills = failing_once  # type: ignore[method-assign]
        await producer.send(fill(account, "buy", "0.02", "50000", symbol="BTCUSD", deal="o1"))
        s = await summary_when(http, headers, account, lambda s: s["fills"] == 1)
        assert failures == [1]  # the first delivery failed to store and changed nothing
        assert s["positions"][0]["quantity"] == "0.02"
        stored = [f for f in await store.fills() if f.account_id == account]
        assert len(stored) == 1
