"""``make bench``: the figures of the market-data path, with the conditions they were measured in.

Starts its own mesh (the server side: api-gateway, user-service, data-bridge and
database-service, on the embedded broker, PostgreSQL and chdb) in a fresh ``var``
directory on offset ports, then measures:

1. tick ingest throughput: ticks/s from the first POST to data-bridge until every
   tick is a row in ClickHouse (``/api/v1/market/stats``);
2. tick -> bar-published latency: from posting the tick that completes a bar
   to that bar arriving on ``market.bars.v1`` (a consumer in this process);
3. authenticated ``GET /api/v1/market/bars`` (limit 100) at 64 connections, direct
   and through the gateway: latency at a fixed 1,500 requests/s (open loop,
   coordinated-omission corrected) in alternating rounds, pooled per path, and the
   closed-loop maximum in alternating rounds too, from a separate load-generator process;
   the gateway's latency overhead, its closed-loop throughput as a share of direct, and
   its CPU per proxied request (from /proc);
4. token issuance (client_credentials) per second;
5. after the mesh has stopped, bar published -> validated signal published p50/p99 through the
   real services and the broker (``bench.signal_path``: a mesh of its own with the intelligence
   services, a model trained and promoted, bars published one at a time);
6. then validated signal -> order acknowledged on the paper venue, and sustained orders/s through
   ``POST /api/v1/orders`` via the gateway (``bench.trading``: a mesh of its own, api-gateway,
   user-service and trading-engine).

Before the mesh starts, in this process: feature update per closed bar (``bench/features.py``),
single-row inference of each model kind (``bench/tree_inference.py``, ``bench/deep_inference.py``),
the pre-trade risk gate per order (``bench/risk_gate.py``), the paper venue on the embedded
PostgreSQL (``bench/paper_venue.py``) and the order manager's cost and round trips per order
(``bench/order_path.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer

from bench import deep_inference, features, order_path, paper_venue, risk_gate, signal_path, trading, tree_inference
from bench.loadgen import LoadResult, run_in_subprocess
from bench.mesh import bench_credentials, pct, service_pid, start_mesh
from bench.synthetic import synthetic_ticks
from shared import topics
from shared.events import MarketBar
from shared.settings import PlatformSettings

#: Ports of the bench mesh: the matrix + this, 20000-21092, below Linux's ephemeral range (32768+)
#: where an outgoing connection could hold one, and clear of `make run` (8000+) and the tests (28000+).
OFFSET = 12000
SERVER_SIDE = "api-gateway,user-service,data-bridge,database-service"
#: The closed-loop run through the gateway goes past the default per-client limit (2,000/s) on purpose,
#: and the token-issuance run past the per-client token quota (60 a minute).
GATEWAY_ENV = {"API_GATEWAY_RATE_LIMIT_REQUESTS": "100000", "API_GATEWAY_TOKEN_REQUESTS_PER_CLIENT": "100000000"}
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _ticks_written(http: httpx.AsyncClient, db: str) -> int:
    """Tick rows whose INSERT into ClickHouse completed, from database-service's /metrics.

    Cheap to poll, unlike ``/stats`` (a ``count() ... FINAL`` that would compete with
    the inserts for the ClickHouse thread); ``/stats`` confirms the total at the end.
    """
    for line in (await http.get(db + "/metrics")).text.splitlines():
        if line.startswith('market_rows_stored_total{table="ticks"}'):
            return int(float(line.split()[-1]))
    return 0


async def ingest_throughput(
    http: httpx.AsyncClient, bridge: str, db: str, total: int, batch: int, senders: int
) -> tuple[float, float]:
    symbols = [f"BENCH{i}" for i in range(8)]
    per_symbol = total // len(symbols)
    ticks = [t for i, s in enumerate(symbols) for t in synthetic_ticks(s, BASE_MS, per_symbol, step_ms=400, seed=i)]
    ticks.sort(key=lambda t: t["time_msc"])
    batches = [ticks[i : i + batch] for i in range(0, len(ticks), batch)]
    queue: asyncio.Queue = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)
    stored_before = (await http.get(db + "/api/v1/market/stats")).json()["ticks"]
    written_before = await _ticks_written(http, db)

    async def sender() -> None:
        while not queue.empty():
            body = queue.get_nowait()
            r = await http.post(bridge + "/api/v1/ingest/ticks", json={"source": "bench", "ticks": body})
            if r.status_code != 202:
                raise SystemExit(f"ingest failed: {r.status_code} {r.text}")

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    accepted_at = time.perf_counter()
    while await _ticks_written(http, db) < written_before + len(ticks):
        await asyncio.sleep(0.01)
    stored_at = time.perf_counter()
    stored = (await http.get(db + "/api/v1/market/stats")).json()["ticks"] - stored_before
    if stored != len(ticks):
        raise SystemExit(f"ClickHouse holds {stored} of the {len(ticks)} ticks sent")
    return len(ticks) / (stored_at - started), len(ticks) / (accepted_at - started)


async def bar_latency(http: httpx.AsyncClient, bridge: str, servers: str, samples: int) -> list[float]:
    """Each posted tick is 62 s after the previous one: with the default 2 s lateness its
    watermark passes the end of the previous tick's minute, so it completes exactly one M1 bar."""
    # The measuring consumer polls every 5 ms (see kafka_fetch_max_wait_ms): at most that much is ours.
    consumer = AIOKafkaConsumer(
        topics.MARKET_BARS, bootstrap_servers=servers, auto_offset_reset="latest", fetch_max_wait_ms=5
    )
    await consumer.start()
    await consumer.seek_to_end()
    await asyncio.sleep(1)
    latencies: list[float] = []
    base = BASE_MS + 40 * 86_400_000
    try:
        for i in range(samples + 1):
            tick = synthetic_ticks("BENCHLAT", base + i * 62_000, 1, seed=i)[0]
            tick["time_msc"] = base + i * 62_000
            sent = time.perf_counter()
            r = await http.post(bridge + "/api/v1/ingest/ticks", json={"source": "bench", "ticks": [tick]})
            r.raise_for_status()
            if i == 0:
                continue
            while True:
                record = await asyncio.wait_for(consumer.getone(), 10)
                bar = MarketBar.model_validate_json(record.value)
                if bar.symbol == "BENCHLAT" and bar.timeframe.value == "M1":
                    latencies.append((time.perf_counter() - sent) * 1000)
                    break
    finally:
        await consumer.stop()
    return latencies


