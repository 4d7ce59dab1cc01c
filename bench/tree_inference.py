"""Single-row inference latency of the tree kinds (target: p99 < 2 ms on this 2-core machine).

Trains an XGBoost and a LightGBM direction classifier (default hyperparameters: 200 trees, depth 4)
on a synthetic matrix of ``--features`` columns, loads each back from its artifact bytes as the
service does, then times ``predict_row`` (XGBoost ``inplace_predict``, LightGBM ``predict`` with
``num_threads=1``) on ``--rows`` distinct rows after a warm-up, one call at a time.

    python -m bench.tree_inference [--rows 5000] [--features 40]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from shared.ml.kinds import kind_of


def measure(kind: str, rows: int, features: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, features))
    y = (x[:, 0] + 0.5 * rng.normal(size=5000) > 0).astype(np.float64)
    k = kind_of(kind)
    model = k.load("direction", k.fit("direction", x, y, k.hyperparameters({}), 7, 1).to_bytes(), 1)
    probe = rng.normal(size=(rows, features))
    for row in probe[:200]:
        model.predict_row(row)
    times = np.empty(rows)
    for i, row in enumerate(probe):
        t0 = time.perf_counter_ns()
        model.predict_row(row)
        times[i] = time.perf_counter_ns() - t0
    p50, p99, mx = np.percentile(times, [50, 99, 100]) / 1e6
    return float(p50), float(p99), float(mx)


def report(rows: int = 5000, features: int = 40) -> None:
    print(
        f"== single-row inference, tree models: direction classifier, 200 trees depth 4, {features} features, "
        f"{rows} rows one at a time, 1 thread; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}), Python {platform.python_version()}"
    )
    for kind in ("xgboost", "lightgbm"):
        p50, p99, mx = measure(kind, rows, features)
        verdict = "ok" if p99 < 2.0 else "OVER TARGET"
        print(f"   {kind:9s} p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {mx:.3f} ms  (target p99 < 2 ms: {verdict})")


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.tree_inference")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--features", type=int, default=40)
    args = parser.parse_args()
    report(args.rows, args.features)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
