"""What ai-orchestration's routes share while it runs, reached as ``OrchestrationDep``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from services.ai_orchestration.orchestrator import Orchestrator
from services.ai_orchestration.settings import AiOrchestrationSettings
from shared.kit.service import state_of


@dataclass(frozen=True)
class AiOrchestration:
    settings: AiOrchestrationSettings
    orchestrator: Orchestrator


#: ``service: OrchestrationDep`` in a route's parameters gives the running service's state.
OrchestrationDep = Annotated[AiOrchestration, state_of(AiOrchestration)]
