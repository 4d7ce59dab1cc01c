"""Bar published -> validated signal published, through the real services and the broker (issue 10, point 12).

``python -m bench.signal_path`` starts a mesh of real service processes (``hats up --only``: the
gateway, user-service, data-bridge, database-service, feature-engineering, ml-supervised,
ai-orchestration, pattern-validator) in a fresh var dir on offset ports, stores three days of M1
history of a bench symbol through the gateway, trains an xgboost direction model on it and promotes
it (``tests/signal_path_support.py``), then publishes the series' next bars on ``market.bars.v1``
one at a time and times each to its verdict on ``signals.validated.v1``/``signals.rejected.v1``,
stamping the hops between (feature vector, prediction, signal) on the way. Two modes: back to
back (each bar right after the previous verdict: every feed hot) and spaced (one bar just after
each multiple of ``PERIOD_S``, the services told to expect bars then, their feeds idle between:
what a live minute bar meets, ten times as often). ``make bench`` runs it last.
Target: bar -> validated signal p99 < 50 ms on the 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import platform
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench import trace_hops
from bench.mesh import admin_token, bench_credentials, pct, service_pid, start_mesh
from shared import topics
from shared.events import FeatureVector, Prediction, RejectedSignal, Signal, ValidatedSignal, encode_event
from shared.settings import PlatformSettings, SignalPathPolling
from tests.signal_path_support import Bar, RandomWalk, minute, store_history, train_and_promote

#: Ports: the matrix + this (``make bench``'s own mesh is on +12000, ``bench.features``' none).
OFFSET = 14000
PIPELINE = ("feature-engineering", "ml-supervised", "ai-orchestration", "pattern-validator")
SERVICES = ("api-gateway", "user-service", "data-bridge", "database-service", *PIPELINE)
#: Bars come on the minute in the mesh; here every 6 s so a spaced sample takes 6 s, not a minute.
PERIOD_S = 6.0
WINDOW_S = 1.0
#: The series is history (it continues the stored three days), so its bars are minutes to hours
#: old when published: pattern-validator's ``stale_data`` by the clock (60 s by default) is off.
MAX_DELAY_S = 10**9
HISTORY_DAYS = 3
SYMBOL = "BENCHPATH"
#: Bars before the timed ones: feature-engineering's warm-up from storage, the validator's
#: pattern and gap windows (20, 30 bars), the first-use costs of every process.
WARMUP_BARS = 40
#: The bench's consumer holds each fetch at most this long (the broker holds it that long, data or not).
FETCH_WAIT_MS = 2
#: Bar-free moments when bars are due, over which the cost of polling alone is measured.
POLL_PROBE_WINDOWS = 3
VERDICT_TIMEOUT_S = 5.0
HOPS = ("vector", "prediction", "signal", "verdict")


def mesh_env() -> dict[str, str]:
    """The bench's settings of the mesh, and those of the four signal-path services and the
    platform's Kafka ones that the environment sets (its own win; all are printed)."""
    prefixes = ("KAFKA_", *(service.upper().replace("-", "_") + "_" for service in PIPELINE))
    env = {
        "ML_SUPERVISED_BOOTSTRAP_SYMBOLS": "",
        "PATTERN_VALIDATOR_MAX_DELAY_S": str(MAX_DELAY_S),
    }
    for service in PIPELINE:
        prefix = service.upper().replace("-", "_") + "_"
        env[prefix + "BARS_EVERY_S"] = f"{PERIOD_S:g}"
        env[prefix + "BARS_WINDOW_S"] = f"{WINDOW_S:g}"
    return {**env, **{k: v for k, v in os.environ.items() if k.startswith(prefixes) and "SECRET" not in k}}


@dataclass
class Sample:
    """One bar's way through the mesh: when it was published, and per hop when the event was
    created in its service (``ts_init``, wall clock ns) and seen by the bench's consumer (perf s)."""

    ts_event: int
    sent_ns: int = 0
    sent: float = 0.0
    created: dict[str, int] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    verdict: str | None = None
    codes: tuple[str, ...] = ()
    #: The detail of each reason code (rejections) or note (validated).
    details: dict[str, str] = field(default_factory=dict)
    #: What became of the model in the signal: ``contributed``, ``skipped:<reason>`` or ``not expected``.
    model: str = "no signal"
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def mark(self, hop: str, created_ns: int, seen: float) -> None:
        if hop not in self.seen:  # the first of its kind (one vector, one prediction per bar here)
            self.created[hop], self.seen[hop] = created_ns, seen

    def to_verdict_ms(self) -> float:
        return (self.seen["verdict"] - self.sent) * 1000

    def created_ms(self, hop: str) -> float:
        return (self.created[hop] - self.sent_ns) / 1e6


