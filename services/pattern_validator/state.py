"""What pattern-validator's routes and handlers share while it runs, reached as ``PatternValidatorDep``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from services.pattern_validator.settings import PatternValidatorSettings
from shared.kit.service import state_of


@dataclass(frozen=True)
class PatternValidator:
    settings: PatternValidatorSettings


#: ``service: PatternValidatorDep`` in a route's parameters gives the running service's state.
PatternValidatorDep = Annotated[PatternValidator, state_of(PatternValidator)]
