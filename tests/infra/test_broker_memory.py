"""The embedded broker's memory: nothing frees it, so the supervisor's watch warns as it grows.

On a real Tansu, started the way the supervisor starts it (``infra.kafka``), on a port
of its own (the session offset + 700 lies outside every mesh, fault mesh and delivery
mesh of this and the neighbouring offsets), so the panic a DeleteRecords request causes
never touches the session's broker.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.errors import KafkaError

from bench.broker_memory import produce_mb
from infra import kafka
from infra.broker_memory import BrokerMemoryWatch, resident_bytes
from shared.settings import PlatformSettings
from tests.conftest import PORT_OFFSET

_MB = 1024 * 1024
TOPIC = "test.memory.v1"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = PlatformSettings(hats_port_offset=PORT_OFFSET + 700).port_of("kafka")
    log = Path(tmp_path_factory.mktemp("tansu")) / "kafka.log"
    process = kafka.start_broker(port, log)
    try:
        yield process, f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
async def topic(broker: tuple[subprocess.Popen[bytes], str]) -> AsyncIterator[str]:
    _, bootstrap = broker
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # The shortest retention there is: a broker that enforced it would drop these at once.
        configs = {"cleanup.policy": "delete", "retention.ms": "1", "retention.bytes": "1"}
        await admin.create_topics([NewTopic(TOPIC, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()
    yield TOPIC


async def _first_offset(bootstrap: str) -> tuple[int, int | None]:
    """The partition's low watermark, and the offset of the first record a fetch from 0 returns."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="none")
    await consumer.start()
    try:
        tp = TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        begin = (await consumer.beginning_offsets([tp]))[tp]
        consumer.seek(tp, 0)
        records = (await consumer.getmany(tp, timeout_ms=5000)).get(tp, [])
        return begin, records[0].offset if records else None
    finally:
        await consumer.stop()


async def test_delete_records_frees_nothing_on_the_embedded_broker(broker, topic) -> None:
    """Why there is a watch and no retention enforcer: the finding, kept true (or told otherwise)."""
    process, bootstrap = broker
    await produce_mb(bootstrap, 1, topic)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Tansu 0.6's memory storage: `todo!()`, the request's task panics, the connection closes.
        with contextlib.suppress(KafkaError):
            await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(500)}, timeout_ms=5000)
    finally:
        await admin.close()
    assert process.poll() is None  # the panic stays in one connection's task
    # Nothing was deleted: the log still starts at 0 and serves it. If this fails, the broker now
    # implements DeleteRecords: build the retention enforcer (docs/architecture.md, "Retention on
    # the embedded broker").
    assert await _first_offset(bootstrap) == (0, 0)


async def test_the_watch_warns_as_the_real_broker_grows(broker, topic) -> None:
    process, bootstrap = broker
    start = resident_bytes(process.pid)
    assert start is not None
    watch = BrokerMemoryWatch(threshold_mb=start // _MB + 4)
    assert watch.observe(process.pid, start) is None
    assert "over the" not in (watch.note() or "")

    await produce_mb(bootstrap, 8, topic)  # about 8 MB more held: nothing is ever let go
    grown = resident_bytes(process.pid)
    assert grown is not None and grown >= start + 6 * _MB
    warning = watch.observe(process.pid, grown)
    assert warning is not None and f"pid {process.pid}" in warning and "HATS_BROKER_RSS_WARN_MB" in warning
    assert "over the" in (watch.note() or "")
    assert watch.observe(process.pid, grown) is None  # said once, not at every reading


def test_the_watch_warns_again_only_after_a_further_half_of_the_threshold() -> None:
    watch = BrokerMemoryWatch(threshold_mb=100)
    assert watch.observe(1, 99 * _MB) is None
    assert watch.observe(1, 100 * _MB) is not None
    assert watch.observe(1, 149 * _MB) is None
    assert watch.observe(1, 150 * _MB) is not None
    assert watch.observe(1, 150 * _MB) is None
    # Another pid is another broker (restarted): its first reading over the threshold warns.
    assert watch.observe(2, 120 * _MB) is not None
    assert watch.note() == (
        'memory 120 MB, over the 100 MB warning (retention is not enforced: see docs/architecture.md, "Retention '
        'on the embedded broker")'
    )


def test_a_threshold_of_zero_never_warns() -> None:
    watch = BrokerMemoryWatch(threshold_mb=0)
    assert watch.observe(1, 64 * 1024 * _MB) is None
    assert watch.note() == "memory 65536 MB"


def test_a_roll_is_due_only_at_its_opt_in_threshold() -> None:
    assert BrokerMemoryWatch(threshold_mb=100).roll(1, 64 * 1024 * _MB) is None  # off by default
    watch = BrokerMemoryWatch(threshold_mb=100, roll_mb=200)
    assert watch.roll(1, 199 * _MB) is None
    assert watch.roll(7, 200 * _MB) == (
        "the embedded broker (pid 7) holds 200 MB, at HATS_BROKER_RSS_ROLL_MB (200 MB): rolling it; its new log "
        "starts empty and clients send again every tick not yet confirmed"
    )
