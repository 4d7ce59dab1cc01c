"""trading-engine under faults (issue 11, point 8): kill -9 while validated signals stream in, and the
embedded broker killed while orders flow. Afterwards: no duplicate order, no lost order, no
reservation left on a final order, and the engine's positions equal the paper venue's.

Each test runs its own ``hats up --only api-gateway,user-service,trading-engine`` (its own var dir,
its own embedded broker, a database of its own on the session's PostgreSQL) on the session offset
+ 1300: a mesh spans 8000-9092 plus its offset, and +1300 meets no port of the session mesh nor of
the other fault meshes (+500, +700, +1100, +1500, +1700, +2500). The test is the pipeline: it
publishes BTCUSD ticks (the paper venue fills on them; BTCUSD trades around the clock, so the
market-hours check holds on any day) and validated signals itself, straight to the mesh's broker.

The decisive moment of a kill is between a bot's submit and the save of its memory: the order
exists, the signal is not yet remembered as processed, so its redelivery decides it again. The
worst-moment kill makes that moment certain: the test holds the bot's row locked (the memory save
waits on it, seen in ``pg_stat_activity``), stops the ticks (the order stays unfilled), kills the
engine, ends the dead engine's PostgreSQL backend (which would otherwise run the queued save once
the lock is gone: a process killed there never sent it), and only then lets go.

Known gap (see the helper's report): the new engine has no quote until its first tick, and a bot
passes an entry by ("no price to size from") and remembers it as processed. With the ticks stopped,
the redelivered entry therefore makes no order either way; what catches a non-deterministic client
order id here is that every order's id must be the one its signal yields. The broker test, whose
signals are all sent again, holds "one order per signal" itself (checked: replay guards off and a
random client order id make it fail with "a signal became two orders").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.trading_engine.bots.intents import intent_client_order_id
from shared.events import Event, ValidatedSignal, encode_event
from tests.conftest import PORT_OFFSET, Mesh
from tests.services.trading_engine.bots_support import validated
from tests.support import client_token, eventually, own_database, quote_tick

pytestmark = pytest.mark.slow

OFFSET = PORT_OFFSET + 1300
SYMBOL = "BTCUSD"
ACCOUNT = "paper-platform"
OPEN_STATES = ("new", "pending_submit", "accepted", "partially_filled", "unknown")
FINAL_STATES = ("filled", "canceled", "rejected", "expired")
#: Seconds between two signals: time for the paper venue to fill an order on the next ticks.
SIGNAL_PACE_S = 0.7
TICK_PACE_S = 0.1


class TradingMesh(Mesh):
    """The reduced mesh, its database and its broker, as a test of the engine needs them."""

    def __init__(self, var: Path, env: dict[str, str], database: str) -> None:
        super().__init__(var, env, args=("--only=api-gateway,user-service,trading-engine",), port_offset=OFFSET)
        self.database = database

    def engine_pid(self) -> int | None:
        state = json.loads((self.var / "supervisor.json").read_text())
        pid: int | None = state["services"]["trading-engine"]["pid"]
        return pid

    def kill_engine(self) -> int:
        pid = self.engine_pid()
        assert pid is not None, "trading-engine is not running"
        os.kill(pid, signal.SIGKILL)
        return pid

    async def engine_back(self, killed: int, timeout_s: float = 60.0) -> None:
        """Until the supervisor has started a new engine and it answers ready."""

        async def back() -> bool:
            pid = self.engine_pid()
            if pid is None or pid == killed:
                return False
            try:
                async with httpx.AsyncClient(timeout=2.0) as http:
                    return (await http.get(self.url("trading-engine") + "/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(back, timeout_s=timeout_s, interval_s=0.2)

    def kill_broker(self) -> None:
        needle = f"tcp://127.0.0.1:{self.settings.port_of('kafka')}".encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes()
                if needle in cmdline and b"broker" in cmdline:
                    os.kill(int(proc.name), signal.SIGKILL)
                    return
        raise AssertionError("the embedded broker is not running")


@pytest.fixture
async def trading_mesh(infra_env) -> AsyncIterator[TradingMesh]:
    _, session_env, _ = infra_env
    var = Path(tempfile.mkdtemp(prefix="hats-trading-faults-"))
    os.chmod(var, 0o755)  # the embedded PostgreSQL's user must reach it
    async with own_database(session_env["DATABASE_URL"], "tradingfaults") as database:
        env = {k: v for k, v in session_env.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}  # its own broker
        env |= {
            "HATS_VAR_DIR": str(var),
            "HATS_PORT_OFFSET": str(OFFSET),
            "DATABASE_URL": database,
            "TRADING_ENGINE_DEFAULT_BOTS": "",  # only the test's bot trades
            # Faster rounds, so an order a kill left behind is resolved within the test's time.
            "TRADING_ENGINE_RECONCILE_INTERVAL_S": "1",
            "TRADING_ENGINE_SUBMIT_TIMEOUT_S": "3",
            "TRADING_ENGINE_NEVER_REACHED_GRACE_S": "6",
        }
        mesh = TradingMesh(var, env, database)
        await asyncio.to_thread(mesh.start)
        try:
            yield mesh
        finally:
            await asyncio.to_thread(mesh.stop)
            await _show(mesh)  # shown on failure
    shutil.rmtree(var, ignore_errors=True)


async def _show(mesh: TradingMesh) -> None:
    """What a failed test needs: the supervisor's output, the engine's log, the orders."""
    out = mesh.var / "supervisor.out"
    print(out.read_text(errors="replace")[-5000:] if out.exists() else "(no output)")
    log = mesh.var / "logs" / "trading-engine.log"
    if log.exists():
        shutil.copy(log, Path(tempfile.gettempdir()) / "trading-faults-engine.log")
        lines = [line for line in log.read_text(errors="replace").splitlines() if "bots" in line or "WARN" in line]
        print("\n".join(line[:600] for line in lines[-80:]))
    with contextlib.suppress(Exception):
        db = await asyncpg.connect(mesh.database)
        try:
            for row in await db.fetch(
                "SELECT client_order_id, side, state, reason_code, actor, created_at FROM trading.orders "
                "ORDER BY created_at"
            ):
                print(dict(row))
        finally:
            await db.close()


class Market:
    """The test's side of the pipeline: ticks at a steady pace (pausable) and validated signals."""

    def __init__(self, servers: str) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=servers, request_timeout_ms=5000)
        self.ticking = asyncio.Event()
        self.ticking.set()
        self.ticks_sent = 0
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random(7)

    async def __aenter__(self) -> Market:
        await self.producer.start()
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.producer.stop()

    async def publish(self, event: Event) -> None:
        """Publish until the broker acknowledges (it may be restarting)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                await asyncio.wait_for(
                    self.producer.send_and_wait(event.TOPIC, encode_event(event), key=event.partition_key()), 10
                )
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)

    async def _tick(self) -> None:
        bid = Decimal("60000")
        while True:
            await self.ticking.wait()
            bid += Decimal(self._rng.randint(-5, 5))
            # Wall-clock time: the paper venue fills an order on a tick after its submit.
            with contextlib.suppress(Exception):
                await self.publish(quote_tick(SYMBOL, time.time_ns() // 1_000_000, bid))
                self.ticks_sent += 1
            await asyncio.sleep(TICK_PACE_S)


class Signals:
    """Validated BTCUSD signals, one per M1 bar, alternating enter_long / exit_long."""

    def __init__(self, bot_id: uuid.UUID) -> None:
        self.bot_id = bot_id
        self.sent: list[ValidatedSignal] = []

    def next(self, action: str | None = None) -> ValidatedSignal:
        i = len(self.sent)
        chosen = action or ("enter_long" if i % 2 == 0 else "exit_long")
        made = validated(chosen, i, symbol=SYMBOL, confidence=0.9, strength=0.9)
        self.sent.append(made)
        return made

    def client_order_id(self, made: ValidatedSignal) -> str:
        """The client order id the bot gives the order it decides on this signal."""
        return intent_client_order_id(self.bot_id, f"input|{made.signal.event_id}")

    def by_client_order_id(self) -> dict[str, ValidatedSignal]:
        return {self.client_order_id(s): s for s in self.sent}


async def admin_http(mesh: TradingMesh) -> httpx.AsyncClient:
    admin = json.loads((mesh.var / "credentials.json").read_text())["admin"]
    gateway = mesh.url("api-gateway")

    async def token_() -> str | None:
        try:  # the gateway may not reach user-service for a moment after the mesh says it is up
            return await client_token(gateway, admin["client_id"], admin["client_secret"])
        except AssertionError:
            return None

    token = await eventually(token_, timeout_s=30, interval_s=0.5)
    return httpx.AsyncClient(base_url=gateway, timeout=15, headers={"Authorization": f"Bearer {token}"})


async def create_bot(http: httpx.AsyncClient) -> uuid.UUID:
    # The risk gate's duplicate-order check refuses the same side and size within its window (5 s by
    # default); the test's entries come 2 x SIGNAL_PACE_S apart, so the tenant's window is 1 s.
    current = (await http.get("/api/v1/risk/limits")).json()
    limits = {**current["limits"], "duplicate_window_s": 1}
    r = await http.put("/api/v1/risk/limits", json={"limits": limits, "reason": "trading faults test"})
    assert r.status_code == 200, r.text
    config = {"lots": "0.01", "min_confidence": 0.5, "min_strength": 0.5}
    r = await http.post(
        "/api/v1/bots",
        json={"account_id": ACCOUNT, "symbol": SYMBOL, "strategy": "signals", "config": config, "start": True},
    )
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "running", r.text
    return uuid.UUID(r.json()["bot_id"])


async def engine_has_a_price(market: Market, http: httpx.AsyncClient) -> None:
    """Until the engine has seen a tick (a market order reserves at the last price): a resting limit
    order below the market (inside the price collar, which needs a last price too) is accepted, then
    canceled. Asked only once ticks flow, so rejections do not pile up towards the throttle."""
    await eventually(lambda: _at_least(market, 20), timeout_s=30)

    async def priced() -> bool:
        r = await http.post(
            "/api/v1/orders",
            json={
                "account_id": ACCOUNT,
                "symbol": SYMBOL,
                "side": "buy",
                "type": "limit",
                "quantity": "0.01",
                "limit_price": "58000",  # ~3 % below the market: inside the collar, never fills
                "client_order_id": f"probe-{uuid.uuid4().hex[:12]}",
            },
        )
        assert r.status_code == 201, r.text
        order = r.json()
        if order["state"] in OPEN_STATES:
            assert (await http.delete(f"/api/v1/orders/{order['id']}")).status_code == 202
            return True
        assert order["reason_code"] == "no_reference_price", order
        return False

    await eventually(priced, timeout_s=30, interval_s=2.0)


async def _at_least(market: Market, ticks: int) -> bool:
    return market.ticks_sent >= ticks


async def bot_orders(db: asyncpg.Connection, bot_id: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT id, client_order_id, side, quantity, state, reason_code, filled_quantity, attribution "
        "FROM trading.orders WHERE actor = $1 ORDER BY created_at",
        f"bot:{bot_id}",
    )


async def quiescent(db: asyncpg.Connection, http: httpx.AsyncClient, bot_id: uuid.UUID, last: ValidatedSignal) -> None:
    """Until the bot has processed the last signal, no order is open and the positions agree."""

    async def settled() -> Any:
        bot = (await http.get(f"/api/v1/bots/{bot_id}")).json()
        if bot.get("last_input_ns") != last.signal.ts_event:
            return False
        open_ = await db.fetchval("SELECT count(*) FROM trading.orders WHERE state = ANY($1::text[])", OPEN_STATES)
        if open_:
            return False
        r = await http.get("/api/v1/positions/drift")
        return r.status_code == 200 and r.json()["items"] == []

    await eventually(settled, timeout_s=60, interval_s=0.5)


async def assert_books_agree(db: asyncpg.Connection, http: httpx.AsyncClient, signals: Signals) -> list[Any]:
    """No duplicate, no lost, no stuck order; no reservation left; positions equal the venue's.
    Returns the bot's orders."""
    orders = await bot_orders(db, signals.bot_id)
    expected = signals.by_client_order_id()
    # Every order of the bot is the one order of one signal: its client order id is the one the
    # signal's decision yields, and no signal has two (a redelivered signal decided again must
    # meet its first order, not make a second).
    per_signal: dict[str, int] = {}
    for o in orders:
        signal_id = json.loads(o["attribution"])["signal_id"]
        per_signal[signal_id] = per_signal.get(signal_id, 0) + 1
    assert {s: n for s, n in per_signal.items() if n > 1} == {}, "a signal became two orders"
    strays = [o["client_order_id"] for o in orders if o["client_order_id"] not in expected]
    assert not strays, f"orders whose client order id is not their signal's: {strays}"
    # Every order reached a final state (none stuck in pending_submit/unknown after reconciliation).
    stuck = [(o["client_order_id"], o["state"]) for o in orders if o["state"] not in FINAL_STATES]
    assert not stuck, stuck
    # The venue has each order at most once, and nothing the engine does not know.
    venue = await db.fetch(
        "SELECT client_order_id, count(*) AS n, max(state) AS state FROM trading.paper_orders "
        "WHERE account_id = $1 GROUP BY client_order_id",
        ACCOUNT,
    )
    at_venue = {r["client_order_id"]: r for r in venue}
    assert all(r["n"] == 1 for r in venue)
    engine_ids = set(await db.fetch("SELECT client_order_id FROM trading.orders WHERE account_id = $1", ACCOUNT))
    engine_ids = {r["client_order_id"] for r in engine_ids}
    assert set(at_venue) <= engine_ids, f"orders at the venue the engine lost: {set(at_venue) - engine_ids}"
    for o in orders:
        if o["state"] == "filled":
            assert at_venue[o["client_order_id"]]["state"] == "filled", o
    # Reservations: only open orders hold one, and none is open.
    held = await db.fetch(
        "SELECT r.order_id, o.state FROM trading.reservations r JOIN trading.orders o ON o.id = r.order_id"
    )
    assert held == [], f"reservations left on final orders: {held}"
    account = (await http.get(f"/api/v1/accounts/{ACCOUNT}")).json()
    assert Decimal(account["reserved"]) == 0, account
    # Positions: the engine's equals the venue's, and equals the bot's filled orders.
    engine_qty = await db.fetchval(
        "SELECT coalesce(sum(quantity), 0) FROM trading.positions WHERE account_id = $1 AND symbol = $2",
        ACCOUNT,
        SYMBOL,
    )
    venue_qty = await db.fetchval(
        "SELECT coalesce(sum(quantity), 0) FROM trading.paper_positions WHERE account_id = $1 AND symbol = $2",
        ACCOUNT,
        SYMBOL,
    )
    from_orders = sum(
        (o["filled_quantity"] if o["side"] == "buy" else -o["filled_quantity"] for o in orders), Decimal(0)
    )
    assert engine_qty == venue_qty == from_orders, (engine_qty, venue_qty, from_orders)
    assert (await http.get("/api/v1/positions/drift")).json()["items"] == []
    return orders


