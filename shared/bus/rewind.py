"""Group-less consumers read a restarted broker's new log from its beginning.

The embedded broker's log lives in memory: a restarted broker is a new, empty log whose
offsets start again at 0 (docs/architecture.md, "Delivery across broker restarts"). A
consumer with a group finds no committed offset there and starts at its reset point, but a
group-less one keeps its old position: if the new log has reached that offset by its first
fetch, it silently skips every record below it (seen: ai-orchestration lost the signals of the
first bars published after a restart); if not, it resets to ``auto_offset_reset``, which for a
``latest`` consumer skips whatever was published before that fetch.

``RewindOnNewLog`` watches the broker epoch (``shared.bus.epoch``: one small read a second)
and, when it changes, seeks every assigned partition of its consumers to the beginning, so the
new log is read whole. Records of the new log fetched before the change was seen are read
again: the handlers must be idempotent by event id (they are everywhere, by design), and may
meet records out of order. On a production Kafka the log survives restarts, the epoch never
changes and this does nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from shared import compat
from shared.bus.epoch import EpochSource, EpochUnavailable
from shared.bus.positioned import unpositioned

log = logging.getLogger(__name__)


class RewindOnNewLog:
    """Seeks ``subscribers``' consumers to the beginning whenever the broker epoch changes."""

    def __init__(self, subscribers: Sequence[Any], epoch: EpochSource, *, interval_s: float = 1.0) -> None:
        self._subscribers = subscribers
        self._epoch = epoch
        self._interval_s = interval_s
        #: The epoch of the log the consumers read (None until first read).
        self.known: str | None = None
        self.rewinds = 0
        self._pending = False

    async def check(self) -> bool:
        """Read the epoch; on a new one, rewind every consumer once all have their partitions
        again (whether it rewound)."""
        try:
            epoch = await self._epoch.current()
        except EpochUnavailable:
            return False  # the broker is away: ask again next time
        if self.known is None:
            self.known = epoch
        elif epoch != self.known:
            log.warning("the broker's log is new (epoch %s, was %s): reading it from the start", epoch, self.known)
            self.known, self._pending = epoch, True
        if not self._pending:
            return False
        # A consumer whose topics the new log did not have yet may be between assignments: rewinding
        # it then would be undone by its new assignment's reset, so wait until every one is placed.
        missing = await unpositioned(self._subscribers)
        if missing is not None:
            log.info("rewind waits: %s", missing)
            return False
        for subscriber in self._subscribers:
            consumer = compat.running_consumer(subscriber)
            await consumer.seek_to_beginning(*consumer.assignment())
        self._pending = False
        self.rewinds += 1
        return True

    async def run(self) -> None:
        """Check every ``interval_s`` (while a rewind waits, every tenth of that) until cancelled."""
        while True:
            await self.check()
            await asyncio.sleep(self._interval_s / 10 if self._pending else self._interval_s)


__all__ = ["RewindOnNewLog"]