class Watcher:
    """Reads the four topics after the bar and files each record of the bench symbol under its bar."""

    def __init__(self, servers: str) -> None:
        self.samples: dict[int, Sample] = {}
        self._consumer = AIOKafkaConsumer(
            topics.FEATURES, topics.PREDICTIONS, topics.SIGNALS, topics.SIGNALS_VALIDATED, topics.SIGNALS_REJECTED,
            bootstrap_servers=servers, auto_offset_reset="latest", fetch_max_wait_ms=FETCH_WAIT_MS,
        )  # fmt: skip

    async def start(self) -> None:
        await self._consumer.start()
        while not self._consumer.assignment():
            await asyncio.sleep(0.05)
        for tp in self._consumer.assignment():
            await self._consumer.position(tp)  # pins "latest" now, before the first bar

    async def stop(self) -> None:
        await self._consumer.stop()

    async def run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for r in records:
                    self._file(r.topic, r.value, now)

    def _file(self, topic: str, value: bytes, seen: float) -> None:
        if topic == topics.FEATURES:
            vector = FeatureVector.model_validate_json(value)
            self._mark(vector.symbol, vector.ts_event, "vector", vector.ts_init, seen)
        elif topic == topics.PREDICTIONS:
            prediction = Prediction.model_validate_json(value)
            self._mark(prediction.symbol, prediction.ts_event, "prediction", prediction.ts_init, seen)
        elif topic == topics.SIGNALS:
            sig = Signal.model_validate_json(value)
            sample = self._mark(sig.symbol, sig.ts_event, "signal", sig.ts_init, seen)
            if sample is not None:
                skipped = [f"skipped:{s.reason}" for s in sig.skipped if s.model_id is not None]
                contributed = any(c.model_id is not None for c in sig.contributions)
                sample.model = "contributed" if contributed else (skipped[0] if skipped else "not expected")
        else:
            verdict: ValidatedSignal | RejectedSignal
            if topic == topics.SIGNALS_VALIDATED:
                verdict = ValidatedSignal.model_validate_json(value)
                reasons = verdict.notes
            else:
                verdict = RejectedSignal.model_validate_json(value)
                reasons = verdict.reasons
            sample = self._mark(verdict.signal.symbol, verdict.signal.ts_event, "verdict", verdict.ts_init, seen)
            if sample is not None and sample.verdict is None:
                sample.verdict = "validated" if topic == topics.SIGNALS_VALIDATED else "rejected"
                sample.codes = tuple(r.code for r in reasons)
                sample.details = {r.code: r.detail for r in reasons}
                sample.done.set()

    def _mark(self, symbol: str, ts_event: int, hop: str, created_ns: int, seen: float) -> Sample | None:
        sample = self.samples.get(ts_event) if symbol == SYMBOL else None
        if sample is not None:
            sample.mark(hop, created_ns, seen)
        return sample


async def time_bars(
    producer: AIOKafkaProducer, watcher: Watcher, bars: Iterable[Bar], *, spaced: bool
) -> tuple[list[Sample], int]:
    """Publish ``bars`` one at a time (``spaced``: each just after the next multiple of ``PERIOD_S``,
    else right after the previous verdict); the samples with a verdict, and how many had none."""
    done, missing = [], 0
    for bar in bars:
        if spaced:  # as a bar closes on the minute: just after the period's next multiple
            await asyncio.sleep(PERIOD_S - time.time() % PERIOD_S + 0.02)
        event = bar.event(SYMBOL)
        sample = watcher.samples[event.ts_event] = Sample(event.ts_event)
        sample.sent_ns, sample.sent = time.time_ns(), time.perf_counter()
        await producer.send_and_wait(event.TOPIC, encode_event(event), key=event.partition_key())
        try:
            await asyncio.wait_for(sample.done.wait(), VERDICT_TIMEOUT_S)
            done.append(sample)
        except TimeoutError:
            missing += 1
    return done, missing


