"""Fast polls while a latency-critical consumer has data, slow ones while it idles.

The embedded broker (Tansu) answers a fetch only after ``fetch_max_wait_ms``, data or
not, so a consumer that must react within milliseconds (the bar stage: tick -> bar)
polls every few milliseconds. On an idle mesh that cost ~13 % of a core (the broker's
fetch work, and FastStream's consume loop waking 100 times a second), and the extra
wake-ups were the largest cause of the bars API's latency tails through the gateway
(p99 overhead +2 to +12 ms polling, +0.6 to +2 ms not; docs/architecture.md).

A ``PollPacer`` keeps a subscriber's fast settings while records arrive and, after
``idle_after_s`` without any, switches it to ``idle_wait_ms``; the first record switches
it back. The price: the first record after an idle spell may wait up to ``idle_wait_ms``
longer. A real Kafka answers a waiting fetch as soon as data arrives, so there the
pacer only lowers the idle poll rate.

A ``burst`` pace, faster still, can follow each record for ``burst_s``: where one record announces
others within milliseconds (a bar its feature vector, a vector its predictions and signal), the
feeds poll every couple of milliseconds for that moment only.

And where records come at known times (bars close on the minute), an ``expected`` predicate
(``around_period``) puts the pacer on its fastest pace just before they are due, so the first
record does not pay for an idle spell; outside those moments it may idle after a short quiet.

One pacer can drive several subscribers that wake together (``PollPacer(a, b, c, ...)``): a record
on any of them puts them all on the active pace. The intelligence services use that for a chain
of feeds (pattern-validator's signals, and its bars and vectors), where the first record of a bar
announces the others within milliseconds; feeds that wake together may also share one consumer
(``ServiceBus.subscriber_of_many``: ai-orchestration's vectors, predictions and refusals).
Feeds whose records are not awaited the moment they land (pattern-validator's bars and vectors
come tens of milliseconds before the signal that needs them) are ``steady``:
they wake and idle with the others but poll at the active pace while the others burst. Each
feed at the burst pace costs the embedded broker and its service ~500 fetches a second
(``make bench``'s signal path prints what polling alone costs).

It sets two attributes the libraries read on every poll (FastStream's
``batch_timeout_ms`` of the subscriber, aiokafka's fetcher ``_fetch_max_wait_ms``), through
``shared.compat``; ``tests/shared/test_poll_pacer.py`` fails if either stops working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shared import compat
from shared.settings import SignalPathPolling

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pace:
    """How long the broker may hold an empty fetch, and how long FastStream waits between polls."""

    fetch_max_wait_ms: int
    batch_timeout_ms: int


#: How often a pacer with an ``expected`` predicate asks it (at most).
EXPECTED_CHECK_S = 0.25


def around_period(
    period_s: float, *, before_s: float, after_s: float, clock: Callable[[], float] = time.time
) -> Callable[[], bool]:
    """A predicate for ``PollPacer(expected=...)``: true from ``before_s`` before each multiple of
    ``period_s`` (of ``clock``, UTC seconds) until ``after_s`` after it. Bars of every timeframe
    close on the minute, and what follows a bar (its feature vector, predictions, signal) comes
    right after: ``around_period(60, before_s=0.5, after_s=3)``."""

    def expected() -> bool:
        phase = clock() % period_s
        return phase < after_s or phase >= period_s - before_s

    return expected


class PollPacer:
    """Switches one or more batch subscribers (together) between an ``active`` and an ``idle`` pace,
    and, if given one, a ``burst`` pace for ``burst_s`` after each record."""

    def __init__(
        self,
        subscriber: Any,
        *more: Any,
        active: Pace,
        idle: Pace,
        idle_after_s: float = 2.0,
        burst: Pace | None = None,
        burst_s: float = 0.5,
        expected: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        steady: Sequence[Any] = (),
    ) -> None:
        self._subscribers = (subscriber, *more)
        #: Paced with the others, but on the active pace while they burst.
        self._steady = tuple(steady)
        self.active, self.idle, self.burst = active, idle, burst
        self._idle_after_s = idle_after_s
        self._burst_s = burst_s
        self._clock = clock
        self._last_records_at = clock()
        #: Whether records are due now (e.g. ``around_period``: just around a bar's close); while
        #: it says so, the pacer acts as if records arrived, so the first one finds the fast pace.
        self._expected = expected
        self.current = active

    def saw_records(self) -> None:
        """Call from the handler: records arrived, poll fast (now, if idle before)."""
        self._last_records_at = self._clock()
        fastest = self.burst or self.active
        if self.current is not fastest:
            self._apply(fastest)

    def check(self) -> None:
        """Step down: from the burst pace after ``burst_s`` without records, from the active one
        after ``idle_after_s``."""
        if self._expected is not None and self._expected():
            self.saw_records()
        quiet = self._clock() - self._last_records_at
        if self.current is self.burst and quiet >= self._burst_s:
            self._apply(self.active)
        if self.current is self.active and quiet >= self._idle_after_s:
            self._apply(self.idle)

    async def run(self) -> None:
        """Check periodically until cancelled."""
        interval = self._idle_after_s / 4
        if self.burst is not None or self._expected is not None:
            # A burst may begin at any record and an expected spell at any moment: check often enough.
            interval = min(interval, self._burst_s / 2, EXPECTED_CHECK_S)
        while True:
            await asyncio.sleep(interval)
            self.check()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[PollPacer]:
        """``async with pacer.running():`` around the consumer's life."""
        task = asyncio.create_task(self.run(), name="poll-pacer")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _apply(self, pace: Pace) -> None:
        applied = True
        steady = self.active if pace is self.burst else pace
        for subscriber, its_pace in [*((s, pace) for s in self._subscribers), *((s, steady) for s in self._steady)]:
            if compat.set_fetch_max_wait(compat.running_consumer(subscriber), its_pace.fetch_max_wait_ms):
                compat.set_batch_timeout(subscriber, its_pace.batch_timeout_ms)
            else:
                applied = False  # not started yet (or stopping): the next check or record tries again
        if not applied:
            return
        self.current = pace
        log.debug("consumer pace now %s", pace)


