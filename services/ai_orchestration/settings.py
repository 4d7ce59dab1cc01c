"""ai-orchestration settings (``AI_ORCHESTRATION_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from shared.settings import ServiceSettings


class AiOrchestrationSettings(ServiceSettings):
    #: Every field here is read from ``AI_ORCHESTRATION_<FIELD>``; document each one in README.md.
    pass