def line(values: list[float]) -> str:
    return f"p50 {pct(values, 0.5):6.1f} ms  p99 {pct(values, 0.99):6.1f} ms  max {max(values):6.1f} ms"


def report(label: str, samples: list[Sample], missing: int) -> None:
    """The figures of one mode: bar -> verdict as the bench saw it, then where the time went."""
    print(f"== bar published -> verdict published, {label}: {len(samples)} bars")
    if not samples:
        print(f"   no verdict within {VERDICT_TIMEOUT_S:g} s for any of {missing} bars")
        return
    print(f"   bar -> verdict seen by the bench:   {line([s.to_verdict_ms() for s in samples])}   (target p99 < 50 ms)")
    print("   cumulative, bar published -> event created in its service (ts_init):")
    for hop in HOPS:
        have = [s.created_ms(hop) for s in samples if hop in s.created]
        if have:
            print(f"     -> {hop:<11} {line(have)}  ({len(have)} bars)")
    print("   each hop, from the previous event's creation to this one's:")
    previous = {"vector": None, "prediction": "vector", "signal": "prediction", "verdict": "signal"}
    for hop in HOPS:
        before = previous[hop]
        have = [
            (s.created[hop] - (s.created[before] if before else s.sent_ns)) / 1e6
            for s in samples
            if hop in s.created and (before is None or before in s.created)
        ]
        if have:
            print(f"     {before or 'bar':>10} -> {hop:<11} {line(have)}")
    tail = [(s.seen["verdict"] - s.sent) * 1000 - s.created_ms("verdict") for s in samples]
    print(f"     verdict created -> seen by the bench (store, publish, broker, bench fetch): {line(tail)}")
    verdicts = collections.Counter(s.verdict for s in samples)
    codes = collections.Counter(f"{s.verdict}:{c}" for s in samples for c in s.codes)
    model = collections.Counter(s.model for s in samples)
    details = {code: detail for s in samples for code, detail in s.details.items()}
    print(
        f"   verdicts: {dict(verdicts)}; reason codes (rejections) and notes (validated): {dict(codes) or 'none'}; "
        f"the model in the signals: {dict(model)}; no verdict within "
        f"{VERDICT_TIMEOUT_S:g} s: {missing}"
    )
    for code, detail in sorted(details.items()):
        print(f"     {code}: {detail}")


def mesh_processes(mesh_pid: int, var: Path) -> dict[str, list[int]]:
    """The mesh's processes by what they run: each service, the broker, PostgreSQL (with its backends)."""
    out = {name: [service_pid(mesh_pid, name)] for name in SERVICES}
    under_mesh = {c.pid for c in psutil.Process(mesh_pid).children(recursive=True)}
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if "tansu" in cmdline and proc.info["pid"] in under_mesh:
            out["broker (Tansu)"] = [proc.info["pid"]]
        elif proc.info["name"] == "postgres" and str(var) in cmdline:
            with contextlib.suppress(psutil.Error):
                out["PostgreSQL"] = [proc.info["pid"], *(c.pid for c in proc.children(recursive=True))]
    return out


def cpu_and_wait_s(procs: dict[str, list[int]]) -> dict[str, tuple[float, float]]:
    """Per entry, the CPU seconds its threads ran and the seconds they waited for a core (runnable,
    not running: ``/proc/<pid>/task/*/schedstat``), so far."""
    out = {}
    for name, pids in procs.items():
        ran = waited = 0
        for pid in pids:
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    with contextlib.suppress(OSError):
                        run_ns, wait_ns, _ = (task / "schedstat").read_text().split()
                        ran, waited = ran + int(run_ns), waited + int(wait_ns)
        out[name] = (ran / 1e9, waited / 1e9)
    return out