#: The signal path's pacer: FastStream's wait between polls on the burst, active and idle paces
#: (subscribers start on the active one).
_BURST_BATCH_TIMEOUT_MS = 2
ACTIVE_BATCH_TIMEOUT_MS = 5
IDLE_BATCH_TIMEOUT_MS = 50
#: How long before a bar is due its feeds start polling fast (the pacer looks every 0.25 s).
_BARS_DUE_BEFORE_S = 0.5


def signal_path_pacer(
    *subscribers: Any, settings: SignalPathPolling, fetch_max_wait_ms: int, steady: Sequence[Any] = ()
) -> PollPacer:
    """One pacer for the feeds that carry a bar's signal (ai-orchestration's, pattern-validator's),
    paced as ``SignalPathPolling`` says; ``fetch_max_wait_ms`` is the platform's active wait.
    ``steady`` feeds never take the burst pace (see the module's docstring)."""
    return PollPacer(
        *subscribers,
        steady=steady,
        active=Pace(fetch_max_wait_ms, ACTIVE_BATCH_TIMEOUT_MS),
        idle=Pace(settings.idle_fetch_max_wait_ms, IDLE_BATCH_TIMEOUT_MS),
        idle_after_s=settings.idle_after_s,
        burst=Pace(settings.burst_fetch_max_wait_ms, _BURST_BATCH_TIMEOUT_MS) if settings.burst_s > 0 else None,
        burst_s=settings.burst_s,
        expected=around_period(settings.bars_every_s, before_s=_BARS_DUE_BEFORE_S, after_s=settings.bars_window_s)
        if settings.bars_every_s > 0
        else None,
    )


__all__ = [
    "ACTIVE_BATCH_TIMEOUT_MS",
    "IDLE_BATCH_TIMEOUT_MS",
    "Pace",
    "PollPacer",
    "around_period",
    "signal_path_pacer",
]
