"""What both model services (ml-supervised, ml-deep-learning) are built from: their common settings,
the registry/lifecycle/job-runner wiring, and their three feeds.

Each service serves its own model kinds from the one shared registry; only how a batch of feature
vectors becomes predictions differs (a tree model reads one vector, a sequence model a window of
them), and that is the ``predict`` (and, for a sequence model's windows, the ``prepare``) a service
passes to ``subscribe_model_feeds``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy

from shared.bus.consume import RAW_BATCH, RecentIds, decode_records
from shared.bus.pacing import ACTIVE_BATCH_TIMEOUT_MS, IDLE_BATCH_TIMEOUT_MS, PollPacer, signal_path_pacer
from shared.events import FeatureDrift, FeatureVector, ModelLifecycle, Prediction, PredictionRefused
from shared.kit.bus import ServiceBus
from shared.kit.service import Runtime
from shared.ml.artifacts import ArtifactStore
from shared.ml.bars import HttpBarSource
from shared.ml.jobs import JobRunner, JobStore, RunnerSettings, worker_pool
from shared.ml.lifecycle import Lifecycle
from shared.ml.registry import ModelRegistry
from shared.ml.settings import ModelServiceSettings
from shared.ml.training import load_factory
from shared.settings import SignalPathPolling

log = logging.getLogger(__name__)

#: How long the broker may hold an empty fetch of the slow feeds (lifecycle changes, drift flags):
#: they change a few times a day, and a reaction within a fraction of a second is plenty.
SLOW_FEED_FETCH_MAX_WAIT_MS = 250


@dataclass(frozen=True)
class ModelRuntime:
    """A model service's registry, lifecycle, job queue and runner, over its own ``kinds``."""

    clock: Callable[[], dt.datetime]
    registry: ModelRegistry
    lifecycle: Lifecycle
    jobs: JobStore
    bars: HttpBarSource
    runner: JobRunner


def model_runtime(rt: Runtime[Any, Any], kinds: Sequence[str], actor: str) -> ModelRuntime:
    """Build the service's registry (artifacts under ``var/models``), its lifecycle (``actor`` acts
    on expiry and drift), the job queue and a runner claiming the jobs of ``kinds``; and schedule
    the runner and the periodic expiry check as background tasks of ``rt`` (whose settings are
    ``ModelServiceSettings``)."""
    settings: ModelServiceSettings = rt.settings
    wall = rt.overrides.wall_clock or time.time

    def clock() -> dt.datetime:
        return dt.datetime.fromtimestamp(wall(), dt.UTC)

    registry = ModelRegistry(rt.postgres, ArtifactStore(rt.platform.hats_var_dir / "models"))
    lifecycle = Lifecycle(registry, rt.bus.publisher(ModelLifecycle), kinds, clock, actor)
    jobs = JobStore(rt.postgres)
    bars = HttpBarSource(rt.http, rt.url_of("database-service"))
    runner = JobRunner(
        jobs,
        registry,
        bars,
        load_factory(settings.feature_set),
        RunnerSettings(
            kinds=tuple(kinds),
            poll_interval_s=settings.job_poll_interval_s,
            heartbeat_s=settings.job_heartbeat_s,
            stale_after_s=settings.job_stale_after_s,
            expires_after_days=settings.expires_after_days,
        ),
        worker=f"{rt.name}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        executor=partial(worker_pool, settings.worker_niceness),
        on_registered=lifecycle.registered,
    )
    rt.background("training-jobs", runner.run, restart_after_s=5.0)
    rt.background(
        "expiry-check", partial(lifecycle.run_expiry_checks, settings.expiry_check_interval_s), restart_after_s=30.0
    )
    rt.on_stop(runner.close)
    return ModelRuntime(clock, registry, lifecycle, jobs, bars, runner)


class ReloadableChampions(Protocol):
    """A service's champions: of which kinds, and reloaded from the registry on a change."""

    @property
    def kinds(self) -> Sequence[str]: ...

    async def reload(self) -> None: ...


#: One feature vector -> the predictions (one per champion that takes it) and refusals to publish.
Predict = Callable[[FeatureVector], tuple[list[Prediction], list[PredictionRefused]]]
#: What must happen to a batch's fresh vectors, in order, before any of them is predicted.
Prepare = Callable[[list[FeatureVector]], Awaitable[None]]


