"""Storing a batch so that events the store refuses cannot stall the rest, and an outage loses nothing.

A failed insert is retried a few times with backoff (most failures are passing). If it
keeps failing, it is either an *outage* (the store takes nothing: ClickHouse down, disk
full) or *poison* (the store takes everything but some events: a value a column cannot
hold, a constraint). They are told apart by a control write: re-inserting a row the
store already holds (the last event it accepted; idempotent in a ``ReplacingMergeTree``).
A store that refuses that is out, and nothing is dead-lettered. A store that takes it
is working, and the batch is bisected until the events it refuses are isolated; each is
tried once more alone right after another successful control write before it is called
refused. See docs/architecture.md, "Nothing stalls".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Item = TypeVar("Item")

#: Inserts of the whole batch before isolating, and the pause before the second (doubling).
ATTEMPTS = 3
FIRST_BACKOFF_S = 0.2


class StoreOutage(Exception):
    """The store refused a row it already holds (or took nothing at all): retry the batch later, drop nothing."""


@dataclass(frozen=True, slots=True)
class Refused(Generic[Item, T]):
    """An event the working store refused on its own, its item (e.g. its Kafka record) and the store's error."""

    item: Item
    event: T
    error: str


class IsolatingStore(Generic[T]):
    """Inserts batches of ``T`` through ``insert``; returns what the store refuses instead of raising on it.

    ``insert`` must be idempotent (the same event inserted twice is one row to readers),
    because the control write re-inserts a stored event and an outage half-way through an
    isolation leaves part of a batch stored before it is retried.
    """

    def __init__(
        self,
        insert: Callable[[Sequence[T]], Awaitable[None]],
        *,
        attempts: int = ATTEMPTS,
        first_backoff_s: float = FIRST_BACKOFF_S,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._insert = insert
        self._attempts = attempts
        self._backoff = first_backoff_s
        self._sleep = sleep
        self._control: T | None = None  # the last event the store accepted

    async def store(self, items: Sequence[tuple[Item, T]]) -> list[Refused[Item, T]]:
        """Store every event of ``items`` the store accepts; the ones it refuses are returned.

        Raises ``StoreOutage`` when the store cannot be shown to work: then nothing is refused.
        """
        if not items:
            return []
        events = [event for _, event in items]
        error: Exception | None = None
        for attempt in range(self._attempts):
            if attempt:
                await self._sleep(self._backoff * 2 ** (attempt - 1))
            try:
                await self._insert(events)
            except Exception as exc:
                error = exc
                continue
            self._control = events[-1]
            return []
        log.warning("inserting %d events failed %d times (%s); isolating", len(events), self._attempts, error)
        if self._control is not None and not await self._store_works():
            raise StoreOutage(f"the store refuses a row it holds: {error}") from error
        suspects: list[tuple[Item, T]] = []
        await self._bisect(list(items), suspects)
        refused = []
        for item, event in suspects:
            # Only a store that just took another row, and still refuses this one, refuses *it*.
            if not await self._store_works():
                raise StoreOutage(f"the store took nothing while isolating {len(suspects)} suspects: {error}")
            try:
                await self._insert([event])
            except Exception as exc:
                refused.append(Refused(item, event, f"{type(exc).__name__}: {exc}"))
        return refused

    async def _store_works(self) -> bool:
        if self._control is None:
            return False
        try:
            await self._insert([self._control])
        except Exception as exc:
            log.warning("control write refused: %s", exc)
            return False
        return True

    async def _bisect(self, items: list[tuple[Item, T]], suspects: list[tuple[Item, T]]) -> None:
        """Store the halves that the store takes; the single events it refuses become suspects."""
        half = len(items) // 2
        for part in (items[:half], items[half:]) if half else (items,):
            try:
                await self._insert([event for _, event in part])
            except Exception:
                if len(part) == 1:
                    suspects.append(part[0])
                else:
                    await self._bisect(part, suspects)
            else:
                self._control = part[-1][1]
