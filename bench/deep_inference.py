"""Single-window inference latency of the sequence kinds (target: p99 < 10 ms on this 2-core machine).

Trains an LSTM and a Transformer direction classifier (one epoch: the weights' values do not change
the cost) on synthetic windows of ``--window`` bars x ``--features`` features, loads each back from
its safetensors bytes as ml-deep-learning does, then times ``predict_row`` (standardise, one
1 x window x features forward pass in ``torch.inference_mode()``) on ``--rows`` distinct windows
after a warm-up, one call at a time, with 1 and then 2 intra-op threads (one inter-op thread).

    python -m bench.deep_inference [--rows 3000] [--window 32] [--features 40] [--hidden 32]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from shared.ml.deep import configure_inference_threads
from shared.ml.kinds import kind_of


def measure(kind: str, rows: int, window: int, features: int, hidden: int, threads: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, window, features))
    y = (x[:, -1, 0] > 0).astype(np.float64)
    k = kind_of(kind)
    params = k.hyperparameters({"window": window, "hidden": hidden, "epochs": 1})
    model = k.load("direction", k.fit("direction", x, y, params, 7, 1).to_bytes(), threads)
    torch.set_num_threads(threads)
    probe = rng.normal(size=(rows, window, features))
    for w in probe[:200]:
        model.predict_row(w)
    times = np.empty(rows)
    for i, w in enumerate(probe):
        t0 = time.perf_counter_ns()
        model.predict_row(w)
        times[i] = time.perf_counter_ns() - t0
    p50, p99 = np.percentile(times, [50, 99]) / 1e6
    return float(p50), float(p99)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.deep_inference")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--features", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=32)
    args = parser.parse_args()
    report(args.rows, args.window, args.features, args.hidden)
    return 0


def report(rows: int = 3000, window: int = 32, features: int = 40, hidden: int = 32) -> None:
    configure_inference_threads(1)
    print(
        f"== single-window inference, sequence models: direction classifier, window {window} x {features} "
        f"features, hidden {hidden}, 1 layer (Transformer: 4 heads, feed-forward 64), {rows} windows one at a "
        f"time, inter-op threads 1; torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}), Python {platform.python_version()}"
    )
    for kind in ("lstm", "transformer"):
        for threads in (1, 2):
            p50, p99 = measure(kind, rows, window, features, hidden, threads)
            verdict = "ok" if p99 < 10.0 else "OVER TARGET"
            print(
                f"   {kind:11s} threads {threads}  p50 {p50:.3f} ms  p99 {p99:.3f} ms  (target p99 < 10 ms: {verdict})"
            )


if __name__ == "__main__":
    raise SystemExit(main())
