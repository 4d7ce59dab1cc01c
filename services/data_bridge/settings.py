"""data-bridge settings (``DATA_BRIDGE_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from shared.bar_history import DEFAULT_MAX_BARS_PER_REQUEST
from shared.settings import ServiceSettings


class DataBridgeSettings(ServiceSettings):
    #: Largest tick batch one ingest request may carry (bigger ones get 413).
    max_ticks_per_request: int = 10_000
    #: Largest batch of historical bars one ``POST /api/v1/ingest/bars`` may carry (bigger ones get 413).
    max_bars_per_request: int = Field(default=DEFAULT_MAX_BARS_PER_REQUEST, ge=1)
    #: How long storing one batch of historical bars in database-service may take, seconds
    #: (keep it below ``API_GATEWAY_UPSTREAM_TIMEOUT_S``, so the caller hears why).
    store_timeout_s: float = Field(default=8.0, gt=0)
    #: Ingest requests handled at once; beyond it a request gets 503 with ``Retry-After`` at
    #: once, its body unread and nothing published (``services/data_bridge/admission.py``).
    max_inflight_requests: int = Field(default=16, ge=1)
    #: The ``Retry-After`` of that 503, seconds.
    inflight_retry_after_s: int = Field(default=1, ge=1)
    #: Symbols accepted; empty = any well-formed symbol.
    symbols: frozenset[str] = frozenset()
    #: How far a tick may lie in the future (clock skew allowance), seconds.
    max_future_s: int = 60
    #: Widest accepted spread relative to the bid.
    max_spread_ratio: Decimal = Decimal("0.05")
    #: Event-time allowance for out-of-order ticks before a bar is final, milliseconds.
    allowed_lateness_ms: int = 2_000
    #: How often the bar builder's state is checkpointed with its offsets, milliseconds.
    checkpoint_interval_ms: int = 1_000
    #: The bar stage polls the broker every ``KAFKA_FETCH_MAX_WAIT_MS`` while ticks flow; after
    #: this many seconds without one it polls every ``idle_fetch_max_wait_ms`` instead
    #: (``shared/bus/pacing.py``). The first tick after that waits up to that much longer.
    idle_after_s: float = 2.0
    idle_fetch_max_wait_ms: int = 200
