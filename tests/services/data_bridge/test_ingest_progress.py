"""``/ingest/progress``'s arithmetic, with the broker's answers faked at the client-library boundary:
``done`` is the smaller of the storing group's committed offset and the stored bar checkpoint's offset
of the current epoch, an offset of another epoch counts for nothing, and no answer mixes two epochs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from services.data_bridge import progress
from services.data_bridge.progress import IngestProgress
from services.database_service import consumers
from shared.bus.epoch import EpochUnavailable


class Epochs:
    last = None  # /progress always asks the broker

    def __init__(self, *values: str) -> None:
        self.values = list(values)

    async def current(self) -> str:
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


class Admin:
    def __init__(self, committed: dict[int, int]) -> None:
        self.committed = committed
        self.asked: list[str] = []

    async def list_consumer_group_offsets(self, group: str, partitions: list[TopicPartition]) -> dict:
        self.asked.append(group)
        return {tp: OffsetAndMetadata(self.committed.get(tp.partition, -1), "") for tp in partitions}


class Checkpoints:
    def __init__(self, rows: dict[int, tuple[str | None, int]]) -> None:
        self.rows = rows

    async def stored_offsets(self) -> dict[int, tuple[str | None, int]]:
        return self.rows


class Ticks:
    async def partition_count(self) -> int:
        return 4


def progress_of(epochs: Epochs, admin: Admin, checkpoints: Checkpoints) -> IngestProgress:
    broker = SimpleNamespace(config=SimpleNamespace(admin_client=admin))  # what shared.compat reads
    return IngestProgress(cast(Any, broker), epochs, checkpoints, cast(Any, Ticks()))


def test_the_storing_groups_are_database_services():
    assert progress.TICKS_STORAGE_GROUP == consumers.TICKS_GROUP
    assert progress.BARS_STORAGE_GROUP == consumers.BARS_GROUP


async def test_done_is_the_smaller_of_stored_and_checkpointed_in_this_epoch():
    admin = Admin({0: 50, 1: 10, 2: 7})  # partition 3: nothing committed
    checkpoints = Checkpoints({0: ("e2", 40), 1: ("e2", 30), 2: ("e1", 99), 3: ("e2", 5)})
    report = await progress_of(Epochs("e2"), admin, checkpoints).report()
    # 2: a checkpoint of the old log says nothing about this one; 3: no stored offset counts 0.
    assert report == {"epoch": "e2", "done": {"0": 40, "1": 10, "2": 0, "3": 0}}
    assert admin.asked == ["database-service.ticks"]


async def test_an_epoch_change_while_reading_is_read_again_and_a_broker_that_keeps_changing_gets_no_answer():
    admin, checkpoints = Admin({0: 50}), Checkpoints({0: ("e2", 40)})
    report = await progress_of(Epochs("e1", "e2", "e2", "e2"), admin, checkpoints).report()
    assert report["epoch"] == "e2" and report["done"]["0"] == 40 and len(admin.asked) == 2
    with pytest.raises(EpochUnavailable):
        await progress_of(Epochs("a", "b", "c", "d", "e", "f", "g"), admin, checkpoints).report()
