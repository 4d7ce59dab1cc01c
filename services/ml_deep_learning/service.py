"""ml-deep-learning (8013): LSTM / Transformer (torch, CPU) training jobs and online inference.

Feature vectors in (``features.vectors.v1``); for each champion sequence model of the vector's
symbol and timeframe, the window of the series' last vectors ending at it goes through the model
and one prediction comes out (``ml.predictions.v1``), or a refusal (``ml.refusals.v1``). The
models, artifacts (safetensors) and jobs live in the shared model registry (``shared.ml``):
ml-supervised's ``POST /api/v1/models/train`` queues ``lstm``/``transformer`` jobs and this
service's runner claims them (``SELECT ... FOR UPDATE SKIP LOCKED`` per kind).

Threads: online inference uses ``inference_threads`` torch threads (1) and one inter-op thread;
training runs in a worker process at ``worker_niceness`` (10) with the job's ``threads`` (1).
"""

from __future__ import annotations

from services.ml_deep_learning import consumers
from services.ml_deep_learning.inference import SequenceChampions
from services.ml_deep_learning.routes import router
from services.ml_deep_learning.settings import MlDeepLearningSettings
from services.ml_deep_learning.state import MlDeepLearning
from services.ml_deep_learning.windows import Windows
from shared.auth.scopes import MARKET_READ
from shared.events import FeatureDrift, FeatureVector, ModelLifecycle, Prediction, PredictionRefused
from shared.kit.contract import Consumes, Contract
from shared.kit.deps import Bus, HttpClient, Postgres, ServiceIdentity, TokenAuth
from shared.kit.service import Runtime, ServiceDefinition
from shared.ml import REGISTRY_MIGRATIONS
from shared.ml.deep import configure_inference_threads
from shared.ml.sequence import SEQUENCE_KINDS
from shared.ml.service import model_runtime

#: Who acts when the service acts on its own (expiry, drift).
SERVICE_ACTOR = "service:ml-deep-learning"

CONTRACT = Contract(
    produces=(Prediction, PredictionRefused, ModelLifecycle),
    consumes=(
        Consumes(FeatureVector, group=consumers.VECTORS_GROUP, purpose="predict with every champion sequence model"),
        Consumes(ModelLifecycle, group=None, purpose="reload the champions when the registry changes"),
        Consumes(FeatureDrift, group=consumers.DRIFT_GROUP, purpose="flag a sequence model whose inputs drifted"),
    ),
    calls=("database-service",),
)


async def start(rt: Runtime[MlDeepLearningSettings, MlDeepLearning]) -> MlDeepLearning:
    settings = rt.settings
    configure_inference_threads(settings.inference_threads)
    models = model_runtime(rt, SEQUENCE_KINDS, SERVICE_ACTOR)
    champions = SequenceChampions(models.registry)
    await champions.reload()
    windows = Windows(rt.postgres, settings.window_bars)
    rt.log.info("feature vectors restored for the sequence windows: %d", await windows.load())
    consumers.subscribe(rt, champions, windows, models.lifecycle)
    return MlDeepLearning(settings, models.registry, models.runner, champions, models.lifecycle, windows)


SERVICE = ServiceDefinition(
    "ml-deep-learning",
    settings=MlDeepLearningSettings,
    contract=CONTRACT,
    uses=(
        Postgres(shared_migrations=(REGISTRY_MIGRATIONS,)),
        Bus(),
        TokenAuth(),
        HttpClient(),
        ServiceIdentity(scopes=(MARKET_READ,)),  # reads stored bars for training
    ),
    routers=(router,),
    start=start,
)
