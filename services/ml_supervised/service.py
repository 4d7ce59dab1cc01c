"""ml-supervised (8012): XGBoost / LightGBM training jobs, the model registry, online inference.

Feature vectors in (``features.vectors.v1``), one prediction per champion tree model out
(``ml.predictions.v1``), or a refusal (``ml.refusals.v1``) when the vector is not the model's.
Training reads stored bars from database-service and runs the live feature set over them
(``shared.ml``); models, artifacts and jobs live in the shared model registry.
"""

from __future__ import annotations

from services.ml_supervised import consumers
from services.ml_supervised.bootstrap import ColdStart, ColdStartPlan
from services.ml_supervised.inference import Champions
from services.ml_supervised.lifecycle import SERVICE_ACTOR
from services.ml_supervised.routes import predict_router, router
from services.ml_supervised.settings import MlSupervisedSettings
from services.ml_supervised.state import MlSupervised
from shared.auth.scopes import MARKET_READ
from shared.events import FeatureDrift, FeatureVector, ModelLifecycle, Prediction, PredictionRefused
from shared.kit.contract import Consumes, Contract
from shared.kit.deps import Bus, HttpClient, Postgres, ServiceIdentity, TokenAuth
from shared.kit.service import Runtime, ServiceDefinition
from shared.ml import REGISTRY_MIGRATIONS
from shared.ml.service import model_runtime
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
    models = model_runtime(rt, TREE_KINDS, SERVICE_ACTOR)
    champions = Champions(models.registry, TREE_KINDS)
    await champions.reload()
    cold_start = ColdStart(
        ColdStartPlan(
            settings.bootstrap_symbols, settings.bootstrap_days, settings.bootstrap_min_bars, settings.bootstrap_wait_s
        ),
        models.registry,
        models.jobs,
        models.runner,
        models.lifecycle,
        champions,
        models.bars,
        models.clock,
        rt.identity.ready,
    )
    consumers.subscribe(rt, champions, models.lifecycle)
    rt.background("cold-start", cold_start.run, restart_after_s=30.0)
    return MlSupervised(
        settings,
        models.registry,
        models.jobs,
        models.runner,
        champions,
        models.lifecycle,
        models.clock,
        rt.http,
        rt.url_of("ml-deep-learning"),
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
