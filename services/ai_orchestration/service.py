"""ai-orchestration (8003): combines model outputs into signals (ensemble, fallbacks).

Per symbol and bar: the feature vector starts a deadline; the champions' predictions for it
are collected until all are in or the deadline passes; one ``Signal`` goes out (a weighted
ensemble of the models and the seeds' RSI rule, with a calibrated confidence). See
docs/intelligence.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from services.ai_orchestration import consumers
from services.ai_orchestration.catalog import Champions, ModelCatalog, RegistryCatalog
from services.ai_orchestration.checkpoint import SeriesStore
from services.ai_orchestration.orchestrator import Orchestrator
from services.ai_orchestration.routes import router
from services.ai_orchestration.series import SeriesState
from services.ai_orchestration.settings import AiOrchestrationSettings
from services.ai_orchestration.state import AiOrchestration
from shared.bus.epoch import BrokerEpoch
from shared.bus.positioned import unpositioned
from shared.bus.rewind import RewindOnNewLog
from shared.events import FeatureVector, MarketBar, ModelLifecycle, Prediction, PredictionRefused, Signal, Timeframe
from shared.kit.contract import Consumes, Contract
from shared.kit.deps import Bus, Postgres, TokenAuth
from shared.kit.service import Runtime, ServiceDefinition
from shared.ml import REGISTRY_MIGRATIONS
from shared.ml.artifacts import ArtifactStore
from shared.ml.registry import ModelRegistry

#: No group anywhere: every instance reads every event (consumers.py says why).
CONTRACT = Contract(
    produces=(Signal,),
    consumes=(
        Consumes(FeatureVector, group=None, purpose="start a bar's signal; the trend filter's higher timeframe"),
        Consumes(Prediction, group=None, purpose="the ensemble's members; scored later for their hit rates"),
        Consumes(PredictionRefused, group=None, purpose="a member that refused is skipped as refused"),
        Consumes(MarketBar, group=None, purpose="realised outcomes: hit rates and confidence calibration"),
        Consumes(ModelLifecycle, group=None, purpose="flagged (expired, drifted) models are not trusted"),
    ),
)

CatalogFactory = Callable[[Runtime[AiOrchestrationSettings, AiOrchestration]], ModelCatalog]


def definition(catalog: CatalogFactory) -> ServiceDefinition[AiOrchestrationSettings, AiOrchestration]:
    """The service with its champions read from ``catalog(rt)`` (the model registry; tests give a fake)."""

    async def start(rt: Runtime[AiOrchestrationSettings, AiOrchestration]) -> AiOrchestration:
        settings = rt.settings
        store = SeriesStore(rt.postgres)
        states = {
            (symbol, Timeframe(tf)): SeriesState.from_json(settings, data)
            for (symbol, tf), data in (await store.load()).items()
        }
        publisher = rt.bus.publisher(Signal)

        async def publish(signal: Signal) -> None:
            await publisher.publish([signal])

        champions = Champions(catalog(rt), settings.catalog_refresh_s)
        orchestrator = Orchestrator(settings, champions, publish, states)
        subscribers, pacer = consumers.subscribe(rt.bus, orchestrator, settings, rt.platform.kafka_fetch_max_wait_ms)

        async def feeds_positioned() -> str | None:
            return await unpositioned(subscribers)

        async def checkpoint() -> None:
            await store.save(orchestrator.take_dirty())

        async def checkpoints() -> None:
            while True:
                await asyncio.sleep(settings.checkpoint_interval_s)
                await checkpoint()

        async def stop() -> None:
            await orchestrator.close()
            await checkpoint()

        rt.add_check("feeds", feeds_positioned)
        rt.background("checkpoints", checkpoints)
        rt.background("poll-pacer", pacer.run)
        # The group-less feeds read a restarted embedded broker's new log from its start.
        epoch = BrokerEpoch(rt.platform.kafka_servers, client_id="ai-orchestration")
        rt.background("rewind-on-new-log", RewindOnNewLog(subscribers, epoch).run)
        rt.on_stop(epoch.close)
        rt.on_stop(stop)
        return AiOrchestration(settings, orchestrator)

    return ServiceDefinition(
        "ai-orchestration",
        settings=AiOrchestrationSettings,
        contract=CONTRACT,
        # The registry's tables: whichever service starts first creates them.
        uses=(Postgres(shared_migrations=(REGISTRY_MIGRATIONS,)), Bus(), TokenAuth()),
        routers=(router,),
        start=start,
    )


def _registry(rt: Runtime[AiOrchestrationSettings, AiOrchestration]) -> ModelCatalog:
    # Read only: the artifacts are never loaded here.
    return RegistryCatalog(ModelRegistry(rt.postgres, ArtifactStore(rt.platform.hats_var_dir / "models")))


SERVICE = definition(_registry)
