"""Which traces are kept: everything that changes something, and a budget of the reads.

A trace of every write, every bus event and every error-prone internal call is what
lets the platform show afterwards what it did and why, and those are few. Reads of
market data are not: at 1,500 bars requests/s a span per request in the gateway and in
database-service cost ~90 µs of CPU per request and, queued behind the exporter, most
of the gateway's tail latency (p99 overhead +4 to +10 ms with every read traced,
+0.6 ms with none; see docs/architecture.md).

So a root span of an HTTP ``GET``/``HEAD`` is kept while the service's read budget
lasts (``HATS_TRACE_READS_PER_S`` per second, a token bucket: at developer traffic
every read is traced), and beyond it with probability ``HATS_TRACE_READ_RATIO`` (by
trace id, as ``TraceIdRatioBased``). Every other root is kept. A span with a parent
follows its parent's decision (``ParentBased``), so a trace is kept or dropped whole
across services. The standard ``OTEL_TRACES_SAMPLER`` replaces all of this when set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

_READ_METHODS = frozenset({"GET", "HEAD"})


class ReadBudgetSampler(Sampler):
    """Root sampler: writes and non-HTTP roots always; reads within a per-second budget, then by ratio."""

    def __init__(self, reads_per_s: float, read_ratio: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = max(0.0, reads_per_s)
        self._tokens = self._rate
        self._clock = clock
        self._refilled_at = clock()
        self._lock = threading.Lock()
        self._ratio = TraceIdRatioBased(read_ratio)

    def _take(self) -> bool:
        with self._lock:
            now = self._clock()
            # Up to one second of budget may accumulate: a burst after a quiet spell is traced.
            self._tokens = min(self._rate, self._tokens + (now - self._refilled_at) * self._rate)
            self._refilled_at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        is_read = (
            kind is SpanKind.SERVER
            and attributes is not None
            and attributes.get("http.request.method") in _READ_METHODS
        )
        if not is_read or self._take():
            return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        return self._ratio.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"ReadBudgetSampler{{reads_per_s={self._rate}, then {self._ratio.get_description()}}}"


def read_budget_sampler(reads_per_s: float, read_ratio: float) -> Sampler:
    """The platform's default sampler: parent-based, with ``ReadBudgetSampler`` for roots."""
    return ParentBased(root=ReadBudgetSampler(reads_per_s, read_ratio))


__all__ = ["ReadBudgetSampler", "read_budget_sampler"]
