"""How far the server side has handled the ticks it accepted: the answer of ``GET /api/v1/ingest/progress``.

A client keeps every tick until its receipt is confirmed (the delivery protocol,
docs/architecture.md "Delivery across broker restarts"). A tick is handled when every
consumer group that must see it before the client may forget it has made it durable:

* ``database-service.ticks`` stored it in ClickHouse (or dead-lettered it), then committed
  the offset after it: its committed offset in Kafka;
* ``data-bridge.bars`` has it in a *stored* bar-stage checkpoint in PostgreSQL (one whose bars
  ``database-service.bars`` has stored too, see ``bar_stage``): that checkpoint's next offset,
  if it is of the current epoch (an older one counts for nothing in this log).

``done[p]`` is the smaller of the two: the first offset of partition ``p`` not yet handled
by both. The epoch is read before and after the offsets, and the answer given only if it
did not change in between, so every offset in it is an offset of the epoch it names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from faststream.kafka import KafkaBroker

from shared.bus.epoch import EpochSource, EpochUnavailable
from shared.bus.offsets import committed_offsets
from shared.bus.publish import BulkPublisher
from shared.events import MarketBar, MarketTick

#: The consumer groups that store ticks and bars (``services/database_service/consumers.py``
#: ``TICKS_GROUP`` and ``BARS_GROUP``; a test holds them equal).
TICKS_STORAGE_GROUP = "database-service.ticks"
BARS_STORAGE_GROUP = "database-service.bars"
#: Reads of the offsets retried when the epoch changed during one.
ATTEMPTS = 3


def bars_stored(broker: KafkaBroker, bars: BulkPublisher[MarketBar]) -> Callable[[], Awaitable[dict[int, int]]]:
    """How the bar stage learns which bars database-service stored: the offsets its bar group has
    committed, per ``market.bars.v1`` partition (``bars`` tells how many partitions there are)."""

    async def committed() -> dict[int, int]:
        return await committed_offsets(broker, BARS_STORAGE_GROUP, MarketBar.TOPIC, await bars.partition_count())

    return committed


class CheckpointOffsets(Protocol):
    async def stored_offsets(self) -> dict[int, tuple[str | None, int]]: ...


class IngestProgress:
    """Reads ``{"epoch", "done"}`` from the broker (the storage group's offsets) and the bar checkpoints."""

    def __init__(
        self,
        broker: KafkaBroker,
        epochs: EpochSource,
        checkpoints: CheckpointOffsets,
        ticks: BulkPublisher[MarketTick],
    ) -> None:
        self._broker, self._epochs, self._checkpoints, self._ticks = broker, epochs, checkpoints, ticks

    async def report(self) -> dict[str, object]:
        """The progress document; ``EpochUnavailable`` if the broker cannot say (or keeps restarting)."""
        for _ in range(ATTEMPTS):
            epoch = await self._epochs.current()
            partitions = await self._ticks.partition_count()
            stored = await committed_offsets(self._broker, TICKS_STORAGE_GROUP, MarketTick.TOPIC, partitions)
            built = await self._checkpoints.stored_offsets()
            if await self._epochs.current() != epoch:
                continue  # the broker restarted meanwhile: these offsets may be of either log
            done = {}
            for partition in range(partitions):
                bars_epoch, bars_next = built.get(partition, (None, 0))
                done[str(partition)] = min(stored.get(partition, 0), bars_next if bars_epoch == epoch else 0)
            return {"epoch": epoch, "done": done}
        raise EpochUnavailable("the broker's epoch kept changing while its offsets were read")
