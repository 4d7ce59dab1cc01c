"""The bar -> verdict bench's arithmetic: percentiles, the per-bar report, and the per-service
breakdown read from span files in the format the services write. Counts and values, never speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import trace_hops
from bench.mesh import pct
from bench.signal_path import Sample, report

MS = 1_000_000


def test_pct_is_nearest_rank_from_above() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 1..100, unordered
    assert pct(values, 0.5) == 51
    assert pct(values, 0.99) == 100
    assert pct([3.0], 0.99) == 3.0


def _sample(ts: int, created_ms: dict[str, float], seen_ms: float, verdict: str = "validated") -> Sample:
    sample = Sample(ts, sent_ns=1_000 * MS, sent=10.0, verdict=verdict, model="contributed")
    sample.created = {hop: 1_000 * MS + int(ms * MS) for hop, ms in created_ms.items()}
    sample.seen = {"verdict": 10.0 + seen_ms / 1000}
    return sample


def test_report_prints_each_hop_and_the_verdicts(capsys: pytest.CaptureFixture[str]) -> None:
    samples = [
        _sample(i, {"vector": 2 + i, "prediction": 5 + i, "signal": 7 + i, "verdict": 10 + i}, 12 + 2 * i)
        for i in range(10)
    ]
    samples[0].verdict, samples[0].codes = "rejected", ("duplicate",)
    report("back to back", samples, missing=1)
    out = capsys.readouterr().out
    # bar -> verdict seen: 12, 14, ..., 30 ms: p50 is the 6th (22), p99 the largest (30)
    assert "bar -> verdict seen by the bench:   p50   22.0 ms  p99   30.0 ms" in out
    assert "-> verdict     p50   15.0 ms  p99   19.0 ms" in out  # created 10..19 ms after the bar
    assert "vector -> prediction  p50    3.0 ms" in out  # each vector 3 ms before its prediction
    assert "prediction -> signal      p50    2.0 ms" in out
    assert "signal -> verdict     p50    3.0 ms" in out
    assert "{'rejected': 1, 'validated': 9}" in out or "{'validated': 9, 'rejected': 1}" in out
    assert "'rejected:duplicate': 1" in out
    assert "no verdict within 5 s: 1" in out


def _span(trace: str, name: str, start_ms: float, end_ms: float, sent_ms: int | None = None) -> dict:
    attributes: dict[str, object] = {"messaging.system": "kafka"}
    if sent_ms is not None:  # a consumer span: FastStream's "<first offset>-<last offset>-<first timestamp>"
        attributes["messaging.message.id"] = f"7-7-{sent_ms}"
    return {
        "trace_id": trace,
        "name": name,
        "service": "pattern-validator",
        "start_ns": int(start_ms * MS),
        "end_ns": int(end_ms * MS),
        "attributes": attributes,
    }


def test_hops_split_each_bar_into_delivery_work_and_publish(tmp_path: Path) -> None:
    spans = [
        # a signal sent at 1000 ms, handled from 1004 ms, its verdict published 1010-1013 ms
        _span("a", "signals.v1 process", 1004, 1014, sent_ms=1000),
        _span("a", "signals.validated.v1 create", 1009.5, 1009.6),
        _span("a", "signals.validated.v1 publish", 1010, 1013),
        # a rejection counts the same
        _span("b", "signals.v1 process", 2002, 2020, sent_ms=2000),
        _span("b", "signals.rejected.v1 publish", 2012, 2014),
        # handled, nothing published (a redelivery, a failed batch): not a hop
        _span("c", "signals.v1 process", 3000, 3001, sent_ms=2999),
        # outside the window asked for
        _span("d", "signals.v1 process", 9000, 9010, sent_ms=8990),
        _span("d", "signals.validated.v1 publish", 9001, 9002),
    ]
    (tmp_path / "pattern-validator.jsonl").write_text("".join(json.dumps(s) + "\n" for s in spans))

    found = sorted(trace_hops.hops(tmp_path, "pattern-validator", 0, 5000 * MS), key=lambda h: h.delivery)
    assert [(h.delivery, h.work, h.publish) for h in found] == [
        pytest.approx((2.0, 10.0, 2.0)),
        pytest.approx((4.0, 6.0, 3.0)),
    ]
    assert trace_hops.hops(tmp_path, "feature-engineering", 0, 5000 * MS) == []  # no file: no hops