async def measure(var: Path, mesh_pid: int, samples: int, spaced: int) -> list[tuple[str, int, int]]:
    """Prepare the symbol and its model, time the bars, print; returns each mode's label and its
    wall-clock span (ns), for the breakdown from the trace files once the mesh has written them."""
    settings = PlatformSettings(hats_port_offset=OFFSET)
    gateway = settings.url_of("api-gateway")
    _, market = await bench_credentials(var, gateway, name="bench-signal-path")
    admin = await admin_token(var, gateway)
    live = WARMUP_BARS + samples + spaced
    # The history ends just before the live bars, and these end before now (no bar from the future).
    start = minute(time.time()) - (HISTORY_DAYS * 1440 + live + 1) * 60
    walk = RandomWalk(start, seed=10)
    history = walk.bars(HISTORY_DAYS * 1440)
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {market}"}) as http:
        await store_history(http, gateway, SYMBOL, history)
    stored_s = time.monotonic() - started
    async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {admin}"}) as http:
        model = await train_and_promote(
            http, gateway, name="bench-signal-path", symbol=SYMBOL, start=history[0].time, end=history[-1].time
        )
    trained_s = time.monotonic() - started - stored_s
    print(
        f"   {len(history)} M1 bars of {SYMBOL} stored through the gateway in {stored_s:.1f} s; "
        f"{model['kind']} model {model['name']} v{model['version']} trained and promoted in {trained_s:.1f} s"
    )

    watcher = Watcher(settings.kafka_servers)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_servers, linger_ms=0)
    await watcher.start()
    await producer.start()
    reader = asyncio.create_task(watcher.run())
    procs = mesh_processes(mesh_pid, var)
    try:
        warm, _ = await time_bars(producer, watcher, walk.bars(WARMUP_BARS), spaced=False)
        load_before, cpu_before, wall_before = os.getloadavg(), cpu_and_wait_s(procs), time.monotonic()
        since = time.time_ns()
        rows = [("back to back", *await time_bars(producer, watcher, walk.bars(samples), spaced=False))]
        cpu_after, wall = cpu_and_wait_s(procs), time.monotonic() - wall_before
        spans = [("back to back", since, time.time_ns())]
        if spaced:
            label = f"one per {PERIOD_S:g} s (feeds idle between)"
            since = time.time_ns()
            rows.append((label, *await time_bars(producer, watcher, walk.bars(spaced), spaced=True)))
            spans.append((label, since, time.time_ns()))
        polling, polled_s = await fast_pace_without_bars(procs, POLL_PROBE_WINDOWS)
        load_after = os.getloadavg()
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await producer.stop()
        await watcher.stop()
    print(f"   warm-up: {WARMUP_BARS} bars back to back, {len(warm)} with a verdict (not counted)")
    for label, done, missing in rows:
        report(label, done, missing)
    print(
        "   per process, CPU used / time its threads waited for a core (runnable, not running), as shares of wall "
        f"time: over the back-to-back run ({wall:.1f} s) | just after {POLL_PROBE_WINDOWS} multiples of "
        f"{PERIOD_S:g} s with no bar ({polled_s:.1f} s: the feeds on their fastest pace, polling, nothing to do)"
    )
    for name in cpu_after:
        ran, waited = (after - before for after, before in zip(cpu_after[name], cpu_before[name], strict=True))
        idle_ran, idle_waited = polling[name]
        print(
            f"     {name:<20} {ran / wall:5.0%} / {waited / wall:5.0%}  |  "
            f"{idle_ran / polled_s:5.0%} / {idle_waited / polled_s:5.0%}"
        )
    print(f"   load average (1, 5, 15 min): before {_load(load_before)}, after {_load(load_after)}")
    return spans


async def fast_pace_without_bars(
    procs: dict[str, list[int]], windows: int
) -> tuple[dict[str, tuple[float, float]], float]:
    """What polling alone costs: each process's CPU and wait for a core from just after each of
    ``windows`` multiples of ``PERIOD_S`` until 0.9 s after it, with no bar sent (the feeds are on
    their fastest pace then, as the schedule says bars are due); and the seconds measured."""
    totals = dict.fromkeys(procs, (0.0, 0.0))
    measured = 0.0
    for _ in range(windows):
        await asyncio.sleep((PERIOD_S + 0.02 - time.time() % PERIOD_S) % PERIOD_S)
        before, started = cpu_and_wait_s(procs), time.monotonic()
        await asyncio.sleep(0.9)
        after = cpu_and_wait_s(procs)
        measured += time.monotonic() - started
        for name, (ran, waited) in totals.items():
            totals[name] = (ran + after[name][0] - before[name][0], waited + after[name][1] - before[name][1])
    return totals, measured


