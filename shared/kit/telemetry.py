"""OpenTelemetry tracing: OTLP to Jaeger when configured, otherwise a local JSON-lines file.

Sampling: the standard ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` variables
when set (the SDK reads them); otherwise the platform's parent-based sampler, which keeps
every write and bus event and a budget of the reads (``shared.kit.sampling``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import orjson
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Sampler


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object per line (the embedded stand-in for Jaeger)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            if ctx is None:  # a span always has one once started; the SDK types it optional
                continue
            lines.append(
                orjson.dumps(
                    {
                        "trace_id": format(ctx.trace_id, "032x"),
                        "span_id": format(ctx.span_id, "016x"),
                        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
                        "name": span.name,
                        "kind": span.kind.name,
                        "service": span.resource.attributes.get("service.name"),
                        "start_ns": span.start_time,
                        "end_ns": span.end_time,
                        "status": span.status.status_code.name,
                        "attributes": dict(span.attributes or {}),
                        # Batch consumers continue many traces at once: OTel records them as links.
                        "links": [
                            {
                                "trace_id": format(link.context.trace_id, "032x"),
                                "span_id": format(link.context.span_id, "016x"),
                            }
                            for link in span.links
                        ],
                    },
                    default=str,
                )
                + b"\n"
            )
        with self._lock:
            self._file.write(b"".join(lines))
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()


def configure_tracing(
    service: str, *, otlp_endpoint: str | None, var_dir: Path, sampler: Sampler | None = None
) -> TracerProvider:
    """Install the global tracer provider for this process and return it (call ``shutdown`` on exit).

    ``sampler`` is ignored when ``OTEL_TRACES_SAMPLER`` is set: the standard variable wins.
    """
    if "OTEL_TRACES_SAMPLER" in os.environ:
        sampler = None
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.namespace": "hats"}), sampler=sampler
    )
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter: SpanExporter = OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces")
    else:
        exporter = JsonLinesSpanExporter(var_dir / "traces" / f"{service}.jsonl")
    # Export in small batches unless configured: the exporter thread holds the GIL while it
    # serialises a batch, and the SDK's 512-span batches showed up as request-latency tails
    # (bars API p99 at 1,500/s: 5-8 ms with 512, 2.0-2.4 ms with 64).
    batch = None if "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" in os.environ else 64
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=batch))
    trace.set_tracer_provider(provider)
    return provider