def subscribe_model_feeds(
    rt: Runtime[Any, Any],
    *,
    vectors_group: str,
    drift_group: str,
    champions: ReloadableChampions,
    lifecycle: Lifecycle,
    predict: Predict,
    prepare: Prepare | None = None,
) -> PollPacer:
    """Subscribe a model service to its three feeds and return the pacer of the vectors' feed
    (already running as a background task of ``rt``):

    - feature vectors (group ``vectors_group``) -> ``prepare`` (the batch's fresh vectors), then
      ``predict`` for each -> predictions and refusals published,
      the batch NACKed (redelivered) when publishing fails; a vector seen before is not predicted
      again (ids are deterministic, so a redelivery would publish the same events);
    - lifecycle changes (no group: every instance, from now on) -> the champions reloaded when one
      of their kinds changed;
    - drift flags (group ``drift_group``) -> the drifted model flagged (idempotent).

    The vectors' feed is on the signal's path: paced like ai-orchestration's
    (``shared.bus.pacing.signal_path_pacer``); the other two poll slowly. Undecodable records go to
    the dead-letter topic; nothing else stops.
    """
    bus: ServiceBus = rt.bus
    predictions = bus.publisher(Prediction)
    refusals = bus.publisher(PredictionRefused)
    vectors_dlq = bus.dead_letters(vectors_group)
    drift_dlq = bus.dead_letters(drift_group)
    seen = RecentIds(50_000)
    fetch_max_wait_ms = rt.platform.kafka_fetch_max_wait_ms
    slow: dict[str, Any] = {
        "batch": True,
        "batch_timeout_ms": IDLE_BATCH_TIMEOUT_MS,
        "fetch_max_wait_ms": SLOW_FEED_FETCH_MAX_WAIT_MS,
        **RAW_BATCH,
    }

    vectors_sub = bus.subscriber(
        FeatureVector,
        group=vectors_group,
        batch=True,
        max_records=500,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch_timeout_ms=ACTIVE_BATCH_TIMEOUT_MS,
        fetch_max_wait_ms=fetch_max_wait_ms,
        **RAW_BATCH,
    )

    @vectors_sub
    async def predict_vectors(msg: KafkaMessage) -> None:
        pacer.saw_records()
        decoded = await decode_records(FeatureVector, msg.raw_message, vectors_dlq)
        fresh = seen.fresh([vector for _, vector in decoded])
        try:
            if prepare is not None:
                await prepare(fresh)
            out: list[Prediction] = []
            refused: list[PredictionRefused] = []
            for vector in fresh:
                p, r = predict(vector)
                out.extend(p)
                refused.extend(r)
            await predictions.publish(out)
            await refusals.publish(refused)
        except Exception:
            seen.forget(fresh)
            raise  # NACK: the batch is redelivered

    settings: SignalPathPolling = rt.settings
    pacer = signal_path_pacer(vectors_sub, settings=settings, fetch_max_wait_ms=fetch_max_wait_ms)
    rt.background("poll-pacer", pacer.run)

    # Every instance reloads its champions on every change (no group, only changes from now on:
    # the registry, read at start, holds what came before).
    @bus.subscriber(ModelLifecycle, group=None, auto_offset_reset="latest", **slow)
    async def follow_lifecycle(msg: KafkaMessage) -> None:
        relevant = False
        for record in msg.raw_message:
            try:
                event = ModelLifecycle.model_validate_json(record.value or b"")
            except ValueError:
                log.warning("ignoring an undecodable lifecycle event at offset %s", record.offset)
                continue
            relevant = relevant or event.model_kind in champions.kinds
        if relevant:
            await champions.reload()

    @bus.subscriber(
        FeatureDrift, group=drift_group, auto_offset_reset="earliest", ack_policy=AckPolicy.NACK_ON_ERROR, **slow
    )
    async def flag_drift(msg: KafkaMessage) -> None:
        for _, drift in await decode_records(FeatureDrift, msg.raw_message, drift_dlq):
            await lifecycle.on_drift(drift)  # idempotent; models of other kinds are left to their service

    return pacer


__all__ = [
    "SLOW_FEED_FETCH_MAX_WAIT_MS",
    "ModelRuntime",
    "Predict",
    "Prepare",
    "ReloadableChampions",
    "model_runtime",
    "subscribe_model_feeds",
]
