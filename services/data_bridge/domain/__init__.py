"""Pure domain logic of the data bridge: tick validation and bar aggregation (no I/O)."""

from services.data_bridge.domain.bars import (
    AddResult,
    BarBuilder,
    BarBuilderStats,
    TickOutcome,
    bars_from_ticks,
)
from services.data_bridge.domain.validation import Rejection, RejectReason, TickValidator

__all__ = [
    "AddResult",
    "BarBuilder",
    "BarBuilderStats",
    "RejectReason",
    "Rejection",
    "TickOutcome",
    "TickValidator",
    "bars_from_ticks",
]
