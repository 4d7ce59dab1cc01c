"""The poll pacer slows an idle consumer down and wakes it on the first record, on the real broker."""

from __future__ import annotations

import asyncio
import time
import uuid

from faststream.kafka import KafkaBroker

from shared.bus.broker import ensure_topics
from shared.bus.pacing import Pace, PollPacer, around_period

ACTIVE, IDLE = Pace(fetch_max_wait_ms=10, batch_timeout_ms=5), Pace(fetch_max_wait_ms=300, batch_timeout_ms=50)


async def _eventually(predicate, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_an_idle_consumer_polls_slowly_and_wakes_on_the_first_record(infra_env):
    _, _, settings = infra_env
    topic = f"test.pacer.{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings.kafka_servers, {topic: 1})
    broker = KafkaBroker(settings.kafka_servers)
    arrived: asyncio.Queue[float] = asyncio.Queue()
    subscriber = broker.subscriber(
        topic,
        group_id=topic,
        batch=True,
        batch_timeout_ms=ACTIVE.batch_timeout_ms,
        fetch_max_wait_ms=ACTIVE.fetch_max_wait_ms,
        auto_offset_reset="earliest",
    )
    pacer = PollPacer(subscriber, active=ACTIVE, idle=IDLE, idle_after_s=0.4)

    @subscriber
    async def handle(_: list) -> None:
        pacer.saw_records()
        arrived.put_nowait(time.monotonic())

    async def sent_and_received() -> float:
        started = time.monotonic()
        await broker.publish(b"{}", topic)
        return await asyncio.wait_for(arrived.get(), 5) - started

    await broker.start()
    try:
        async with pacer.running():
            await _eventually(lambda: pacer.current is IDLE)
            fetcher = subscriber.consumer._fetcher
            assert (fetcher._fetch_max_wait_ms, subscriber.batch_timeout_ms) == (300, 50)

            await sent_and_received()  # may wait out a slow fetch
            assert pacer.current is ACTIVE
            assert (fetcher._fetch_max_wait_ms, subscriber.batch_timeout_ms) == (10, 5)
            await asyncio.sleep(0.05)  # the slow fetch in flight when it woke has been answered
            latencies = [await sent_and_received() for _ in range(10)]
            # Polling every 10 ms again: far below the idle pace's 300 ms.
            assert sorted(latencies)[-2] < 0.2, latencies

            await _eventually(lambda: pacer.current is IDLE)
    finally:
        await broker.stop()


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class _Subscriber:
    """What the pacer touches of a running FastStream subscriber (the real ones: the test above)."""

    def __init__(self) -> None:
        self.batch_timeout_ms = 5
        self.consumer = type("Consumer", (), {})()
        self.consumer._fetcher = type("Fetcher", (), {"_fetch_max_wait_ms": 10})()

    @property
    def pace(self) -> tuple[int, int]:
        return self.consumer._fetcher._fetch_max_wait_ms, self.batch_timeout_ms


def test_subscribers_of_one_pacer_wake_together_burst_and_step_down():
    burst = Pace(fetch_max_wait_ms=2, batch_timeout_ms=2)
    clock, subs = _Clock(), [_Subscriber(), _Subscriber(), _Subscriber()]
    pacer = PollPacer(*subs, active=ACTIVE, idle=IDLE, idle_after_s=90, burst=burst, burst_s=0.5, clock=clock)
    clock.t = 90.0
    pacer.check()
    assert pacer.current is IDLE and all(s.pace == (300, 50) for s in subs)
    pacer.saw_records()  # a record on any one of them
    assert pacer.current is burst and all(s.pace == (2, 2) for s in subs)
    clock.t += 0.25
    pacer.check()
    assert pacer.current is burst  # still within the burst
    clock.t += 0.25
    pacer.check()
    assert pacer.current is ACTIVE and all(s.pace == (10, 5) for s in subs)
    clock.t += 89.25
    pacer.check()
    assert pacer.current is ACTIVE  # 89.75 s after the record
    clock.t += 0.25
    pacer.check()
    assert pacer.current is IDLE and all(s.pace == (300, 50) for s in subs)


def test_without_a_burst_pace_records_put_every_subscriber_on_the_active_pace():
    clock, subs = _Clock(), [_Subscriber(), _Subscriber()]
    pacer = PollPacer(*subs, active=ACTIVE, idle=IDLE, idle_after_s=2, clock=clock)
    clock.t = 2.0
    pacer.check()
    assert all(s.pace == (300, 50) for s in subs)
    pacer.saw_records()
    assert pacer.current is ACTIVE and all(s.pace == (10, 5) for s in subs)


def test_steady_subscribers_wake_and_idle_with_the_others_but_never_burst():
    burst = Pace(fetch_max_wait_ms=2, batch_timeout_ms=2)
    clock, fast, steady = _Clock(), _Subscriber(), _Subscriber()
    pacer = PollPacer(
        fast, active=ACTIVE, idle=IDLE, idle_after_s=2, burst=burst, burst_s=0.5, clock=clock, steady=[steady]
    )
    clock.t = 2.0
    pacer.check()
    assert pacer.current is IDLE and fast.pace == steady.pace == (300, 50)
    pacer.saw_records()  # a record on any feed of the pacer wakes both
    assert pacer.current is burst and fast.pace == (2, 2) and steady.pace == (10, 5)
    clock.t += 0.5
    pacer.check()
    assert pacer.current is ACTIVE and fast.pace == steady.pace == (10, 5)
    clock.t += 2.0
    pacer.check()
    assert pacer.current is IDLE and fast.pace == steady.pace == (300, 50)


def test_around_period_is_true_just_before_and_after_each_multiple():
    clock = _Clock()
    due = around_period(60, before_s=0.5, after_s=3, clock=clock)
    for t, expected in ((59.0, False), (59.5, True), (60.0, True), (62.9, True), (63.0, False), (119.5, True)):
        clock.t = t
        assert due() is expected, t


def test_an_expected_spell_puts_idle_subscribers_on_the_fastest_pace_before_any_record():
    burst = Pace(fetch_max_wait_ms=2, batch_timeout_ms=2)
    clock, wall, subs = _Clock(), _Clock(), [_Subscriber(), _Subscriber()]
    due = around_period(60, before_s=0.5, after_s=3, clock=wall)
    pacer = PollPacer(
        *subs, active=ACTIVE, idle=IDLE, idle_after_s=2, burst=burst, burst_s=0.5, expected=due, clock=clock
    )
    wall.t, clock.t = 10.0, 10.0
    pacer.check()
    assert pacer.current is IDLE  # nothing due, nothing arrived
    wall.t = clock.t = 59.5
    pacer.check()
    assert pacer.current is burst and all(s.pace == (2, 2) for s in subs)  # before the bar, not after it
    wall.t = clock.t = 62.75  # still due (the pacer asks every 0.25 s)
    pacer.check()
    wall.t = clock.t = 63.0  # the spell is over: the burst runs out, then the active pace, then idle
    pacer.check()
    assert pacer.current is burst
    wall.t = clock.t = 63.5
    pacer.check()
    assert pacer.current is ACTIVE
    wall.t = clock.t = 65.0
    pacer.check()
    assert pacer.current is IDLE