async def measure(args: argparse.Namespace, var: Path, mesh_pid: int) -> None:
    settings = PlatformSettings(hats_port_offset=OFFSET)
    bridge, db = settings.url_of("data-bridge"), settings.url_of("database-service")
    gateway = settings.url_of("api-gateway")
    bench_client, token = await bench_credentials(var, gateway)
    print("== conditions")
    print(
        f"   {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}; load generator and mesh share this machine"
    )
    print(
        f"   mesh: {SERVER_SIDE.replace(',', ' + ')}, embedded Tansu (memory), PostgreSQL 18 (unix socket), "
        "chdb; every request carries an access token that the service verifies"
    )
    print(
        f"   defaults: tracing on (spans to var/traces: every write and bus event; HTTP reads "
        f"{settings.hats_trace_reads_per_s:g}/s per service, then {settings.hats_trace_read_ratio:.0%}), "
        f"KAFKA_FETCH_MAX_WAIT_MS={settings.kafka_fetch_max_wait_ms}, log level WARNING"
    )
    async with httpx.AsyncClient(
        timeout=60, limits=httpx.Limits(max_connections=16), headers={"Authorization": f"Bearer {token}"}
    ) as http:
        print(f"== tick ingest: {args.ticks} ticks, 8 symbols, batches of {args.batch}, {args.senders} senders")
        end_to_end, accepted = await ingest_throughput(http, bridge, db, args.ticks, args.batch, args.senders)
        print(f"   accepted by data-bridge (on the bus): {accepted:,.0f} ticks/s")
        print(f"   end to end, data-bridge input -> rows in ClickHouse: {end_to_end:,.0f} ticks/s  (target >= 20,000)")

        print(f"== tick -> bar published: {args.samples} M1 bars, one completing tick each")
        lat = await bar_latency(http, bridge, settings.kafka_servers, args.samples)
        print(
            f"   p50 {statistics.median(lat):.1f} ms  p99 {pct(lat, 0.99):.1f} ms  max {max(lat):.1f} ms  "
            "(includes the HTTP POST of the tick; target p99 < 50 ms)"
        )

    path = "/api/v1/market/bars?symbol=BENCH0&timeframe=M1&limit=100"
    headers = {"Authorization": f"Bearer {token}"}
    bases = {"direct to database-service": db, "through the gateway": gateway}
    print(f"== GET {path} (authenticated), 64 connections")
    print(
        f"   fixed rate {args.rate:,.0f}/s, {args.rounds} rounds of {args.duration:.0f} s, direct and through the "
        "gateway alternating (both see the same machine), percentiles over all rounds' requests:"
    )
    fixed: dict[str, list] = {where: [] for where in bases}
    for round_no in range(1, args.rounds + 1):
        for where, base in bases.items():
            fixed[where].append(
                await asyncio.to_thread(
                    run_in_subprocess,
                    "fixed_rate",
                    url=base + path,
                    rate=args.rate,
                    connections=64,
                    duration_s=args.duration,
                    warmup_s=2.0,
                    headers=headers,
                )
            )
        print(
            f"   round {round_no}: p99 direct {fixed['direct to database-service'][-1].p99_ms:.2f} ms, "
            f"through the gateway {fixed['through the gateway'][-1].p99_ms:.2f} ms"
        )
    pooled = {where: LoadResult.pooled(runs) for where, runs in fixed.items()}
    # Closed loop, also in alternating rounds: throughput through the gateway as a share of
    # direct, and what each request costs the gateway's and database-service's processes
    # (user + system CPU from /proc, divided by the requests they served, warm-up included).
    procs = {
        "api-gateway": service_pid(mesh_pid, "api-gateway"),
        "database-service": service_pid(mesh_pid, "database-service"),
    }
    closed: dict[str, list] = {where: [] for where in bases}
    cpu_us: dict[str, dict[str, list[float]]] = {where: {name: [] for name in procs} for where in bases}
    for round_no in range(1, args.rounds + 1):
        for where, base in bases.items():
            before = {name: cpu_seconds(pid) for name, pid in procs.items()}
            run = await asyncio.to_thread(
                run_in_subprocess,
                "closed_loop",
                url=base + path,
                connections=64,
                duration_s=args.duration,
                warmup_s=1.0,
                headers=headers,
            )
            served = max(1.0, run.requests + 1.0 * run.achieved_rps)
            for name, pid in procs.items():
                cpu_us[where][name].append((cpu_seconds(pid) - before[name]) / served * 1e6)
            closed[where].append(run)
        d, g = closed["direct to database-service"][-1], closed["through the gateway"][-1]
        print(
            f"   closed-loop round {round_no}: direct {d.achieved_rps:,.0f}/s, through the gateway "
            f"{g.achieved_rps:,.0f}/s (ratio {g.achieved_rps / d.achieved_rps:.2f}), gateway CPU "
            f"{cpu_us['through the gateway']['api-gateway'][-1]:.0f} us per proxied request"
        )
    closed_pooled = {where: LoadResult.pooled(runs) for where, runs in closed.items()}
    for where in bases:
        print(f"   {where}, fixed rate {args.rate:,.0f}/s: {pooled[where].summary()}")
        print(f"   {where}, closed loop (max, {args.rounds} rounds): {closed_pooled[where].summary()}")
    print("   targets: direct p99 < 20 ms at >= 1,500/s; through the gateway p99 < 25 ms at >= 1,500/s")
    direct, proxied = pooled["direct to database-service"], pooled["through the gateway"]
    print(
        f"   gateway overhead at {args.rate:,.0f}/s: p50 {proxied.p50_ms - direct.p50_ms:+.2f} ms, "
        f"p99 {proxied.p99_ms - direct.p99_ms:+.2f} ms  (target p99 < 5 ms)"
    )
    ratio = closed_pooled["through the gateway"].achieved_rps / closed_pooled["direct to database-service"].achieved_rps
    gateway_cpu = cpu_us["through the gateway"]["api-gateway"]
    db_direct, db_proxied = (
        cpu_us["direct to database-service"]["database-service"],
        cpu_us["through the gateway"]["database-service"],
    )
    print(
        f"   closed-loop throughput through the gateway / direct: {ratio:.2f}  (target >= 0.70; "
        f"{args.rounds} alternating rounds of {args.duration:.0f} s, 64 connections each)"
    )
    print(
        f"   gateway CPU per proxied request: {statistics.mean(gateway_cpu):.0f} us  (target <= 200; rounds "
        f"{', '.join(f'{x:.0f}' for x in gateway_cpu)}; user+system from /proc over the closed-loop runs, "
        "background work included)"
    )
    print(
        f"   database-service CPU per request: direct {statistics.mean(db_direct):.0f} us, behind the gateway "
        f"{statistics.mean(db_proxied):.0f} us"
    )
    # The issue's own measure of what the gateway adds: the machine's CPU per request through
    # it minus direct, from the closed-loop rates (both paths keep the cores busy).
    cores = os.cpu_count() or 1
    added = (
        cores
        * 1e6
        * (
            1 / closed_pooled["through the gateway"].achieved_rps
            - 1 / closed_pooled["direct to database-service"].achieved_rps
        )
    )
    print(
        f"   CPU the gateway adds per request, from the closed-loop rates ({cores} cores / rate through it "
        f"- {cores} cores / rate direct): {added:.0f} us  (target <= 200)"
    )

    print(
        f"== token issuance: client_credentials at {gateway}/oauth2/token, {args.token_senders} concurrent, "
        f"{args.duration:.0f} s"
    )
    rate, lat = await token_issuance(gateway, bench_client, args.token_senders, args.duration)
    print(
        f"   {rate:,.1f} tokens/s  p50 {statistics.median(lat):.1f} ms  p99 {pct(lat, 0.99):.1f} ms  "
        "(one client asking repeatedly: its secret's argon2id verify (~0.1 s) is paid once, then remembered "
        "for 5 min as a keyed hash)"
    )


