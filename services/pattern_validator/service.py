"""pattern-validator (8014): validates signals (patterns, regime, drift, duplicates)."""

from __future__ import annotations

from services.pattern_validator.routes import router
from services.pattern_validator.settings import PatternValidatorSettings
from services.pattern_validator.state import PatternValidator
from shared.kit.contract import Contract
from shared.kit.service import Runtime, ServiceDefinition

#: What this service publishes (event classes), consumes (Consumes(event, group, purpose)) and calls.
CONTRACT = Contract()


async def start(rt: Runtime[PatternValidatorSettings, PatternValidator]) -> PatternValidator:
    """Wire the service: publishers and subscribers from rt.bus, pools from rt.postgres..., and
    rt.background(...) for loops. Everything declared in CONTRACT must be used here."""
    return PatternValidator(rt.settings)


SERVICE = ServiceDefinition(
    "pattern-validator",
    settings=PatternValidatorSettings,
    contract=CONTRACT,
    uses=(),  # e.g. (Postgres(), Bus(), TokenAuth()) from shared.kit.deps
    routers=(router,),
    start=start,
)
