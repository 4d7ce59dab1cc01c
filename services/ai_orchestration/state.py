"""What ai-orchestration's routes and handlers share while it runs, reached as ``AiOrchestrationDep``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from services.ai_orchestration.settings import AiOrchestrationSettings
from shared.kit.service import state_of


@dataclass(frozen=True)
class AiOrchestration:
    settings: AiOrchestrationSettings


#: ``service: AiOrchestrationDep`` in a route's parameters gives the running service's state.
AiOrchestrationDep = Annotated[AiOrchestration, state_of(AiOrchestration)]
