"""ml-supervised (8012): XGBoost / LightGBM training jobs, the model registry, online inference.

Feature vectors in (``features.vectors.v1``), one prediction per champion tree model out
(``ml.predictions.v1``), or a refusal (``ml.refusals.v1``) when the vector is not the model's.
Training reads stored bars from database-service and runs the live feature set over them
(``shared.ml``); models, artifacts and jobs live in the shared model registry.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
import uuid
from functools import partial

from services.ml_supervised import consumers
from services.ml_supervised.bootstrap import ColdStart, ColdStartPlan
from services.ml_supervised.inference import Champions
from services.ml_supervised.lifecycle import SERVICE_ACTOR, Lifecycle
from services.ml_supervised.routes import predict_router, router
from services.ml_supervised.settings import MlSupervisedSettings
from services.ml_supervised.state import MlSupervised
from shared.auth.scopes import MARKET_READ
from shared.events import FeatureDrift, FeatureVector, ModelLifecycle, Prediction, PredictionRefused
from shared.kit.contract import Consumes, Contract
from shared.kit.deps import Bus, HttpClient, Postgres, ServiceIdentity, TokenAuth
from shared.kit.service import Runtime, ServiceDefinition
from shared.ml import REGISTRY_MIGRATIONS
from shared.ml.artifacts import ArtifactStore
from shared.ml.bars import HttpBarSource
from shared.ml.jobs import JobRunner, JobStore, RunnerSettings, worker_pool
from shared.ml.registry import ModelRegistry
from shared.ml.training import load_factory
from shared.ml.trees import TREE_KINDS

CONTRACT = Contract(
    produces=(Prediction, PredictionRefused, ModelLifecycle),
    consumes=(
        Consumes(FeatureVector, group=consumers.VECTORS_GROUP, purpose="predict with every champion tree model"),
        Consumes(ModelLifecycle, group=None, purpose="reload the champions when the registry changes"),
        Consumes(FeatureDrift, group=consumers.DRIFT_GROUP, purpose="flag a model whose inputs drifted"),
    ),
    calls=("database-service", "ml-deep-learning"),
)


async def start(rt: Runtime[MlSupervisedSettings, MlSupervised]) -> MlSupervised:
    settings = rt.settings
    wall = rt.overrides.wall_clock or time.time

    def clock() -> dt.datetime:
        return dt.datetime.fromtimestamp(wall(), dt.UTC)

    registry = ModelRegistry(rt.postgres, ArtifactStore(rt.platform.hats_var_dir / "models"))
    lifecycle = Lifecycle(registry, rt.bus.publisher(ModelLifecycle), TREE_KINDS, clock, SERVICE_ACTOR)
    champions = Champions(registry, TREE_KINDS)
    await champions.reload()
    jobs = JobStore(rt.postgres)
    bars = HttpBarSource(rt.http, rt.url_of("database-service"))
    runner = JobRunner(
        jobs,
        registry,
        bars,
        load_factory(settings.feature_set),
        RunnerSettings(
            kinds=TREE_KINDS,
            poll_interval_s=settings.job_poll_interval_s,
            heartbeat_s=settings.job_heartbeat_s,
            stale_after_s=settings.job_stale_after_s,
            expires_after_days=settings.expires_after_days,
        ),
        worker=f"{rt.name}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        executor=partial(worker_pool, settings.worker_niceness),
        on_registered=lifecycle.registered,
    )
    cold_start = ColdStart(
        ColdStartPlan(
            settings.bootstrap_symbols, settings.bootstrap_days, settings.bootstrap_min_bars, settings.bootstrap_wait_s
        ),
        registry,
        jobs,
        runner,
        lifecycle,
        champions,
        bars,
        clock,
        rt.identity.ready,
    )
    consumers.subscribe(rt.bus, champions, lifecycle, rt.platform.kafka_fetch_max_wait_ms)
    rt.background("cold-start", cold_start.run, restart_after_s=30.0)
    rt.background("training-jobs", runner.run, restart_after_s=5.0)
    rt.background(
        "expiry-check", partial(lifecycle.run_expiry_checks, settings.expiry_check_interval_s), restart_after_s=30.0
    )
    rt.on_stop(runner.close)
    return MlSupervised(
        settings, registry, jobs, runner, champions, lifecycle, clock, rt.http, rt.url_of("ml-deep-learning")
    )


SERVICE = ServiceDefinition(
    "ml-supervised",
    settings=MlSupervisedSettings,
    contract=CONTRACT,
    uses=(
        Postgres(shared_migrations=(REGISTRY_MIGRATIONS,)),
        Bus(),
        TokenAuth(),
        HttpClient(),
        ServiceIdentity(scopes=(MARKET_READ,)),  # reads stored bars for training
    ),
    routers=(router, predict_router),
    start=start,
)
