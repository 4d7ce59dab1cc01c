"""The bar stage's faults on real infrastructure: a broker of its own (Tansu), the session's PostgreSQL.

* A rebalance during a slow publish: a second instance joins the group while the first is
  inside a publish held at our own boundary (the bar publisher is wrapped). Every tick's bars
  are published (duplicates only as the same bar again) and no checkpoint was ever written that
  covered bars not yet acknowledged by the broker.
* PostgreSQL unavailable at partition assignment: the checkpoint store reaches PostgreSQL
  through a TCP proxy that is cut while the partitions are assigned, then restored. Nothing is
  built from an empty builder meanwhile; the bars equal the reference afterwards.

Each test has a broker of its own, not the session's: the instances consume as the real group
(``data-bridge.bars``) and their bars are read back from ``market.bars.v1``, which the session
mesh's data-bridge would share. The in-memory versions of both faults are in
``tests/services/data_bridge/test_bar_stage.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from bench.synthetic import synthetic_ticks
from infra import kafka
from services.data_bridge import bar_stage
from services.data_bridge.bar_stage import BarStage, Checkpoint, Checkpoints, CheckpointStore, Snapshot
from services.data_bridge.domain.bars import BarBuilder, bars_from_ticks
from services.data_bridge.progress import bars_stored
from services.data_bridge.service import CONTRACT, SERVICE
from services.data_bridge.settings import DataBridgeSettings
from shared import topics
from shared.bus.broker import create_broker, ensure_topics
from shared.bus.epoch import BrokerEpoch
from shared.bus.publish import BulkPublisher
from shared.events import MarketBar, MarketTick, decode_event, encode_event
from shared.kit.bus import ServiceBus
from shared.kit.contract import ContractUse
from shared.kit.migrations import migrate_postgres
from tests.faults.proxy import TcpProxy
from tests.integration.test_delivery_restarts import market_tick
from tests.support import eventually, free_port, own_database

pytestmark = pytest.mark.slow

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
LATENESS_MS = DataBridgeSettings().allowed_lateness_ms
#: Symbols spread over the partitions (keyed by symbol); ~1.5 s apart: ~40 ticks per M1 bar.
SYMBOLS = tuple(f"TSTRB{i}" for i in range(6))
TICKS_PER_SYMBOL = 900


@pytest.fixture
def servers() -> Iterator[str]:
    """A Tansu of the test's own on a free port, with the project's topics (and nothing else in them)."""
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="hats-barfaults-")) / "kafka.log"
    process = kafka.start_broker(port, log)
    try:
        servers = f"127.0.0.1:{port}"
        asyncio.run(ensure_topics(servers))
        yield servers
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
async def database(infra_env) -> AsyncIterator[str]:
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], "barfaults") as url:
        await migrate_postgres(url, SERVICE.name, SERVICE.migrations_dir("postgres"))
        yield url


# -- our own boundaries, wrapped -------------------------------------------------------------


class Published:
    """The ids of the bars the broker acknowledged (a publish that returned), across the instances."""

    def __init__(self) -> None:
        self.acked: set[uuid.UUID] = set()


class HeldPublisher:
    """The real bar publisher, with the first non-empty publish held until ``release`` is set
    (a broker slow to acknowledge); what returned is recorded in ``published``."""

    def __init__(self, real: BulkPublisher[MarketBar], published: Published, *, hold: bool) -> None:
        self._real, self._published = real, published
        self.started, self.release = asyncio.Event(), asyncio.Event()
        if not hold:
            self.release.set()

    async def publish(self, bars: list[MarketBar]) -> dict[int, int]:
        if bars and not self.started.is_set():
            self.started.set()
            await self.release.wait()
        written = await self._real.publish(bars)
        self._published.acked.update(b.event_id for b in bars)
        return written


@dataclass(frozen=True)
class Saved:
    partition: int
    next_offset: int
    builder: BarBuilder
    acked: frozenset[uuid.UUID]  # the bars acknowledged when the checkpoint was written


@dataclass
class Journal:
    """Every checkpoint written, with what was published then; loads that failed."""

    saves: list[Saved] = field(default_factory=list)
    failed_loads: Counter[int] = field(default_factory=Counter)  # by partition


class ObservedCheckpoints:
    """The real checkpoint store, observed: each save is recorded with the bars acknowledged by then."""

    def __init__(self, real: CheckpointStore, journal: Journal, published: Published) -> None:
        self._real, self._journal, self._published = real, journal, published

    async def load(self, partition: int) -> Checkpoint | None:
        return await self._observed_load(self._real.load(partition), partition)

    async def load_stored(self, partition: int) -> Checkpoint | None:
        return await self._observed_load(self._real.load_stored(partition), partition)

    async def save(self, partition: int, snapshot: Snapshot) -> None:
        acked = frozenset(self._published.acked)  # before the write: what it may cover
        await self._real.save(partition, snapshot)
        builder = BarBuilder.restore(json.loads(snapshot.state))
        self._journal.saves.append(Saved(partition, snapshot.next_offset, builder, acked))

    async def save_stored(self, partition: int, snapshot: Snapshot) -> None:
        await self._real.save_stored(partition, snapshot)

    async def _observed_load(self, loading: Awaitable[Checkpoint | None], partition: int) -> Checkpoint | None:
        try:
            return await loading
        except Exception:
            self._journal.failed_loads[partition] += 1
            raise


# -- an instance of the bar stage, wired as services/data_bridge/service.py does -----------------


def build_stage(
    settings: DataBridgeSettings, store: Checkpoints, epochs: BrokerEpoch, bus: ServiceBus, publisher: HeldPublisher
) -> BarStage:
    """The one place a test builds a ``BarStage``, wired as ``services/data_bridge/service.py`` wires it."""
    # No database-service on this broker: no bar is ever stored, so no checkpoint is confirmed.
    return BarStage(
        settings,
        store,
        epochs,
        cast(BulkPublisher[MarketBar], publisher),
        bus.dead_letters(bar_stage.GROUP),
        CollectorRegistry(),
        bars_stored(bus.broker, bus.publisher(MarketBar)),
    )


class Instance:
    """A data-bridge bar stage in the real group: its own bus (consumer, producer), epoch watcher,
    checkpoints; ``revoked`` is set once the group takes partitions from it."""

    def __init__(
        self, name: str, servers: str, pool: asyncpg.Pool, journal: Journal, published: Published, *, hold: bool
    ) -> None:
        registry = CollectorRegistry()
        self.bus = ServiceBus(create_broker(name, servers, registry), ContractUse(SERVICE.name, CONTRACT), registry)
        self.epochs = BrokerEpoch(servers, client_id=name)
        self.publisher = HeldPublisher(self.bus.publisher(MarketBar), published, hold=hold)
        store = ObservedCheckpoints(CheckpointStore(pool), journal, published)
        self.stage = build_stage(
            DataBridgeSettings(checkpoint_interval_ms=200), store, self.epochs, self.bus, self.publisher
        )
        self.revoked = asyncio.Event()
        on_revoked = self.stage.on_partitions_revoked

        async def observed(partitions: list[TopicPartition]) -> None:  # observation only: the stage's own runs
            if partitions:
                self.revoked.set()
            await on_revoked(partitions)

        self.stage.on_partitions_revoked = observed  # type: ignore[method-assign,assignment]
        self._pacer = bar_stage.subscribe(self.bus, self.stage, fetch_max_wait_ms=100)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Join the group; returns once partitions are assigned (aiokafka waits for the rebalance)."""
        await self.bus.start()
        self._tasks = [
            asyncio.create_task(run())
            for run in (
                self._pacer.run,
                self.stage.checkpoint_periodically,
                self.stage.confirm_stored_periodically,
                self.epochs.watch,
            )
        ]

    async def stop(self) -> None:
        """As the service stops: checkpoint, then leave the group."""
        self.publisher.release.set()
        await self.stage.close()
        await self.bus.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.epochs.close()


