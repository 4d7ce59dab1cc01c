"""How the embedded broker's memory grows, with and without DeleteRecords (docs/architecture.md,
"Retention on the embedded broker").

Starts Tansu as the supervisor does (``infra.kafka``, memory storage) on a port of its own,
creates a topic with ``retention.ms=1000`` and ``retention.bytes=10000``, produces ``--mb``
megabytes in 1 KB records, and after every step prints the broker's resident memory and
the partition's low and high offsets. ``--delete`` also asks, after every step, to delete
every record below the end offset (DeleteRecords, key 21) and says how the request ended.

    python -m bench.broker_memory [--mb 200] [--step-mb 20] [--delete] [--port 33092]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.errors import KafkaError

from infra import kafka
from infra.broker_memory import resident_bytes

TOPIC = "probe.memory.v1"
PARTITION = TopicPartition(TOPIC, 0)
_MB = 1024 * 1024


async def produce_mb(bootstrap: str, megabytes: int, topic: str = TOPIC) -> None:
    """Produce ``megabytes`` MB to partition 0 of ``topic`` in 1 KB records, every one acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        payload = b"x" * 1024
        for _ in range(megabytes):
            sends = [await producer.send(topic, payload, partition=0) for _ in range(1024)]
            await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def _offsets(bootstrap: str) -> tuple[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        begin = (await consumer.beginning_offsets([PARTITION]))[PARTITION]
        end = (await consumer.end_offsets([PARTITION]))[PARTITION]
        return begin, end
    finally:
        await consumer.stop()


async def _delete_below(bootstrap: str, offset: int) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await asyncio.wait_for(admin.delete_records({PARTITION: RecordsToDelete(offset)}, timeout_ms=5000), 15)
        return "deleted"
    except (KafkaError, TimeoutError) as exc:
        return f"failed: {type(exc).__name__}"
    finally:
        await admin.close()


async def run(megabytes: int, step_mb: int, delete: bool, port: int) -> None:
    log = Path(tempfile.mkdtemp(prefix="hats-broker-memory-")) / "kafka.log"
    process = kafka.start_broker(port, log)
    bootstrap = f"127.0.0.1:{port}"
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        configs = {"cleanup.policy": "delete", "retention.ms": "1000", "retention.bytes": "10000"}
        await admin.create_topics([NewTopic(TOPIC, 1, 1, topic_configs=configs)])
        await admin.close()
        print(f"start: resident {(resident_bytes(process.pid) or 0) // _MB} MB", flush=True)
        for done in range(step_mb, megabytes + 1, step_mb):
            await produce_mb(bootstrap, step_mb)
            begin, end = await _offsets(bootstrap)
            outcome = f", delete below {end}: {await _delete_below(bootstrap, end)}" if delete else ""
            resident = (resident_bytes(process.pid) or 0) // _MB
            print(f"{done} MB produced: resident {resident} MB, offsets {begin}..{end}{outcome}", flush=True)
        await asyncio.sleep(5)
        begin, end = await _offsets(bootstrap)
        print(f"after 5 s idle: resident {(resident_bytes(process.pid) or 0) // _MB} MB, offsets {begin}..{end}")
        print(f"broker alive: {process.poll() is None}; its log: {log}")
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--step-mb", type=int, default=20)
    parser.add_argument("--delete", action="store_true", help="DeleteRecords below the end after every step")
    parser.add_argument("--port", type=int, default=33092)
    args = parser.parse_args()
    asyncio.run(run(args.mb, args.step_mb, args.delete, args.port))


if __name__ == "__main__":
    main()
