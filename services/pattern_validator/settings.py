"""pattern-validator settings (``PATTERN_VALIDATOR_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from shared.settings import ServiceSettings


class PatternValidatorSettings(ServiceSettings):
    #: Every field here is read from ``PATTERN_VALIDATOR_<FIELD>``; document each one in README.md.
    pass
