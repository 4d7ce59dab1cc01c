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

A rewind can be undone: a group-less consumer that still held its old assignment when it was
rewound is assigned its partitions again once its metadata shows the topics recreated, and a new
assignment starts at ``auto_offset_reset`` (``latest`` skips what the new log already holds; seen
under load: the verdicts of the first bars after a restart were lost). So for
``REASSIGNMENT_WATCH_S`` after a rewind each consumer's assignment is watched, and a new one is
rewound too. And while a rewind waits for a consumer that holds no partition (its metadata saw
the topics missing), the consumers' metadata is refreshed once per ``interval_s``: aiokafka would
wait 5 minutes (seen under load: a validator fed nothing for a minute after a restart).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from shared import compat
from shared.bus.epoch import EpochSource, EpochUnavailable
from shared.bus.positioned import unpositioned

log = logging.getLogger(__name__)

#: How long after a rewind a consumer's new assignment (which would start it at its reset point
#: again) is rewound too: its metadata catches up with the new log within a few refreshes.
REASSIGNMENT_WATCH_S = 60.0


class RewindOnNewLog:
    """Seeks ``subscribers``' consumers to the beginning whenever the broker epoch changes."""

    def __init__(
        self,
        subscribers: Sequence[Any],
        epoch: EpochSource,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._subscribers = subscribers
        self._epoch = epoch
        self._interval_s = interval_s
        self._clock = clock
        #: The epoch of the log the consumers read (None until first read).
        self.known: str | None = None
        self.rewinds = 0
        self._pending = False
        #: Until when (``clock``) assignments are watched after a rewind, and each consumer's then.
        self._watch_until = 0.0
        self._rewound: list[Any] = []
        #: When (``clock``) the consumers' metadata may be refreshed again while a rewind waits.
        self._next_refresh = 0.0

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
        if not self._pending and self._reassigned_since_rewind():
            log.warning("a consumer was assigned its partitions again after the rewind: rewinding it too")
            self._pending = True
        if not self._pending:
            return False
        # A consumer whose topics the new log did not have yet may be between assignments: rewinding
        # it then would be undone by its new assignment's reset, so wait until every one is placed.
        missing = await unpositioned(self._subscribers)
        if missing is not None:
            log.info("rewind waits: %s", missing)
            # A consumer that saw its topics missing from the new log holds no partition until its
            # metadata is refreshed, which aiokafka does on its own only every 5 minutes.
            if self._clock() >= self._next_refresh:
                self._next_refresh = self._clock() + self._interval_s
                for subscriber in self._subscribers:
                    consumer = compat.running_consumer(subscriber)
                    if consumer is not None:
                        compat.refresh_metadata(consumer)
            return False
        for subscriber in self._subscribers:
            consumer = compat.running_consumer(subscriber)
            await consumer.seek_to_beginning(*consumer.assignment())
        self._rewound = [compat.current_assignment(compat.running_consumer(s)) for s in self._subscribers]
        self._watch_until = self._clock() + REASSIGNMENT_WATCH_S
        self._pending = False
        self.rewinds += 1
        return True

    def _reassigned_since_rewind(self) -> bool:
        """Whether, within the watch after a rewind, a consumer holds another assignment than it was rewound in."""
        if self._clock() >= self._watch_until:
            return False
        now = [compat.current_assignment(compat.running_consumer(s)) for s in self._subscribers]
        return any(a is not b for a, b in zip(now, self._rewound, strict=True))

    async def run(self) -> None:
        """Check every ``interval_s`` (while a rewind waits or is watched, every tenth of that) until cancelled."""
        while True:
            await self.check()
            watching = self._pending or self._clock() < self._watch_until
            await asyncio.sleep(self._interval_s / 10 if watching else self._interval_s)


__all__ = ["RewindOnNewLog"]
