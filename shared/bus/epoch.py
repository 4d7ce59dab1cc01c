"""The broker epoch: which incarnation of the broker's log an offset belongs to.

The embedded broker keeps its topics in memory, so every (re)start is a new, empty log
whose offsets start again at 0: an offset means nothing without the log it was taken
from. The epoch names that log. It is the UUID in the first record of the one-partition
topic ``hats.epoch.v1`` (``shared.topics.BROKER_EPOCH``, never deleted: see
``topics.configs_of``). A reader that finds the topic empty writes a fresh UUID and reads
the first record again, so racing readers agree on whichever was written first. On a
production Kafka the log survives restarts and the epoch never changes.

Any value read before an event was published names that event's log or an older one,
never a newer one; an offset checked against an epoch read *after* it was fetched
belongs to that epoch's log if the two epochs are equal. The bar stage and the ingest
receipts rely on exactly these two facts (docs/architecture.md, "Delivery across broker
restarts").
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.topics import BROKER_EPOCH

log = logging.getLogger(__name__)

#: The request header in which an ingest client names the epoch of the ticks it has sent and not
#: seen confirmed yet. If the server's epoch differs, it publishes nothing and answers 409 with
#: its epoch in the same header: the client then sends the ticks the old log lost first, in their
#: order, so a restarted broker's log never has a client's newer ticks ahead of its lost older
#: ones (which the bar stage would have to count as late).
EPOCH_HEADER = "Broker-Epoch"

_PARTITION = TopicPartition(BROKER_EPOCH, 0)
#: How long a read of the first records waits for them (they are there: the end offset says so).
_FETCH_TIMEOUT_MS = 1000
_STOP_TIMEOUT_S = 2.0


class EpochUnavailable(RuntimeError):
    """The broker could not be asked for its epoch (down, restarting, or the topic is missing)."""


class EpochSource(Protocol):
    """Where a component learns the current broker epoch."""

    @property
    def last(self) -> str | None:
        """The epoch read last (kept fresh by ``BrokerEpoch.watch``); None when unknown, e.g.
        while the broker is away. Never newer than the broker's log (it was read from it)."""
        ...

    async def current(self) -> str:
        """The epoch of the broker's log as of now (read from the broker, not remembered)."""
        ...


class BrokerEpoch:
    """Reads (and, on a new log, creates) the broker epoch, with its own consumer and producer.

    ``current()`` always asks the broker. ``last`` is the value of the latest successful read:
    old, but never newer than the log of anything published after it was read (so it can
    label a receipt). ``watch()`` keeps ``last`` fresh; run it as a background task.
    """

    def __init__(self, bootstrap_servers: str, client_id: str, *, timeout_s: float = 5.0) -> None:
        self._servers = bootstrap_servers
        self._client_id = f"{client_id}.epoch"
        self._timeout_s = timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self.last: str | None = None

    async def current(self) -> str:
        async with self._lock:
            try:
                epoch = await asyncio.wait_for(self._read_or_create(), self._timeout_s)
            except (Exception, asyncio.CancelledError) as exc:
                task = asyncio.current_task()
                if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
                    raise  # we are being cancelled, not a read of aiokafka's
                await self._reset()  # reconnect from scratch next time
                raise EpochUnavailable(f"cannot read the broker epoch: {type(exc).__name__}: {exc}") from exc
        if epoch != self.last:
            log.info("broker epoch is %s (was %s)", epoch, self.last)
        self.last = epoch
        return epoch

    async def watch(self, interval_s: float = 1.0) -> None:
        """Refresh ``last`` every ``interval_s`` for as long as it runs."""
        while True:
            try:
                await self.current()
            except EpochUnavailable:
                # The broker is away and may come back as a new log: until it answers again, readers
                # of ``last`` must ask it (``current``) rather than trust the old log's epoch.
                self.last = None
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        async with self._lock:
            await self._reset()

    async def _read_or_create(self) -> str:
        consumer, producer = await self._clients()
        first = await self._first_record(consumer)
        if first is None:
            # A new log: propose an epoch. If another process proposed one first, its record is
            # the first and every reader (this one included) takes that one.
            await producer.send_and_wait(BROKER_EPOCH, str(uuid.uuid4()).encode(), partition=0)
            first = await self._first_record(consumer)
            if first is None:
                raise EpochUnavailable("the epoch record was written but cannot be read back")
        return first

    @staticmethod
    async def _first_record(consumer: AIOKafkaConsumer) -> str | None:
        """The value of the first record that can be read, or None if there is none.

        Tansu (memory storage) has been seen to keep a record that no fetch returns after a
        kill -9 and restart, when a reader's lookup auto-created the topic while the supervisor
        created it (no lookup creates a topic any more: ``compat.forbid_topic_auto_creation``).
        Should it happen again, such a record is passed over, as by every reader, so readers
        still agree on the first one they can all read.
        """
        begin = (await consumer.beginning_offsets([_PARTITION]))[_PARTITION]
        end = (await consumer.end_offsets([_PARTITION]))[_PARTITION]
        if end <= begin:
            return None
        consumer.seek(_PARTITION, begin)
        # Fetched only while read: aiokafka's fetcher polls an assigned, unpaused partition in
        # the background, and the embedded broker answers each poll only after the fetch wait,
        # so an idle data-bridge asked it ~100 times a second for a record it already had.
        consumer.resume(_PARTITION)
        try:
            batches = await consumer.getmany(_PARTITION, timeout_ms=_FETCH_TIMEOUT_MS)
        finally:
            consumer.pause(_PARTITION)
        records = batches.get(_PARTITION, [])
        return bytes(records[0].value or b"").decode() if records else None

    async def _clients(self) -> tuple[AIOKafkaConsumer, AIOKafkaProducer]:
        if self._consumer is None or self._producer is None:
            await self._reset()
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._servers,
                client_id=self._client_id,
                enable_auto_commit=False,
                fetch_max_wait_ms=10,  # the embedded broker holds an empty fetch this long
            )
            producer = AIOKafkaProducer(bootstrap_servers=self._servers, client_id=self._client_id, acks="all")
            try:
                await consumer.start()
                await producer.start()
            except Exception:
                await consumer.stop()
                await producer.stop()
                raise
            consumer.assign([_PARTITION])
            consumer.pause(_PARTITION)  # see ``_first_record``
            self._consumer, self._producer = consumer, producer
        return self._consumer, self._producer

    async def _reset(self) -> None:
        consumer, producer = self._consumer, self._producer
        self._consumer = self._producer = None
        for client in (consumer, producer):
            if client is not None:
                # Bounded: stopping a client whose broker is gone can wait for ever, and aiokafka
                # may let a cancellation of its own tasks out; only ours must go on.
                try:
                    await asyncio.wait_for(client.stop(), _STOP_TIMEOUT_S)
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise
                except Exception as exc:
                    log.debug("closing the epoch reader's client failed: %s", exc)


__all__ = ["BrokerEpoch", "EpochSource", "EpochUnavailable"]