async def stream(market: Market, signals: Signals, count: int) -> None:
    for _ in range(count):
        await market.publish(signals.next())
        await asyncio.sleep(SIGNAL_PACE_S)


async def flat_and_idle(db: asyncpg.Connection, market: Market, signals: Signals) -> None:
    """Until no order is open and the account is flat in the symbol (an exit closes what is held),
    so that the next entry is decided."""

    async def held() -> Decimal | None:
        open_ = await db.fetchval("SELECT count(*) FROM trading.orders WHERE state = ANY($1::text[])", OPEN_STATES)
        if open_:
            return None
        qty: Decimal = await db.fetchval(
            "SELECT coalesce(sum(quantity), 0) FROM trading.positions WHERE account_id = $1 AND symbol = $2",
            ACCOUNT,
            SYMBOL,
        )
        return qty

    async def idle() -> bool:
        # Every signal sent is processed first: our lock on the bot's row must meet the entry's
        # memory save, not an earlier signal's (which would hold the entry back behind it).
        memory = await db.fetchval("SELECT memory FROM trading.bots WHERE bot_id = $1", signals.bot_id)
        if json.loads(memory).get("last_input_ns") != signals.sent[-1].signal.ts_event:
            return False
        return await held() is not None

    deadline = time.monotonic() + 60
    while True:
        await eventually(idle, timeout_s=40, interval_s=0.3)
        if await held() == 0:
            return
        assert time.monotonic() < deadline, "the bot's position was never closed"
        # An exit may meet the risk gate's duplicate-order window (a burst after a restart): again.
        await asyncio.sleep(1.2)
        await market.publish(signals.next("exit_long"))
        await asyncio.sleep(SIGNAL_PACE_S)


