"""pattern-validator (8014): validates signals (patterns, regime, drift, duplicates).

Every ``Signal`` gets one verdict: ``ValidatedSignal`` (with notes) or ``RejectedSignal`` (with
machine-readable reasons), stored in PostgreSQL and listed by ``GET /api/v1/signals``; drift
of a model's live inputs is also its own ``FeatureDrift`` event. See docs/intelligence.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.pattern_validator import consumers
from services.pattern_validator.inputs import Inputs
from services.pattern_validator.psi import RegistryDistributions, TrainingDistributions
from services.pattern_validator.routes import router
from services.pattern_validator.settings import PatternValidatorSettings
from services.pattern_validator.state import PatternValidator
from services.pattern_validator.store import VerdictStore
from services.pattern_validator.validator import Validator, Verdict
from shared.bus.epoch import BrokerEpoch
from shared.bus.positioned import unpositioned
from shared.bus.rewind import RewindOnNewLog
from shared.events import FeatureDrift, FeatureVector, MarketBar, RejectedSignal, Signal, ValidatedSignal
from shared.kit.contract import Consumes, Contract
from shared.kit.deps import Bus, Postgres, TokenAuth
from shared.kit.service import Runtime, ServiceDefinition
from shared.ml import REGISTRY_MIGRATIONS
from shared.ml.artifacts import ArtifactStore
from shared.ml.registry import ModelRegistry

CONTRACT = Contract(
    produces=(ValidatedSignal, RejectedSignal, FeatureDrift),
    consumes=(
        Consumes(Signal, group=consumers.SIGNALS_GROUP, purpose="one verdict per signal"),
        Consumes(MarketBar, group=None, purpose="recent bars: staleness, gaps, candlestick patterns"),
        Consumes(FeatureVector, group=None, purpose="the signal's regime; live windows for drift (PSI)"),
    ),
)

DistributionsFactory = Callable[[Runtime[PatternValidatorSettings, PatternValidator]], TrainingDistributions]


def definition(distributions: DistributionsFactory) -> ServiceDefinition[PatternValidatorSettings, PatternValidator]:
    """The service with training distributions from ``distributions(rt)`` (the model registry; tests give a fake)."""

    async def start(rt: Runtime[PatternValidatorSettings, PatternValidator]) -> PatternValidator:
        settings = rt.settings
        inputs = Inputs(settings.psi_window)
        validated, rejected = rt.bus.publisher(ValidatedSignal), rt.bus.publisher(RejectedSignal)
        drift = rt.bus.publisher(FeatureDrift)

        async def publish_verdict(verdict: Verdict) -> None:
            if isinstance(verdict, ValidatedSignal):
                await validated.publish([verdict])
            else:
                await rejected.publish([verdict])

        async def publish_drift(event: FeatureDrift) -> None:
            await drift.publish([event])

        validator = Validator(
            settings,
            inputs,
            VerdictStore(rt.postgres),
            distributions(rt),
            publish_verdict,
            publish_drift,
            rt.overrides.wall_clock or time.time,
        )
        await validator.restore()
        feeds, pacer = consumers.subscribe(rt.bus, validator, inputs, settings, rt.platform.kafka_fetch_max_wait_ms)

        async def feeds_positioned() -> str | None:
            return await unpositioned(feeds)

        rt.add_check("feeds", feeds_positioned)
        rt.background("poll-pacer", pacer.run)
        # The group-less feeds read a restarted embedded broker's new log from its start.
        epoch = BrokerEpoch(rt.platform.kafka_servers, client_id="pattern-validator")
        rt.background("rewind-on-new-log", RewindOnNewLog(feeds, epoch).run)
        rt.on_stop(epoch.close)
        return PatternValidator(settings, validator)

    return ServiceDefinition(
        "pattern-validator",
        settings=PatternValidatorSettings,
        contract=CONTRACT,
        # The registry's tables: whichever service starts first creates them.
        uses=(Postgres(shared_migrations=(REGISTRY_MIGRATIONS,)), Bus(), TokenAuth()),
        routers=(router,),
        start=start,
    )


def _registry(rt: Runtime[PatternValidatorSettings, PatternValidator]) -> TrainingDistributions:
    # Read only: the artifacts are never loaded here.
    return RegistryDistributions(ModelRegistry(rt.postgres, ArtifactStore(rt.platform.hats_var_dir / "models")))


SERVICE = definition(_registry)
