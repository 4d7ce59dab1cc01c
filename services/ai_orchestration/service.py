"""ai-orchestration (8003): combines model outputs into signals (ensemble, fallbacks)."""

from __future__ import annotations

from services.ai_orchestration.routes import router
from services.ai_orchestration.settings import AiOrchestrationSettings
from services.ai_orchestration.state import AiOrchestration
from shared.kit.contract import Contract
from shared.kit.service import Runtime, ServiceDefinition

#: What this service publishes (event classes), consumes (Consumes(event, group, purpose)) and calls.
CONTRACT = Contract()


async def start(rt: Runtime[AiOrchestrationSettings, AiOrchestration]) -> AiOrchestration:
    """Wire the service: publishers and subscribers from rt.bus, pools from rt.postgres..., and
    rt.background(...) for loops. Everything declared in CONTRACT must be used here."""
    return AiOrchestration(rt.settings)


SERVICE = ServiceDefinition(
    "ai-orchestration",
    settings=AiOrchestrationSettings,
    contract=CONTRACT,
    uses=(),  # e.g. (Postgres(), Bus(), TokenAuth()) from shared.kit.deps
    routers=(router,),
    start=start,
)