async def kill_at_the_worst_moment(mesh: TradingMesh, db: asyncpg.Connection, market: Market, signals: Signals) -> str:
    """kill -9 the engine after it stored a bot's order and before the bot saved its memory; the
    redelivered signal must meet that order. Returns the order's client order id."""
    await flat_and_idle(db, market, signals)  # the next signal is an entry, decided while flat
    market.ticking.clear()  # the order must stay unfilled: the redelivery then decides the same again
    lock = await asyncpg.connect(mesh.database)
    try:
        tx = lock.transaction()
        await tx.start()
        await lock.execute("SELECT 1 FROM trading.bots WHERE bot_id = $1 FOR UPDATE", signals.bot_id)
        entry = signals.next("enter_long")
        await market.publish(entry)

        async def stored() -> str | None:
            # Found by the signal it acts on (the attribution), whatever its client order id.
            found: str | None = await db.fetchval(
                "SELECT p.client_order_id FROM trading.orders o JOIN trading.paper_orders p "
                "ON p.account_id = o.account_id AND p.client_order_id = o.client_order_id "
                "WHERE o.attribution->>'signal_id' = $1",
                str(entry.signal.event_id),
            )
            return found

        client_id = await eventually(stored, timeout_s=30, interval_s=0.05)
        # The bot's memory save waits on our lock (a plain read does not): the signal is not processed yet.
        memory = await db.fetchval("SELECT memory FROM trading.bots WHERE bot_id = $1", signals.bot_id)
        assert json.loads(memory).get("last_input_ns", 0) < entry.signal.ts_event
        me = await lock.fetchval("SELECT pg_backend_pid()")

        async def save_waits() -> list[int]:
            rows = await db.fetch(
                "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE '%memory%'", me
            )
            return [r["pid"] for r in rows]

        waiting = await eventually(save_waits, timeout_s=10, interval_s=0.02)
        killed = mesh.kill_engine()
        # The dead engine's save is still queued in its PostgreSQL backend, which learns of the
        # closed socket only when it next writes to it: released, the save would commit after
        # the kill. A process killed at that point never sent it, so its backend goes first.
        ended = await db.fetch(  # the timeout: until it has ended, or it could still take the lock
            "SELECT pg_terminate_backend(pid, 10000) AS ok FROM unnest($1::int[]) AS pid", waiting
        )
        assert all(r["ok"] for r in ended), ended
        await tx.rollback()
    finally:
        await lock.close()
    await mesh.engine_back(killed)

    async def decided_again() -> bool:
        row = await db.fetchval("SELECT memory FROM trading.bots WHERE bot_id = $1", signals.bot_id)
        return json.loads(row).get("last_input_ns") == entry.signal.ts_event

    await eventually(decided_again, timeout_s=60, interval_s=0.2)
    market.ticking.set()
    return client_id


