"""Feature vector published -> signal published -> verdict published, through the real broker.

``python -m bench.signals [--samples N]`` starts its own embedded broker and PostgreSQL (in a
fresh directory, on the bench's offset ports), runs ai-orchestration and pattern-validator
in this process on them, and times, per bar: the bar and its feature vector published, one
fake champion's prediction published right after (a quick member set: one model that answers
at once, plus the RSI rule), the ``Signal`` seen on ``signals.v1`` and the verdict seen on
``signals.validated.v1``/``signals.rejected.v1``. ``make bench`` runs it last
(``--signal-samples``). Prints p50/p99 of both hops with the
conditions. Target (issue 10): bar -> validated signal p99 < 50 ms; this measures the part from
the feature vector on (the lead extends it to the bar once feature-engineering and the models run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from infra import kafka, postgres
from services.ai_orchestration.catalog import Champion
from services.ai_orchestration.service import definition as orchestration
from services.ai_orchestration.settings import AiOrchestrationSettings
from services.pattern_validator.psi import NoDistributions
from services.pattern_validator.service import definition as validator
from services.pattern_validator.settings import PatternValidatorSettings
from shared import topics
from shared.bus.broker import ensure_topics
from shared.events import (
    Event,
    FeatureVector,
    MarketBar,
    Prediction,
    Timeframe,
    bar_event_id,
    encode_event,
    feature_vector_id,
    now_ns,
    prediction_id,
)
from shared.settings import PlatformSettings

OFFSET = 12500
M1 = Timeframe.M1
#: The spaced bars come one per ``SPACED_PERIOD_S``, just after each multiple of it, with the services
#: told to expect them then (``bars_every_s``) for ``SPACED_WINDOW_S``: as the mesh's bars come on
#: the minute, but 10 times as often, and the feeds idle (200 ms polls) between two of them.
SPACED_PERIOD_S = 6.0
SPACED_WINDOW_S = 1.0
MODEL = Champion(uuid.UUID(int=1), "bench-model", 1, "xgboost")


class OneModel:
    async def champions(self, symbol: str, timeframe: Timeframe) -> Sequence[Champion]:
        return (MODEL,)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def inputs(symbol: str, i: int, t0: int) -> tuple[MarketBar, FeatureVector, Prediction]:
    t = t0 + i * M1.nanos
    price = Decimal("1.1000") + Decimal(i % 7) / 10_000
    bar = MarketBar(
        event_id=bar_event_id(symbol, M1, t), ts_event=t, ts_init=now_ns(), symbol=symbol, timeframe=M1,
        open=price, high=price + Decimal("0.0005"), low=price - Decimal("0.0005"), close=price, volume=20,
    )  # fmt: skip
    vector = FeatureVector(
        event_id=feature_vector_id(symbol, M1, t, "core-1"), ts_event=t, ts_init=now_ns(), symbol=symbol,
        timeframe=M1, bar_event_id=bar.event_id, feature_set="core-1",
        features={"rsi_14": 25.0 + (i * 13) % 50, "adx_14": 22.0, "natr_14": 0.05, "close": 1.1, "ema_50": 1.0},
    )  # fmt: skip
    prediction = Prediction(
        event_id=prediction_id(MODEL.model_id, vector.event_id), ts_event=t, ts_init=now_ns(), symbol=symbol,
        timeframe=M1, feature_vector_id=vector.event_id, model_id=MODEL.model_id, model_name=MODEL.name,
        model_version=1, model_kind=MODEL.kind, task="direction", horizon_bars=1, score=0.4 if i % 2 else -0.4,
    )  # fmt: skip
    return bar, vector, prediction


async def measure(settings: PlatformSettings, samples: int, spaced: int) -> None:
    from tests.intelligence_support import new_key, running  # the apps in-process, as the tests run them

    key = new_key()
    orch_settings = AiOrchestrationSettings(
        signal_timeframes=[M1], rsi_maturity_bars=5, bars_every_s=SPACED_PERIOD_S, bars_window_s=SPACED_WINDOW_S
    )
    # Bars of the past: staleness by the clock is not timed.
    val_settings = PatternValidatorSettings(
        max_delay_s=10**9, bars_every_s=SPACED_PERIOD_S, bars_window_s=SPACED_WINDOW_S
    )
    servers = settings.kafka_servers
    async with (
        running(orchestration(lambda rt: OneModel()), settings, orch_settings, key),
        running(validator(lambda rt: NoDistributions()), settings, val_settings, key),
    ):
        producer = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=0)
        consumer = AIOKafkaConsumer(
            topics.SIGNALS, topics.SIGNALS_VALIDATED, topics.SIGNALS_REJECTED,
            bootstrap_servers=servers, auto_offset_reset="latest", fetch_max_wait_ms=5,
        )  # fmt: skip
        await producer.start()
        await consumer.start()
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        for tp in consumer.assignment():
            await consumer.position(tp)
        symbol = "BENCH" + uuid.uuid4().hex[:4].upper()
        t0 = (time.time_ns() // M1.nanos - samples - spaced - 30) * M1.nanos
        verdicts = {"validated": 0, "rejected": 0}

        async def send(*events: Event) -> None:
            for e in events:
                await producer.send(e.TOPIC, encode_event(e), key=e.partition_key())
            await producer.flush()

        async def timed(first: int, count: int, spaced: bool) -> tuple[list[float], list[float]]:
            """Bars ``first``.. one at a time (``spaced``: on the period's grid); ms to the signal and verdict."""
            to_signal, to_verdict = [], []
            for i in range(first, first + count):
                if spaced:  # just after the next multiple of the period, as a bar closes on the minute
                    await asyncio.sleep(SPACED_PERIOD_S - time.time() % SPACED_PERIOD_S + 0.02)
                bar, vector, prediction = inputs(symbol, i, t0)
                await send(bar)
                start = time.perf_counter()
                await send(vector, prediction)
                signal_at = verdict_at = None
                while verdict_at is None:
                    batch = await consumer.getmany(timeout_ms=2000)
                    if not batch:
                        raise SystemExit(f"no signal/verdict for bar {i} within 2 s")
                    now = time.perf_counter()
                    for records in batch.values():
                        for r in records:
                            if r.topic == topics.SIGNALS and signal_at is None:
                                signal_at = now
                            elif r.topic != topics.SIGNALS:
                                verdict_at = now
                                verdicts["validated" if r.topic == topics.SIGNALS_VALIDATED else "rejected"] += 1
                to_signal.append(((signal_at or verdict_at) - start) * 1000)
                to_verdict.append((verdict_at - start) * 1000)
            return to_signal, to_verdict

        await timed(0, 20, False)  # the first ones warm up connections and caches
        rows = [("back to back", samples, await timed(20, samples, False))]
        if spaced:
            label = f"one per {SPACED_PERIOD_S:.0f} s, feeds idle between"
            rows.append((label, spaced, await timed(20 + samples, spaced, True)))
        await consumer.stop()
        await producer.stop()
    for label, count, (to_signal, to_verdict) in rows:
        hop1 = f"p50 {pct(to_signal, 0.5):6.1f} ms   p99 {pct(to_signal, 0.99):6.1f} ms"
        hop2 = f"p50 {pct(to_verdict, 0.5):6.1f} ms   p99 {pct(to_verdict, 0.99):6.1f} ms"
        print(f"feature vector -> signal published  ({label}, {count} bars):  {hop1}")
        print(f"feature vector -> verdict published ({label}, {count} bars):  {hop2}   (target p99 < 50 ms)")
    print(
        f"  conditions: bars one at a time (after 20 warm-up), 1 symbol, M1; members: one fake "
        f"champion answering at once + the RSI rule; deadline {orch_settings.deadline_ms} ms (not reached: every "
        f"expected member answers); verdicts {verdicts}; embedded Tansu + PostgreSQL 18; both services and the load "
        f"generator in one process; KAFKA_FETCH_MAX_WAIT_MS={settings.kafka_fetch_max_wait_ms}, burst "
        f"{orch_settings.burst_fetch_max_wait_ms} ms for {orch_settings.burst_s} s after a record and from 0.5 s "
        f"before to {SPACED_WINDOW_S:.0f} s after each multiple of {SPACED_PERIOD_S:.0f} s, idle "
        f"{orch_settings.idle_fetch_max_wait_ms} ms after {orch_settings.idle_after_s} s without records; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300, help="bars sent back to back")
    parser.add_argument("--spaced", type=int, default=15, help=f"bars one per {SPACED_PERIOD_S:.0f} s (0: none)")
    args = parser.parse_args()
    run(args.samples, args.spaced)
    return 0


def run(samples: int, spaced: int = 15) -> None:
    """Start the bench's own broker and PostgreSQL, measure ``samples`` bars, print, clean up."""
    var = Path(tempfile.mkdtemp(prefix="hats-bench-signals-"))
    var.chmod(0o755)
    settings = PlatformSettings(hats_var_dir=var, hats_port_offset=OFFSET)
    broker = kafka.start_broker(settings.port_of("kafka"), var / "kafka.log")
    try:
        url = postgres.start_embedded(var)
        try:
            asyncio.run(ensure_topics(settings.kafka_servers))
            run_settings = PlatformSettings(
                hats_var_dir=var,
                hats_port_offset=OFFSET,
                kafka_bootstrap_servers=settings.kafka_servers,
                database_url=url,
                hats_log_level="WARNING",
            )
            asyncio.run(measure(run_settings, samples, spaced))
        finally:
            postgres.stop_embedded(var)
    finally:
        broker.terminate()
        with contextlib.suppress(Exception):
            broker.wait(10)
        shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
