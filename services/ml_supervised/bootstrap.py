"""Cold start: with no champion tree model at all, train one on the stored history and promote it.

A fresh ``hats up`` has no models, so without this nothing would predict until an operator trained
and promoted one. The data-collector backfills days of bars from the terminal at start
(``DATA_COLLECTOR_HISTORY_DAYS``); this waits until the store holds enough of them, queues an
ordinary training job (the same queue, worker and registry as ``POST /api/v1/models/train``, by
the actor ``bootstrap``) and promotes its model, announced on ``ml.models.v1`` like any promotion.
It never replaces a champion: a registry with one (from an earlier run, or an operator's) is left
alone, and an operator may retire or replace the bootstrap model like any other.
``ML_SUPERVISED_BOOTSTRAP_SYMBOLS`` empty turns it off.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.ml_supervised.inference import Champions
from services.ml_supervised.lifecycle import Lifecycle
from shared.events import Timeframe
from shared.ml.bars import BarSource, BarSourceError
from shared.ml.jobs import JobRunner, JobStore
from shared.ml.registry import ModelRegistry
from shared.ml.training import TrainSpec
from shared.ml.trees import TREE_KINDS

log = logging.getLogger(__name__)

ACTOR = "bootstrap"
NAME = "bootstrap-xgboost-direction"


@dataclass(frozen=True)
class ColdStartPlan:
    """What the cold start trains, and how long it waits for the history."""

    symbols: tuple[str, ...]
    days: float
    min_bars: int
    wait_s: float
    poll_s: float = 5.0
    timeframe: Timeframe = Timeframe.M1
    horizon_bars: int = 5
    folds: int = 3


class ColdStart:
    def __init__(
        self,
        plan: ColdStartPlan,
        registry: ModelRegistry,
        jobs: JobStore,
        runner: JobRunner,
        lifecycle: Lifecycle,
        champions: Champions,
        bars: BarSource,
        clock: Callable[[], dt.datetime],
        ready: Callable[[], Awaitable[None]],
    ) -> None:
        self.plan = plan
        self._registry, self._jobs, self._runner = registry, jobs, runner
        self._lifecycle, self._champions, self._bars = lifecycle, champions, bars
        self._clock, self._ready = clock, ready

    async def run(self) -> None:
        """A background task: the cold start once, then idle (a kit task that ends reads as failed)."""
        await self.once()
        await asyncio.Event().wait()

    async def once(self) -> None:
        """Train and promote a first model if the registry has no champion."""
        if not self.plan.symbols or await self._registry.champions(TREE_KINDS):
            return
        await self._ready()  # the service's own token, to read the stored bars
        leftover = await self._registry.latest(NAME)
        if leftover is not None and leftover.status == "candidate":
            await self._promote(leftover.id)  # trained before a restart, not promoted yet
            return
        symbols = await self._history()
        if not symbols:
            log.warning("cold start: no symbol has %d stored bars; no model trained", self.plan.min_bars)
            return
        end = self._clock()
        spec = TrainSpec(
            name=NAME,
            kind="xgboost",
            task="direction",
            symbols=list(symbols),
            timeframe=self.plan.timeframe,
            start=end - dt.timedelta(days=self.plan.days),
            end=end,
            horizon_bars=self.plan.horizon_bars,
            folds=self.plan.folds,
        )
        job_id = await self._jobs.create(spec, ACTOR)
        self._runner.wake()
        log.info("cold start: training %s on %s (job %s)", NAME, ", ".join(symbols), job_id)
        model_id = await self._finished(job_id)
        if model_id is not None:
            await self._promote(model_id)

    async def _history(self) -> list[str]:
        """The symbols with at least ``min_bars`` stored bars, once all have them or the wait is over."""
        deadline = asyncio.get_running_loop().time() + self.plan.wait_s
        while True:
            end = self._clock()
            start = end - dt.timedelta(days=self.plan.days)
            ready = [s for s in self.plan.symbols if await self._stored(s, start, end) >= self.plan.min_bars]
            if len(ready) == len(self.plan.symbols) or asyncio.get_running_loop().time() >= deadline:
                return ready
            await asyncio.sleep(self.plan.poll_s)

    async def _stored(self, symbol: str, start: dt.datetime, end: dt.datetime) -> int:
        try:
            return len((await self._bars.series(symbol, self.plan.timeframe, start, end)).ts)
        except BarSourceError:
            return 0  # none yet, or the store is away: asked again

    async def _finished(self, job_id: uuid.UUID) -> uuid.UUID | None:
        while True:
            view = await self._jobs.view(job_id)
            if view is not None and view["state"] == "done":
                return uuid.UUID(view["model_id"])
            if view is None or view["state"] == "failed":
                log.error("cold start: training job %s failed: %s", job_id, None if view is None else view["error"])
                return None
            await asyncio.sleep(self.plan.poll_s)

    async def _promote(self, model_id: uuid.UUID) -> None:
        if await self._registry.champions(TREE_KINDS):
            return  # an operator promoted one meanwhile: theirs stands
        await self._lifecycle.promote(model_id, ACTOR)
        await self._champions.reload()
        log.info("cold start: model %s promoted", model_id)


__all__ = ["ACTOR", "NAME", "ColdStart", "ColdStartPlan"]