async def test_kill_9_while_signals_stream_in_loses_and_duplicates_no_order(trading_mesh: TradingMesh) -> None:
    mesh = trading_mesh
    rng = random.Random()
    async with (
        Market(mesh.settings.kafka_servers) as market,
        await admin_http(mesh) as http,
    ):
        db = await asyncpg.connect(mesh.database)
        try:
            await engine_has_a_price(market, http)
            bot_id = await create_bot(http)
            signals = Signals(bot_id)
            await stream(market, signals, 6)
            # At a random point of the stream: the kill lands wherever the engine happens to be.
            streaming = asyncio.create_task(stream(market, signals, 10))
            await asyncio.sleep(rng.uniform(0.0, 10 * SIGNAL_PACE_S))
            before = {o["client_order_id"] for o in await bot_orders(db, bot_id)}
            killed = mesh.kill_engine()
            await streaming
            await mesh.engine_back(killed)
            worst = await kill_at_the_worst_moment(mesh, db, market, signals)
            await stream(market, signals, 6)
            await quiescent(db, http, bot_id, signals.sent[-1])
            orders = await assert_books_agree(db, http, signals)
        finally:
            await db.close()
    by_id = {o["client_order_id"]: o for o in orders}
    assert before <= set(by_id), "an order decided before the kill is gone"
    assert by_id[worst]["state"] == "filled", by_id[worst]  # submitted once, filled once
    filled = [o for o in orders if o["state"] == "filled"]
    assert len(filled) >= 8, [(o["side"], o["state"], o["reason_code"]) for o in orders]


