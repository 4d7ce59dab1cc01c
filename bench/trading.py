"""Trading figures through the real services (issue 11, point 11), with the conditions they were measured in.

``python -m bench.trading`` starts a mesh of real service processes (``hats up --only``: api-gateway,
user-service, trading-engine) in a fresh var dir on offset ports, publishes BTCUSD ticks itself
(BTCUSD trades around the clock: the sessions are open whatever the day and hour), then measures:

1. validated signal -> order acknowledged: a ``signals`` bot (fixed lots) on BTCUSD on the platform's
   paper account; ``ValidatedSignal`` events published on ``signals.validated.v1`` alternate
   ``enter_long`` / ``enter_short`` (each makes one market order: open, or close the other side
   first), each timed from its publish to the first ``OrderUpdated`` on ``trading.orders.v1`` of
   its order (``attribution.signal_id``) in ``accepted``, ``partially_filled`` or ``filled``;
   back to back (each right after the previous acknowledgement) and spaced (one just after each
   multiple of ``PERIOD_S``, the engine's bot feed told to expect its inputs then);
2. ``POST /api/v1/orders`` through the gateway: open loop at fixed rates (coordinated-omission
   corrected, ``bench.loadgen``) and the closed-loop maximum, spread over ``ACCOUNTS`` paper
   accounts (one load-generator process each: the engine serialises one account's orders on its
   row lock), with the tenant's risk limits raised so the load is not refused (printed).

Targets on the 2-core machine: signal -> ack p99 < 20 ms; >= 500 orders/s with p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.loadgen import LoadResult, run_in_subprocess
from bench.mesh import admin_token, pct, service_pid, start_mesh
from shared import topics
from shared.events import Contribution, MarketTick, OrderUpdated, Signal, Timeframe, ValidatedSignal, encode_event
from shared.settings import PlatformSettings

#: Ports: the matrix + this (``make bench``'s mesh is on +12000, ``bench.signal_path``'s on +14000).
OFFSET = 15000
SERVICES = "api-gateway,user-service,trading-engine"
SYMBOL = "BTCUSD"
ACCOUNT = "paper-platform"
#: Spaced signals: one just after each multiple of this many seconds (the bot feed's schedule).
PERIOD_S = 6.0
#: Paper accounts the order load is spread over, and each one's balance (no order is refused for money).
ACCOUNTS = 4
BALANCE = "1000000000000"
TICKS_PER_S = 10
ACK_STATES = frozenset({"accepted", "partially_filled", "filled"})
ACK_TIMEOUT_S = 5.0
FETCH_WAIT_MS = 2
#: The gateway's per-client limit (2,000/s) is not what is measured.
GATEWAY_ENV = {"API_GATEWAY_RATE_LIMIT_REQUESTS": "100000"}
ENGINE_ENV = {
    "TRADING_ENGINE_DEFAULT_BOTS": "",  # no RSI bots trading BTCUSD beside the bench's own
    "TRADING_ENGINE_BARS_EVERY_S": f"{PERIOD_S:g}",
    "TRADING_ENGINE_BARS_WINDOW_S": "1",
}
#: What the order load needs of the tenant's limits: the rest stay at their defaults.
LIMITS_CHANGED = {
    "max_messages": None,  # the message-rate limit (20 per second per account) is the load itself
    "duplicate_window_s": None,  # every order of a load generator has the same body
    "max_position_lots": None,  # thousands of 0.01-lot buys add up
    "throttle_rejections": None,
}


@dataclass
class Pending:
    sent: float
    committed: float | None = None  # the order's first version (new) seen on the bus
    acked: float | None = None
    state: str | None = None
    reason_code: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    filled: asyncio.Event = field(default_factory=asyncio.Event)


class OrderWatcher:
    """Reads ``trading.orders.v1`` and files each order version under the signal it acts on."""

    def __init__(self, servers: str) -> None:
        self.pending: dict[uuid.UUID, Pending] = {}
        self._consumer = AIOKafkaConsumer(
            topics.ORDERS, bootstrap_servers=servers, auto_offset_reset="latest", fetch_max_wait_ms=FETCH_WAIT_MS
        )

    async def start(self) -> None:
        await self._consumer.start()
        while not self._consumer.assignment():
            await asyncio.sleep(0.05)
        for tp in self._consumer.assignment():
            await self._consumer.position(tp)  # pins "latest" now, before the first signal

    async def run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for r in records:
                    order = OrderUpdated.model_validate_json(r.value)
                    wait = self.pending.get(order.attribution.signal_id) if order.attribution.signal_id else None
                    if wait is None:
                        continue
                    if order.state in ("filled", "rejected", "canceled", "expired"):
                        wait.filled.set()  # over: the bot's position is what it will be
                    if wait.done.is_set():
                        continue
                    if order.version == 1:
                        wait.committed = now
                    if order.state in ACK_STATES or order.state == "rejected":
                        wait.acked, wait.state, wait.reason_code = now, order.state, order.reason_code
                        wait.done.set()

    async def stop(self) -> None:
        await self._consumer.stop()


def validated_signal(action: str, ts_ns: int) -> ValidatedSignal:
    strategy = "bench-trading"
    sig = Signal(
        event_id=uuid.uuid4(),
        ts_event=ts_ns,
        ts_init=ts_ns,
        symbol=SYMBOL,
        timeframe=Timeframe.M1,
        feature_vector_id=uuid.uuid4(),
        direction="long" if action == "enter_long" else "short",
        action=action,  # type: ignore[arg-type]
        strength=0.8,
        confidence=0.8,
        strategy=strategy,
        contributions=[
            Contribution(
                model_id=uuid.UUID(int=1),
                model_name="bench",
                model_version=1,
                model_kind="xgboost",
                score=0.5,
                weight=1,
            )
        ],
    )
    return ValidatedSignal(event_id=uuid.uuid4(), ts_event=ts_ns, ts_init=time.time_ns(), signal=sig)


async def publish_ticks(producer: AIOKafkaProducer, stop: asyncio.Event) -> int:
    """BTCUSD ticks at ``TICKS_PER_S`` around 90,000 (the paper venue fills on them) until ``stop``."""
    sent = 0
    while not stop.is_set():
        mid = Decimal(90_000) + Decimal(sent % 40 - 20)
        tick = MarketTick(
            event_id=uuid.uuid4(),
            ts_event=time.time_ns(),
            ts_init=time.time_ns(),
            symbol=SYMBOL,
            bid=mid - Decimal(5),
            ask=mid + Decimal(5),
            source="bench",
        )
        await producer.send_and_wait(tick.TOPIC, encode_event(tick), key=tick.partition_key())
        sent += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1 / TICKS_PER_S)
    return sent


async def time_signals(
    producer: AIOKafkaProducer, watcher: OrderWatcher, n: int, first_minute: int, *, spaced: bool
) -> tuple[list[Pending], int]:
    """Publish ``n`` signals, each on its own minute of event time (the bot's duplicate fingerprint is
    per minute), each once the previous order is over (filled: the bot's position moved); the
    acknowledged ones, and how many were not. Long, short, short, long, ...: from flat each signal
    makes one order (open long, close it, open short, close it)."""
    done, missing = [], 0
    for i in range(n):
        if spaced:
            await asyncio.sleep(PERIOD_S - time.time() % PERIOD_S + 0.02)
        minute = first_minute + i
        action = "enter_long" if (i + 1) // 2 % 2 == 0 else "enter_short"
        event = validated_signal(action, minute * 60_000_000_000)
        wait = watcher.pending[event.signal.event_id] = Pending(time.perf_counter())
        watcher.pending[event.event_id] = wait
        await producer.send_and_wait(event.TOPIC, encode_event(event), key=event.partition_key())
        try:
            await asyncio.wait_for(wait.done.wait(), ACK_TIMEOUT_S)
        except TimeoutError:
            missing += 1
            continue
        done.append(wait)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wait.filled.wait(), ACK_TIMEOUT_S)  # not timed
    return done, missing


def line(values: list[float]) -> str:
    return f"p50 {pct(values, 0.5):6.1f} ms  p99 {pct(values, 0.99):6.1f} ms  max {max(values):6.1f} ms"


def report_signals(label: str, done: list[Pending], missing: int) -> None:
    print(f"== validated signal published -> order acknowledged on {topics.ORDERS}, {label}: {len(done)} signals")
    acked = [p for p in done if p.state in ACK_STATES]
    if not acked:
        print(f"   none acknowledged within {ACK_TIMEOUT_S:g} s ({missing} missing, {len(done)} rejected)")
        return
    assert all(p.acked is not None for p in acked)
    print(f"   signal -> ack:               {line([(p.acked - p.sent) * 1000 for p in acked])}  (target p99 < 20 ms)")  # type: ignore[operator]
    committed = [(p.committed - p.sent) * 1000 for p in acked if p.committed is not None]
    if committed:
        print(f"   signal -> order stored (v1): {line(committed)}")
    states: dict[str, int] = {}
    for p in done:
        name = f"{p.state}:{p.reason_code}" if p.reason_code else str(p.state)
        states[name] = states.get(name, 0) + 1
    print(f"   acknowledging states: {states}; no answer within {ACK_TIMEOUT_S:g} s: {missing}")


async def signal_to_ack(http: httpx.AsyncClient, servers: str, samples: int, spaced: int) -> None:
    r = await http.post(
        "/api/v1/bots",
        json={
            "account_id": ACCOUNT,
            "symbol": SYMBOL,
            "strategy": "signals",
            "config": {"sizing": "fixed_lots", "lots": "0.01", "dedup_window_s": 1},
            "start": True,
        },
    )
    r.raise_for_status()
    watcher = OrderWatcher(servers)
    producer = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=0)
    await watcher.start()
    await producer.start()
    reader = asyncio.create_task(watcher.run())
    # Event time of the signals: consecutive minutes ending before now (none from the future).
    minute = int(time.time() // 60) - (samples + spaced + 40)
    try:
        warm, _ = await time_signals(producer, watcher, 10, minute, spaced=False)
        print(f"   warm-up: 10 signals back to back, {len(warm)} acknowledged (not counted)")
        load = os.getloadavg()
        rows = [("back to back", *await time_signals(producer, watcher, samples, minute + 10, spaced=False))]
        if spaced:
            label = f"one per {PERIOD_S:g} s (the bot feed idle between)"
            rows.append((label, *await time_signals(producer, watcher, spaced, minute + 10 + samples, spaced=True)))
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await producer.stop()
        await watcher.stop()
    for label, done, missing in rows:
        report_signals(label, done, missing)
    print(f"   load average (1, 5, 15 min) before: {_load(load)}, after: {_load(os.getloadavg())}")


async def order_load(
    http: httpx.AsyncClient, gateway: str, token: str, args: Options, procs: dict[str, list[int]]
) -> None:
    accounts = []
    for i in range(ACCOUNTS):
        r = await http.post("/api/v1/accounts", json={"venue": "paper", "name": f"bench {i}", "balance": BALANCE})
        r.raise_for_status()
        accounts.append(r.json()["id"])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def body(account: str) -> bytes:
        order = {"account_id": account, "symbol": SYMBOL, "side": "buy", "type": "market", "quantity": "0.01"}
        return json.dumps(order).encode()

    async def run(kind: str, **kw: Any) -> tuple[LoadResult, list[LoadResult]]:
        drained = await drain(http)
        states_before = await order_states(http)
        cpu_before = {name: cpu_seconds(pids) for name, pids in procs.items()}
        runs = await asyncio.gather(
            *(
                asyncio.to_thread(
                    run_in_subprocess,
                    kind,
                    url=gateway + "/api/v1/orders",
                    method="POST",
                    headers=headers,
                    body=body(a),
                    duration_s=args.duration,
                    warmup_s=1.0,
                    **kw,
                )
                for a in accounts
            )
        )
        cpu = {name: cpu_seconds(pids) - cpu_before[name] for name, pids in procs.items()}
        states = {k: v - states_before.get(k, 0) for k, v in (await order_states(http)).items()}
        pooled = LoadResult.pooled(runs)
        answered = max(1, pooled.requests)
        offered = f"{kw['rate'] * ACCOUNTS:g}/s " if "rate" in kw else ""
        print(
            f"   {kind.replace('_', ' ')} {offered}"
            f"-> {sum(r.achieved_rps for r in runs):,.0f} orders/s, p50 {pooled.p50_ms:.1f} ms  "
            f"p99 {pooled.p99_ms:.1f} ms  max {pooled.max_ms:.1f} ms; status {pooled.status_counts}, "
            f"errors {pooled.errors}; orders by state now (+ since the run began): "
            f"{ {k: v for k, v in states.items() if v} }"
        )
        print(
            "     CPU per answered order (warm-up and backlog included): "
            + ", ".join(f"{name} {seconds / answered * 1e3:.2f} ms" for name, seconds in cpu.items())
            + f"; before the run, {drained:.1f} s until no order was pending_submit"
        )
        return pooled, runs

    print(
        f"== POST /api/v1/orders through the gateway: market buys of 0.01 {SYMBOL}, {ACCOUNTS} paper accounts "
        f"(one load generator each), {args.duration:g} s per run after 1 s of warm-up; "
        f"load average {_load(os.getloadavg())}"
    )
    for rate in args.rates:
        await run("fixed_rate", rate=rate / ACCOUNTS, connections=max(4, int(rate / ACCOUNTS / 10)))
    await run("closed_loop", connections=args.closed_connections)
    print(
        f"   (fixed rate: open loop, latency from each request's scheduled time; closed loop: "
        f"{args.closed_connections} connections per account; target >= 500 orders/s with p99 < 50 ms)"
    )
    print(f"   load average (1, 5, 15 min) after: {_load(os.getloadavg())}")


async def drain(http: httpx.AsyncClient, limit_s: float = 60) -> float:
    """Wait (up to ``limit_s``) until no order is ``pending_submit`` (the previous run's backlog of
    venue reports applied), so each run starts on an engine at rest; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        r = await http.get("/api/v1/orders", params={"state": "pending_submit", "limit": 1})
        if r.json()["total"] == 0:
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - started


def processes(mesh_pid: int, var: Path) -> dict[str, list[int]]:
    """The mesh's gateway and engine processes, and PostgreSQL's (its backends included)."""
    out = {name: [service_pid(mesh_pid, name)] for name in ("api-gateway", "trading-engine")}
    out["PostgreSQL"] = [
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres" and str(var) in " ".join(p.info["cmdline"] or ())
    ]
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` and their children so far."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            for p in (proc, *proc.children(recursive=True)):
                times = p.cpu_times()
                total += times.user + times.system
    return total


async def order_states(http: httpx.AsyncClient) -> dict[str, int]:
    out = {}
    for state in ("pending_submit", "accepted", "filled", "rejected", "unknown"):
        out[state] = (await http.get("/api/v1/orders", params={"state": state, "limit": 1})).json()["total"]
    return out


async def measure(var: Path, args: Options, procs: dict[str, list[int]]) -> None:
    settings = PlatformSettings(hats_port_offset=OFFSET)
    gateway = settings.url_of("api-gateway")
    token = await admin_token(var, gateway)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_servers, linger_ms=0)
    await producer.start()
    stop = asyncio.Event()
    ticks = asyncio.create_task(publish_ticks(producer, stop))
    try:
        async with httpx.AsyncClient(
            base_url=gateway, timeout=30, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            current = (await http.get("/api/v1/risk/limits")).json()["limits"]
            r = await http.put(
                "/api/v1/risk/limits", json={"limits": {**current, **LIMITS_CHANGED}, "reason": "bench.trading"}
            )
            r.raise_for_status()
            r = await http.post("/api/v1/accounts", json={"venue": "paper", "name": "bench probe", "balance": BALANCE})
            r.raise_for_status()
            await _wait_for_price(http, r.json()["id"])
            print(f"   tenant risk limits changed: {LIMITS_CHANGED} (None: that check off); the rest at their defaults")
            if args.signals:
                await signal_to_ack(http, settings.kafka_servers, args.signals, args.spaced)
            if args.rates or args.closed_connections:
                await order_load(http, gateway, token, args, procs)
    finally:
        stop.set()
        sent = await ticks
        await producer.stop()
    print(f"   {sent} {SYMBOL} ticks published at {TICKS_PER_S}/s over the run")


async def _wait_for_price(http: httpx.AsyncClient, account: str) -> None:
    """Until the engine has seen a tick it has no price to reserve a market order at (``account``: not
    the bot's, whose position must start flat)."""
    order = {"account_id": account, "symbol": SYMBOL, "side": "buy", "type": "market", "quantity": "0.01"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = await http.post("/api/v1/orders", json=order)
        if r.status_code == 201 and r.json()["reason_code"] != "no_reference_price":
            return
        await asyncio.sleep(0.2)
    raise SystemExit("the engine never had a BTCUSD price")


def _load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def run(args: Options) -> None:
    print("== trading: conditions")
    print(
        f"   {os.cpu_count()} cores, load average {_load(os.getloadavg())} at start, "
        f"{platform.python_implementation()} {platform.python_version()}; bench, load generators and mesh share "
        "the machine"
    )
    print(
        f"   mesh (hats up --only, offset +{OFFSET}): {SERVICES}; embedded Tansu (memory), PostgreSQL 18; the paper "
        f"venue in trading-engine (defaults: 50 ms to the first tick an order may fill on); settings "
        + " ".join(f"{k}={v}" for k, v in {**GATEWAY_ENV, **ENGINE_ENV}.items())
    )
    var = Path(tempfile.mkdtemp(prefix="hats-bench-trading-"))
    var.chmod(0o755)
    try:
        started = time.monotonic()
        mesh = start_mesh(var, offset=OFFSET, services=SERVICES, env={**GATEWAY_ENV, **ENGINE_ENV})
        try:
            print(f"   mesh up in {time.monotonic() - started:.1f} s")
            asyncio.run(measure(var, args, processes(mesh.pid, var)))
        finally:
            mesh.send_signal(signal.SIGTERM)
            mesh.wait(60)
    finally:
        if args.keep_var:
            print(f"   var dir kept: {var}")
        else:
            shutil.rmtree(var, ignore_errors=True)


@dataclass(frozen=True)
class Options:
    """What to run: signals timed back to back and spaced (0: none), the fixed order rates, the
    closed loop's connections per account (0: none), seconds per order-load run, keep the var dir."""

    signals: int = 200
    spaced: int = 10
    rates: tuple[float, ...] = (100, 250, 500)
    closed_connections: int = 8
    duration: float = 10
    keep_var: bool = False

    @classmethod
    def of(cls, args: argparse.Namespace, prefix: str = "") -> Options:
        names = ("signals", "spaced", "rates", "closed_connections", "duration", "keep_var")
        values = {n: getattr(args, prefix + n) for n in names if hasattr(args, prefix + n)}
        return cls(**{**values, "rates": tuple(values.get("rates", cls.rates))})


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, prefix: str = "") -> None:
    """The options of ``Options`` as ``--<prefix>signals`` etc."""
    d = Options()
    parser.add_argument(f"--{prefix}signals", type=int, default=d.signals, help="signals timed back to back")
    parser.add_argument(f"--{prefix}spaced", type=int, default=d.spaced, help=f"signals timed one per {PERIOD_S:g} s")
    parser.add_argument(
        f"--{prefix}rates", type=float, nargs="*", default=list(d.rates), help="fixed order rates, orders/s"
    )
    parser.add_argument(
        f"--{prefix}closed-connections", type=int, default=d.closed_connections, help="per account (0: no closed loop)"
    )
    parser.add_argument(f"--{prefix}duration", type=float, default=d.duration, help="seconds per order-load run")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--keep-var", action="store_true", help="keep the mesh's var dir (logs, traces)")
    run(Options.of(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
