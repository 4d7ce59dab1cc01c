"""What pattern-validator's routes share while it runs, reached as ``ValidatorDep``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from services.pattern_validator.settings import PatternValidatorSettings
from services.pattern_validator.validator import Validator
from shared.kit.service import state_of


@dataclass(frozen=True)
class PatternValidator:
    settings: PatternValidatorSettings
    validator: Validator


#: ``service: ValidatorDep`` in a route's parameters gives the running service's state.
ValidatorDep = Annotated[PatternValidator, state_of(PatternValidator)]