@contextlib.asynccontextmanager
async def instance(
    name: str, servers: str, pool: asyncpg.Pool, journal: Journal, published: Published, *, hold: bool = False
) -> AsyncIterator[Instance]:
    running = Instance(name, servers, pool, journal, published, hold=hold)
    try:
        await running.start()
        yield running
    finally:
        await running.stop()


# -- ticks in, bars out ----------------------------------------------------------------------


def tick_stream() -> list[MarketTick]:
    """Every symbol's ticks, interleaved in event time (as a live feed would send them)."""
    ticks = [
        market_tick(t)
        for i, symbol in enumerate(SYMBOLS)
        for t in synthetic_ticks(symbol, BASE_MS, TICKS_PER_SYMBOL, seed=50 + i)
    ]
    return sorted(ticks, key=lambda t: t.ts_event)


async def produce(servers: str, ticks: list[MarketTick]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    await producer.start()
    try:
        for t in ticks:
            await producer.send(topics.MARKET_TICKS, encode_event(t), key=t.symbol.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def read_all(servers: str, topic: str, decode: Callable[[bytes], Any]) -> list[tuple[int, int, Any]]:
    """``(partition, offset, event)`` of everything in ``topic``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest")
    await consumer.start()
    found: list[tuple[int, int, Any]] = []
    try:
        while batch := await consumer.getmany(timeout_ms=1000):
            for records in batch.values():
                found.extend((r.partition, r.offset, decode(r.value)) for r in records)
    finally:
        await consumer.stop()
    return found


def final_bars(ticks: list[MarketTick]) -> dict[uuid.UUID, MarketBar]:
    """The bars the ticks close (per symbol: those ending at or below its watermark), by id."""
    closed: dict[uuid.UUID, MarketBar] = {}
    for symbol in {t.symbol for t in ticks}:
        mine = [t for t in ticks if t.symbol == symbol]
        watermark = max(t.ts_event for t in mine) - LATENESS_MS * 1_000_000
        for bar in bars_from_ticks(mine):
            if bar.ts_event + bar.timeframe.nanos <= watermark:
                closed[bar.event_id] = bar
    return closed


def same(bar: MarketBar) -> MarketBar:
    return bar.model_copy(update={"ts_init": 0})


async def assert_bars_exact(servers: str, ticks: list[MarketTick]) -> None:
    """``market.bars.v1`` holds exactly the reference bars; a bar twice only as the same bar again."""
    expected = {i: same(b) for i, b in final_bars(ticks).items()}
    assert len(expected) > 100

    async def complete() -> dict[uuid.UUID, list[MarketBar]] | None:
        got: dict[uuid.UUID, list[MarketBar]] = {}
        for _, _, bar in await read_all(servers, topics.MARKET_BARS, lambda v: decode_event(MarketBar, v)):
            got.setdefault(bar.event_id, []).append(same(bar))
        return got if set(got) >= set(expected) else None

    got = await eventually(complete, timeout_s=40, interval_s=1)
    assert set(got) == set(expected)
    for event_id, copies in got.items():
        assert all(copy == expected[event_id] for copy in copies), (expected[event_id], copies)


async def assert_checkpoints_cover_only_published(servers: str, journal: Journal) -> None:
    """Each checkpoint: every bar its builder had closed (from the ticks before its offset) had been
    acknowledged when it was written. (A restore from it never publishes those bars again.)"""
    assert journal.saves
    ticks = await read_all(servers, topics.MARKET_TICKS, lambda v: decode_event(MarketTick, v))
    for saved in journal.saves:
        covered = [t for p, offset, t in ticks if p == saved.partition and offset < saved.next_offset]
        closed = set()
        for symbol in {t.symbol for t in covered}:
            watermark = saved.builder.watermark(symbol)
            assert watermark is not None
            closed |= {
                b.event_id
                for b in bars_from_ticks(t for t in covered if t.symbol == symbol)
                if b.ts_event + b.timeframe.nanos <= watermark
            }
        unpublished = closed - saved.acked
        assert not unpublished, f"checkpoint p{saved.partition}@{saved.next_offset} covers unpublished bars"


async def log_ends(servers: str) -> dict[int, int]:
    """The offset after the last tick of each partition that has any. (Counted from the records:
    Tansu's ``ListOffsets`` answers the first offset of the last batch, not the one after it.)"""
    ends: dict[int, int] = {}
    for partition, offset, _ in await read_all(servers, topics.MARKET_TICKS, bytes):
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


async def checkpointed_to_the_end(servers: str, pool: asyncpg.Pool) -> bool:
    """Every partition's (last saved) checkpoint is past its last tick."""
    store = CheckpointStore(pool)
    for partition, end in (await log_ends(servers)).items():
        checkpoint = await store.load(partition)
        if checkpoint is None or checkpoint.next_offset != end:
            return False
    return True


# -- the faults ---------------------------------------------------------------------------------


async def test_a_rebalance_during_a_slow_publish_publishes_every_bar_and_checkpoints_only_published_ones(
    servers, database
):
    ticks = tick_stream()
    half = len(ticks) // 2
    journal, published = Journal(), Published()
    pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
    try:
        await produce(servers, ticks[:half])
        async with instance("bars-a", servers, pool, journal, published, hold=True) as first:
            await asyncio.wait_for(first.publisher.started.wait(), 30)  # inside its first publish, lock held
            second = Instance("bars-b", servers, pool, journal, published, hold=False)
            # Its join makes the group rebalance (its start returns once that is done): aiokafka
            # calls the first instance's listener without waiting for its handler, still publishing.
            joining = asyncio.create_task(second.start())
            try:
                await asyncio.wait_for(first.revoked.wait(), 30)
                await asyncio.sleep(0.5)  # the revocation waits meanwhile: it may not checkpoint yet
                first.publisher.release.set()
                await asyncio.wait_for(joining, 60)
                await produce(servers, ticks[half:])
                await eventually(lambda: checkpointed_to_the_end(servers, pool), timeout_s=40, interval_s=0.5)
            finally:
                joining.cancel()
                await second.stop()
        await assert_bars_exact(servers, ticks)
        await assert_checkpoints_cover_only_published(servers, journal)
    finally:
        await pool.close()


def socket_of(url: str) -> str:
    """The unix socket the embedded PostgreSQL of ``url`` (``...?host=<socket dir>``) listens on."""
    directory = Path(parse_qs(urlsplit(url).query)["host"][0])
    (path,) = (p for p in directory.glob(".s.PGSQL.*") if p.suffix != ".lock")
    return str(path)


def through(url: str, proxy: TcpProxy) -> str:
    """``url`` over TCP to the proxy instead of its unix socket."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{proxy.port}", query=""))


async def test_postgresql_away_at_assignment_builds_nothing_from_an_empty_builder(servers, database, monkeypatch):
    # Retried within a second, not up to 30 s: the test's run time, not the behaviour under test.
    monkeypatch.setattr(bar_stage, "RESTORE_BACKOFF_MIN_S", 0.2)
    monkeypatch.setattr(bar_stage, "RESTORE_BACKOFF_MAX_S", 1.0)
    ticks = tick_stream()
    half = len(ticks) // 2
    journal, published = Journal(), Published()
    direct = await asyncpg.create_pool(database, min_size=1, max_size=2)
    async with TcpProxy(socket_of(database)) as proxy:
        proxied = await asyncpg.create_pool(through(database, proxy), min_size=1, max_size=2)
        try:
            await produce(servers, ticks[:half])
            async with instance("bars-a", servers, direct, journal, published):
                await eventually(lambda: checkpointed_to_the_end(servers, direct), timeout_s=40, interval_s=0.5)
            # Checkpoints hold open bars, and Kafka's committed offsets follow them: a new instance
            # that started at the committed offset with an empty builder would publish partial bars.
            await produce(servers, ticks[half:])
            await proxy.cut()  # PostgreSQL away while the next instance is assigned its partitions
            # Its join waits ~10 s for the first one's session to expire: Tansu numbers a group's
            # first generation 0, and aiokafka sends LeaveGroup only from generation 1 on.
            before = set(published.acked)
            loaded = set(await log_ends(servers))  # the partitions holding ticks
            async with instance("bars-b", servers, proxied, journal, published):

                async def failed_twice() -> bool:  # at assignment, and again when their records came
                    return all(journal.failed_loads[p] >= 2 for p in loaded)

                await eventually(failed_twice, timeout_s=30, interval_s=0.05)
                assert published.acked == before  # nothing built meanwhile
                await proxy.restore()
                await eventually(lambda: checkpointed_to_the_end(servers, direct), timeout_s=40, interval_s=0.5)
            await assert_bars_exact(servers, ticks)
        finally:
            await proxied.close()
            await direct.close()