async def token_issuance(gateway: str, client: dict, senders: int, duration_s: float) -> tuple[float, list[float]]:
    latencies: list[float] = []
    deadline = time.perf_counter() + duration_s
    async with httpx.AsyncClient(timeout=30) as http:

        async def one_sender() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                r = await http.post(
                    gateway + "/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    auth=(client["client_id"], client["client_secret"]),
                )
                if r.status_code != 200:
                    raise SystemExit(f"token request failed: {r.status_code} {r.text}")
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(one_sender() for _ in range(senders)))
        return len(latencies) / (time.perf_counter() - started), latencies


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1500)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternating fixed-rate rounds per path")
    parser.add_argument("--token-senders", type=int, default=4)
    parser.add_argument("--feature-bars", type=int, default=5000)
    parser.add_argument(
        "--signal-samples", type=int, default=200, help="bars timed back to back by bench.signal_path (0: skip)"
    )
    parser.add_argument("--signal-spaced", type=int, default=10, help="bars timed one per 6 s by bench.signal_path")
    parser.add_argument("--no-trading", action="store_true", help="skip bench.trading's mesh")
    trading_args = parser.add_argument_group("bench.trading")
    trading.add_arguments(trading_args, prefix="trading-")
    args = parser.parse_args()
    # In this process, before the mesh takes the cores.
    features.report(args.feature_bars)
    tree_inference.report()
    deep_inference.report()
    risk_gate.report()
    paper_venue.report()
    order_path.report()
    var = Path(tempfile.mkdtemp(prefix="hats-bench-"))
    var.chmod(0o755)
    mesh = start_mesh(var, offset=OFFSET, services=SERVER_SIDE, env=GATEWAY_ENV)
    try:
        asyncio.run(measure(args, var, mesh.pid))
    finally:
        mesh.send_signal(signal.SIGTERM)
        mesh.wait(60)
        shutil.rmtree(var, ignore_errors=True)
    if args.signal_samples:
        # On a mesh of its own, once this one no longer shares the cores.
        signal_path.run(args.signal_samples, args.signal_spaced)
    if not args.no_trading:
        trading.run(trading.Options.of(args, prefix="trading_"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
