"""ml-supervised (8012): XGBoost / LightGBM training, registry, inference."""

from __future__ import annotations

from services.ml_supervised.routes import router
from services.ml_supervised.settings import MlSupervisedSettings
from services.ml_supervised.state import MlSupervised
from shared.kit.contract import Contract
from shared.kit.service import Runtime, ServiceDefinition

#: What this service publishes (event classes), consumes (Consumes(event, group, purpose)) and calls.
CONTRACT = Contract()


async def start(rt: Runtime[MlSupervisedSettings, MlSupervised]) -> MlSupervised:
    """Wire the service: publishers and subscribers from rt.bus, pools from rt.postgres..., and
    rt.background(...) for loops. Everything declared in CONTRACT must be used here."""
    return MlSupervised(rt.settings)


SERVICE = ServiceDefinition(
    "ml-supervised",
    settings=MlSupervisedSettings,
    contract=CONTRACT,
    uses=(),  # e.g. (Postgres(), Bus(), TokenAuth()) from shared.kit.deps
    routers=(router,),
    start=start,
)
