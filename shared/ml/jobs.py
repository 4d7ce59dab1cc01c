"""Training jobs: persisted in ``ml.jobs``, claimed by the service that handles their kind, run in
a lower-priority worker process, progress visible by stage.

``POST /api/v1/models/train`` inserts a ``queued`` job and answers its id at once. Each model
service runs a ``JobRunner`` for the kinds it trains (ml-supervised: ``xgboost``, ``lightgbm``;
ml-deep-learning: ``lstm``, ``transformer``): it claims the oldest queued job of its kinds with
``SELECT ... FOR UPDATE SKIP LOCKED`` (so instances and services never take the same job, and
a kind nobody handles simply waits), then moves it through the stages

    loading -> features -> labels -> training fold i/n -> training final -> registering -> done

(or ``failed`` with the error), each logged and written to the row with a percentage. While a
job runs its runner refreshes ``heartbeat_at``; a running job whose heartbeat is older than
``stale_after_s`` belonged to a process that died, and any runner marks it ``failed``
(``interrupted``): after a restart a job shows as failed, never lost or forever running.

CPU-bound work (features, fitting) runs in a one-process pool whose process lowers its own
priority (``os.nice``) and uses ``spec.threads`` threads (1 by default), so the event loop and
the rest of the mesh keep their cores. Bars are read and the model registered in the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import multiprocessing
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import asyncpg

from shared.ml import training
from shared.ml.bars import BarSource
from shared.ml.dataset import FeatureSetFactory
from shared.ml.kinds import kind_of, window_of
from shared.ml.registry import ModelRecord, ModelRegistry, NewModel
from shared.ml.training import TrainSpec

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


class JobView(dict[str, Any]):
    """A job as ``GET /api/v1/models/jobs/{id}`` shows it."""


def _view(row: asyncpg.Record, now: dt.datetime) -> JobView:
    began = row["started_at"] or row["created_at"]
    finished = row["finished_at"] or now
    return JobView(
        id=str(row["id"]),
        kind=row["kind"],
        state=row["state"],
        stage=row["stage"],
        percent=round(float(row["percent"]), 1),
        elapsed_s=round(max(0.0, (finished - began).total_seconds()), 3),
        created_at=row["created_at"].isoformat(),
        created_by=row["created_by"],
        started_at=None if row["started_at"] is None else row["started_at"].isoformat(),
        finished_at=None if row["finished_at"] is None else row["finished_at"].isoformat(),
        model_id=None if row["model_id"] is None else str(row["model_id"]),
        error=row["error"],
        spec=json.loads(row["spec"]),
    )


class JobStore:
    """``ml.jobs`` on a PostgreSQL pool (the ``model-registry`` migration set)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, spec: TrainSpec, actor: str) -> uuid.UUID:
        job_id = uuid.uuid4()
        await self.pool.execute(
            "INSERT INTO ml.jobs (id, kind, spec, created_by) VALUES ($1, $2, $3, $4)",
            job_id,
            spec.kind,
            spec.model_dump_json(),
            actor,
        )
        return job_id

    async def view(self, job_id: uuid.UUID) -> JobView | None:
        row = await self.pool.fetchrow("SELECT *, now() AS db_now FROM ml.jobs WHERE id = $1", job_id)
        return None if row is None else _view(row, row["db_now"])

    async def claim(self, kinds: Sequence[str], worker: str) -> tuple[uuid.UUID, TrainSpec, str] | None:
        """Take the oldest queued job of ``kinds`` (others' claims skipped); its id, spec and creator."""
        row = await self.pool.fetchrow(
            """UPDATE ml.jobs SET state = 'running', stage = 'loading', percent = 0, started_at = now(),
                   heartbeat_at = now(), worker = $2
               WHERE id = (SELECT id FROM ml.jobs WHERE state = 'queued' AND kind = ANY($1)
                           ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1)
               RETURNING id, spec, created_by""",
            list(kinds),
            worker,
        )
        if row is None:
            return None
        return row["id"], TrainSpec.model_validate_json(row["spec"]), row["created_by"]

    async def progress(self, job_id: uuid.UUID, stage: str, percent: float) -> None:
        await self.pool.execute(
            "UPDATE ml.jobs SET stage = $2, percent = $3, heartbeat_at = now() WHERE id = $1 AND state = 'running'",
            job_id,
            stage,
            percent,
        )

    async def heartbeat(self, job_id: uuid.UUID) -> None:
        await self.pool.execute("UPDATE ml.jobs SET heartbeat_at = now() WHERE id = $1 AND state = 'running'", job_id)

    async def finish(self, job_id: uuid.UUID, model_id: uuid.UUID) -> None:
        await self.pool.execute(
            """UPDATE ml.jobs SET state = 'done', stage = 'done', percent = 100, finished_at = now(), model_id = $2
               WHERE id = $1""",
            job_id,
            model_id,
        )

    async def fail(self, job_id: uuid.UUID, error: str) -> None:
        await self.pool.execute(
            """UPDATE ml.jobs SET state = 'failed', stage = 'failed', finished_at = now(), error = $2
               WHERE id = $1 AND state = 'running'""",
            job_id,
            error[:2000],
        )

    async def fail_interrupted(self, kinds: Sequence[str], stale_after_s: float) -> list[uuid.UUID]:
        """Mark running jobs of ``kinds`` whose runner stopped beating ``failed`` (``interrupted``)."""
        rows = await self.pool.fetch(
            """UPDATE ml.jobs SET state = 'failed', stage = 'failed', finished_at = now(),
                   error = 'interrupted: the process running it stopped (at stage ' || stage || ')'
               WHERE state = 'running' AND kind = ANY($1)
                 AND heartbeat_at < now() - make_interval(secs => $2)
               RETURNING id""",
            list(kinds),
            stale_after_s,
        )
        return [r["id"] for r in rows]