async def until_processed(db: asyncpg.Connection, market: Market, signals: Signals, timeout_s: float = 60) -> None:
    """Publish the last signal again until the bot has processed it: a producer's at-least-once after
    its broker lost the log (a consumer that rejoins the new log at its end may miss what came first)."""
    last = signals.sent[-1]
    deadline = time.monotonic() + timeout_s
    while True:
        memory = await db.fetchval("SELECT memory FROM trading.bots WHERE bot_id = $1", signals.bot_id)
        if json.loads(memory).get("last_input_ns") == last.signal.ts_event:
            return
        assert time.monotonic() < deadline, "the bot never got the last signal after the broker restart"
        await market.publish(last)
        await asyncio.sleep(1.0)


async def test_the_broker_killed_while_orders_flow_loses_and_duplicates_no_order(trading_mesh: TradingMesh) -> None:
    mesh = trading_mesh
    async with (
        Market(mesh.settings.kafka_servers) as market,
        await admin_http(mesh) as http,
    ):
        db = await asyncpg.connect(mesh.database)
        try:
            await engine_has_a_price(market, http)
            bot_id = await create_bot(http)
            signals = Signals(bot_id)
            await stream(market, signals, 6)
            streaming = asyncio.create_task(stream(market, signals, 10))
            await asyncio.sleep(random.uniform(0.0, 10 * SIGNAL_PACE_S))
            before = {o["client_order_id"] for o in await bot_orders(db, bot_id)}
            mesh.kill_broker()  # the supervisor starts a new one: an empty log, the group offsets gone
            await streaming
            # Everything sent again, as a producer that cannot confirm them does: the bot's memory
            # must keep each decided signal from becoming a second order.
            for sent in list(signals.sent):
                await market.publish(sent)
            await stream(market, signals, 6)
            after_restart = [signals.client_order_id(s) for s in signals.sent[-6:]]
            await until_processed(db, market, signals)
            await quiescent(db, http, bot_id, signals.sent[-1])
            orders = await assert_books_agree(db, http, signals)
        finally:
            await db.close()
    assert before <= {o["client_order_id"] for o in orders}, "an order decided before the broker died is gone"
    assert json.loads((mesh.var / "supervisor.json").read_text())["broker"]["restarts"] >= 1
    # The engine trades on the new log: signals sent after the restart became filled orders. (At least
    # one: 1 of the 6 in one full-suite run, 2 or more in every targeted run; why the others were not
    # filled that time is not known yet: the note lists it.)
    assert [o for o in orders if o["client_order_id"] in after_restart and o["state"] == "filled"]
    filled = [o for o in orders if o["state"] == "filled"]
    assert len(filled) >= 6, [(o["side"], o["state"], o["reason_code"]) for o in orders]