def breakdown(traces: Path, spans: list[tuple[str, int, int]]) -> None:
    """Each service's delivery, work and publish per bar, from the mesh's span files (``bench.trace_hops``)."""
    print(
        "== inside each service, from the mesh's trace spans (var/traces): delivery = input record sent -> "
        "handler starts, work = handler -> output publish starts, publish = until the broker's ack; p50 / p99 ms"
    )
    for label, since, until in spans:
        print(f"   {label}:")
        for service in trace_hops.PATH:
            found = trace_hops.hops(traces, service, since, until)
            if not found:
                print(f"     {service:<20} no spans")
                continue
            parts = "   ".join(
                f"{part} {pct(v, 0.5):5.1f} / {pct(v, 0.99):5.1f}"
                for part in trace_hops.PARTS
                for v in [[getattr(h, part) for h in found]]
            )
            print(f"     {service:<20} {parts}   ({len(found)} bars)")


def _load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def conditions(env: dict[str, str]) -> None:
    pacing = SignalPathPolling()
    platform_settings = PlatformSettings()
    print("== bar published -> validated signal published: conditions")
    print(
        f"   {os.cpu_count()} cores, load average {_load(os.getloadavg())} at start, "
        f"{platform.python_implementation()} {platform.python_version()}; bench and mesh share the machine"
    )
    print(
        f"   mesh (hats up --only, each service its own process, offset +{OFFSET}): {', '.join(SERVICES)}; embedded "
        "Tansu (memory), PostgreSQL 18, chdb in database-service; ml-deep-learning not started (no sequence "
        "model: the signal waits for the one xgboost champion, and the RSI rule)"
    )
    print(
        f"   bench process: an aiokafka producer (linger 0) publishing the bars on {topics.MARKET_BARS}, a consumer "
        f"of the vectors, predictions, signals and verdicts (fetch wait {FETCH_WAIT_MS} ms: up to that much of "
        "each 'seen' figure is the bench's own polling)"
    )
    print(
        f"   pacing of the four signal-path services: bars expected every {PERIOD_S:g} s (the mesh: 60), feeds at "
        f"{pacing.burst_fetch_max_wait_ms} ms from 0.5 s before each multiple until {WINDOW_S:g} s after it and for "
        f"{pacing.burst_s:g} s after any record, then KAFKA_FETCH_MAX_WAIT_MS="
        f"{platform_settings.kafka_fetch_max_wait_ms} ms, after {pacing.idle_after_s:g} s without a record "
        f"{pacing.idle_fetch_max_wait_ms} ms; settings " + " ".join(f"{k}={v}" for k, v in sorted(env.items()))
    )
    print(
        f"   bars: {HISTORY_DAYS} days of M1 history (random walk) stored, then the series' next bars, published "
        f"minutes to hours after their close: PATTERN_VALIDATOR_MAX_DELAY_S={env['PATTERN_VALIDATOR_MAX_DELAY_S']} "
        "(stale_data by the clock off); every other check on, with its defaults (the drift check needs "
        "PATTERN_VALIDATOR_PSI_MIN_BARS live vectors of a series, more than the bench sends)"
    )


def run(samples: int, spaced: int, keep_var: bool = False) -> None:
    """Start the mesh in a fresh var dir, measure, print, stop it and clean up (``keep_var``: leave
    the var dir, its logs and traces, and say where)."""
    env = mesh_env()
    conditions(env)
    var = Path(tempfile.mkdtemp(prefix="hats-bench-signal-path-"))
    var.chmod(0o755)
    try:
        started = time.monotonic()
        mesh = start_mesh(var, offset=OFFSET, services=",".join(SERVICES), env=env)
        try:
            print(f"   mesh up in {time.monotonic() - started:.1f} s")
            spans = asyncio.run(measure(var, mesh.pid, samples, spaced))
        finally:
            mesh.send_signal(signal.SIGTERM)
            mesh.wait(60)
        breakdown(var / "traces", spans)  # the services have flushed their spans as they stopped
    finally:
        if keep_var:
            print(f"   var dir kept: {var}")
        else:
            shutil.rmtree(var, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="bars timed back to back")
    parser.add_argument("--spaced", type=int, default=10, help=f"bars timed one per {PERIOD_S:g} s (0: none)")
    parser.add_argument("--keep-var", action="store_true", help="keep the mesh's var dir (logs, traces)")
    args = parser.parse_args()
    run(args.samples, args.spaced, args.keep_var)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