def _lower_priority(niceness: int) -> None:
    """Worker-process initialiser: below the services' priority (Linux nice values are per process here)."""
    if niceness:
        os.nice(niceness)


def worker_pool(niceness: int = 10) -> ProcessPoolExecutor:
    """The one-process pool training runs in ("spawn": no copy of the service's loop, sockets or threads)."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_lower_priority,
        initargs=(niceness,),
    )


@dataclass(frozen=True)
class RunnerSettings:
    #: Kinds this runner trains.
    kinds: tuple[str, ...]
    #: How often the queue is looked at when idle, seconds.
    poll_interval_s: float = 2.0
    #: How often a running job's heartbeat is refreshed, seconds.
    heartbeat_s: float = 5.0
    #: A running job without a heartbeat this long was interrupted, seconds.
    stale_after_s: float = 30.0
    #: Default lifetime of a model after its training window's end, days.
    expires_after_days: float = 14.0


class JobRunner:
    """Claims and runs the jobs of its kinds, one at a time (see the module docstring)."""

    def __init__(
        self,
        store: JobStore,
        registry: ModelRegistry,
        bars: BarSource,
        feature_set: FeatureSetFactory,
        settings: RunnerSettings,
        *,
        worker: str,
        executor: Callable[[], Executor] = worker_pool,
        on_registered: Callable[[ModelRecord], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.bars = bars
        self.feature_set = feature_set
        self.settings = settings
        self.worker = worker
        self._new_executor = executor
        self._executor: Executor | None = None
        self._on_registered = on_registered
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A job was queued: look now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Forever: fail interrupted jobs, claim one, run it; wait for a wake-up or the next poll."""
        while True:
            interrupted = await self.store.fail_interrupted(self.settings.kinds, self.settings.stale_after_s)
            for job_id in interrupted:
                log.warning("training job %s was interrupted (its process stopped); marked failed", job_id)
            while await self.run_one():
                pass
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_s)

    async def run_one(self) -> bool:
        """Claim and run one job; False if none was queued."""
        claimed = await self.store.claim(self.settings.kinds, self.worker)
        if claimed is None:
            return False
        job_id, spec, actor = claimed
        beat = asyncio.create_task(self._heartbeat(job_id))
        try:
            model = await self._train(job_id, spec, actor)
        except Exception as exc:  # any failure is the job's result, never the runner's end
            error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, BrokenProcessPool):
                self._executor = None  # the worker died; the next job gets a new one
            log.warning("training job %s failed: %s", job_id, error, extra={"job_id": str(job_id)})
            await self.store.fail(job_id, error)
        else:
            await self.store.finish(job_id, model.id)
            log.info(
                "training job %s done: %s v%d (%s)",
                job_id,
                model.name,
                model.version,
                model.id,
                extra={"job_id": str(job_id), "model_id": str(model.id)},
            )
        finally:
            beat.cancel()
        return True

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _heartbeat(self, job_id: uuid.UUID) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            await self.store.heartbeat(job_id)

    async def _in_worker(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        if self._executor is None:
            self._executor = self._new_executor()
        future = self._executor.submit(fn, *args, **kwargs)
        return await asyncio.wrap_future(future)

    async def _stage(self, job_id: uuid.UUID, stage: str, percent: float) -> None:
        log.info("training job %s: %s (%.0f%%)", job_id, stage, percent, extra={"job_id": str(job_id)})
        await self.store.progress(job_id, stage, percent)

    async def _train(self, job_id: uuid.UUID, spec: TrainSpec, actor: str) -> ModelRecord:
        began = time.monotonic()
        await self._stage(job_id, "loading", 2)
        series = [await self.bars.series(s, spec.timeframe, spec.start, spec.end) for s in spec.symbols]
        await self._stage(job_id, "features", 10)
        matrices = await self._in_worker(training.features, series, self.feature_set)
        await self._stage(job_id, "labels", 30)
        params = _hyperparameters(spec)
        data = training.assemble(spec, matrices, window_of(kind_of(spec.kind), params))
        embargo_ns = spec.embargo * spec.timeframe.nanos
        folds = training.folds_of(spec, data)
        per_fold = []
        for i, (train, test, removed) in enumerate(folds, 1):
            await self._stage(job_id, f"training fold {i}/{len(folds)}", 35 + 50 * (i - 1) / len(folds))
            scores = await self._in_worker(
                training.fit_fold,
                spec.kind,
                spec.task,
                data.x[train],
                data.y[train],
                data.x[test],
                data.y[test],
                params,
                spec.seed,
                spec.threads,
                training.Intervals(data.start_ns[train], data.end_ns[train], embargo_ns),
            )
            per_fold.append(scores | {k: float(v) for k, v in removed.items()})
        await self._stage(job_id, "training final", 85)
        final = await self._in_worker(
            training.fit_final, spec.kind, spec.task, data, params, spec.seed, spec.threads, embargo_ns
        )
        await self._stage(job_id, "registering", 95)
        train_end = _time(data.last_bar_ns)
        days = spec.expires_after_days or self.settings.expires_after_days
        model = await self.registry.register(
            NewModel(
                name=spec.name,
                kind=spec.kind,
                task=spec.task,
                horizon_bars=spec.horizon_bars,
                symbols=spec.symbols,
                timeframe=spec.timeframe,
                feature_set=data.feature_set,
                features=data.names,
                train_start=_time(data.first_bar_ns),
                train_end=train_end,
                labelling=spec.labelling.model_dump(),
                hyperparameters=params,
                seed=spec.seed,
                metrics={
                    "folds": per_fold,
                    "aggregate": training.aggregate(per_fold),
                    "rows": data.x.shape[0],
                    "dropped_warmup": data.dropped_warmup,
                    "dropped_unlabelled": data.dropped_unlabelled,
                    "embargo_bars": spec.embargo,
                    "past_only": spec.past_only,
                    "training_seconds": round(time.monotonic() - began, 3),
                    **({"final": final.info} if final.info else {}),
                },
                score_scale=final.score_scale,
                data_fingerprint=final.fingerprint,
                training_rows=int(data.x.shape[0]),
                feature_distributions=final.distributions,
                created_by=actor,
                expires_at=train_end + dt.timedelta(days=days),
                job_id=job_id,
            ),
            final.artifact,
        )
        if self._on_registered is not None:
            await self._on_registered(model)
        return model


def _hyperparameters(spec: TrainSpec) -> dict[str, Any]:
    return kind_of(spec.kind).hyperparameters(spec.hyperparameters)


def _time(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC)


__all__ = ["JobRunner", "JobStore", "JobView", "RunnerSettings", "worker_pool"]
