"""The trace sampler keeps every write and bus event, and the reads within a budget."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from shared.kit.sampling import ReadBudgetSampler, read_budget_sampler


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _decide(sampler, method: str | None, kind=SpanKind.SERVER, trace_id: int = 2**127, parent=None) -> bool:
    attributes = {"http.request.method": method} if method else {}
    result = sampler.should_sample(parent, trace_id, "span", kind, attributes)
    return result.decision is Decision.RECORD_AND_SAMPLE


def test_reads_are_kept_within_the_budget_then_by_ratio():
    clock = Clock()
    sampler = ReadBudgetSampler(reads_per_s=10, read_ratio=0.0, clock=clock)
    assert [_decide(sampler, "GET") for _ in range(12)] == [True] * 10 + [False] * 2
    clock.now += 0.5  # half a second refills half the budget
    assert [_decide(sampler, "HEAD") for _ in range(6)] == [True] * 5 + [False]
    clock.now += 60  # a quiet minute refills at most one second's worth
    assert sum(_decide(sampler, "GET") for _ in range(30)) == 10


def test_beyond_the_budget_the_ratio_decides_by_trace_id():
    sampler = ReadBudgetSampler(reads_per_s=0, read_ratio=0.25, clock=Clock())
    kept = sum(_decide(sampler, "GET", trace_id=i * 0x9E3779B97F4A7C15 % 2**64) for i in range(4000))
    assert 800 < kept < 1200
    assert _decide(sampler, "GET", trace_id=1) is True  # the low ids are the kept ones (TraceIdRatioBased)


def test_writes_bus_events_and_internal_spans_are_always_kept():
    sampler = ReadBudgetSampler(reads_per_s=0, read_ratio=0.0, clock=Clock())
    assert all(_decide(sampler, method) for method in ("POST", "PUT", "PATCH", "DELETE"))
    assert _decide(sampler, None, kind=SpanKind.CONSUMER)
    assert _decide(sampler, "GET", kind=SpanKind.CLIENT)  # an outgoing call is not a read served here
    assert not _decide(sampler, "GET")


def test_a_child_follows_its_parent_across_services():
    sampler = read_budget_sampler(reads_per_s=0, read_ratio=0.0)
    sampled = SpanContext(trace_id=5, span_id=7, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    dropped = SpanContext(trace_id=5, span_id=7, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    assert _decide(sampler, "GET", parent=trace.set_span_in_context(NonRecordingSpan(sampled)))
    assert not _decide(sampler, "POST", parent=trace.set_span_in_context(NonRecordingSpan(dropped)))


def test_the_provider_uses_it():
    provider = TracerProvider(sampler=read_budget_sampler(reads_per_s=1, read_ratio=0.0))
    tracer = provider.get_tracer("test")
    spans = [
        tracer.start_span("GET /x", kind=SpanKind.SERVER, attributes={"http.request.method": "GET"}) for _ in range(3)
    ]
    assert [s.is_recording() for s in spans] == [True, False, False]
