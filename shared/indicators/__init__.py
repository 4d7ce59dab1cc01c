"""Streaming technical indicators that give exactly TA-Lib's values, one bar at a time.

``create("RSI", {"timeperiod": 14})`` makes an indicator; ``indicator.update(o, h, l, c, v)``
returns this bar's value per output (``None`` during TA-Lib's warm-up, where TA-Lib has NaN);
``indicator.state()`` / ``Indicator.from_state(state)`` carry it across restarts as JSON.
``compute(name, params, o, h, l, c, v)`` is the batch path over the same objects.
``INDICATORS`` holds the specs (parameters with defaults and ranges, outputs, lookback).
"""

from shared.indicators.blocks import IndicatorError
from shared.indicators.library import Indicator
from shared.indicators.registry import INDICATORS, IndicatorSpec, ParamSpec, compute, create, from_state, spec_of

__all__ = [
    "INDICATORS",
    "Indicator",
    "IndicatorError",
    "IndicatorSpec",
    "ParamSpec",
    "compute",
    "create",
    "from_state",
    "spec_of",
]
