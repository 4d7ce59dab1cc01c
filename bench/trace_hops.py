"""Where a bar's time goes inside each service of the signal path, from the mesh's span files.

Every service writes its spans to ``<var>/traces/<service>.jsonl`` (``shared/kit/telemetry.py``);
FastStream's telemetry middleware gives each consumed batch a ``<topic> process`` span (its
``messaging.message.id`` ends with the first record's timestamp: when its producer sent it, ms)
and each publish a ``<topic> publish`` span in the same trace. So per service and bar:

* delivery: the input record's send (ms: up to 1 ms too long) -> the handler starts (the broker,
  the consumer's fetch wait and poll loop, and waiting for the event loop);
* work: the handler starts -> the output's publish starts (decoding, deciding, storing);
* publish: the publish call, until the broker acknowledged the record (``acks=all``).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Each service on the path: the topic it consumes the bar's record from, the topics it publishes it to.
PATH: dict[str, tuple[str, tuple[str, ...]]] = {
    "feature-engineering": ("market.bars.v1", ("features.vectors.v1",)),
    "ml-supervised": ("features.vectors.v1", ("ml.predictions.v1",)),
    "ai-orchestration": ("ml.predictions.v1", ("signals.v1",)),
    "pattern-validator": ("signals.v1", ("signals.validated.v1", "signals.rejected.v1")),
}
PARTS = ("delivery", "work", "publish")


@dataclass(frozen=True)
class Hop:
    """One service's share of one bar, ms."""

    delivery: float
    work: float
    publish: float


def _spans(path: Path) -> Iterator[dict]:
    if not path.exists():
        return
    with path.open() as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def hops(traces: Path, service: str, since_ns: int, until_ns: int) -> list[Hop]:
    """``service``'s hops whose handler started in ``[since_ns, until_ns)`` (wall clock ns)."""
    source, outputs = PATH[service]
    by_trace: dict[str, dict[str, dict]] = collections.defaultdict(dict)
    for span in _spans(traces / f"{service}.jsonl"):
        by_trace[span["trace_id"]].setdefault(span["name"], span)
    out = []
    for spans in by_trace.values():
        handled = spans.get(f"{source} process")
        published = next((spans[f"{t} publish"] for t in outputs if f"{t} publish" in spans), None)
        if handled is None or published is None or not since_ns <= handled["start_ns"] < until_ns:
            continue
        sent_ms = int(str(handled["attributes"].get("messaging.message.id", "")).rsplit("-", 1)[-1] or 0)
        if not sent_ms:
            continue
        out.append(
            Hop(
                delivery=handled["start_ns"] / 1e6 - sent_ms,
                work=(published["start_ns"] - handled["start_ns"]) / 1e6,
                publish=(published["end_ns"] - published["start_ns"]) / 1e6,
            )
        )
    return out


__all__ = ["PARTS", "PATH", "Hop", "hops"]
