"""Calibrated confidence: the observed share of correct signals at a given strength.

Signals are binned by strength (|ensemble score|, 0..1). Each bin keeps a rolling window of
its signals' outcomes (``outcomes.Realiser`` scores them, no look-ahead). A bin's rate is
shrunk towards 0.5 by ``prior`` pseudo-outcomes (a thin bin says little), and the rates are
made non-decreasing in strength by pool-adjacent-violators (isotonic regression over bins,
weighted by evidence): a stronger signal is never reported as less likely right. With no
outcomes at all every confidence is 0.5.
"""

from __future__ import annotations

from collections import deque


class Calibrator:
    def __init__(self, bins: int, window: int, prior: float) -> None:
        self.bins = bins
        self.prior = prior
        self.outcomes: list[deque[bool]] = [deque(maxlen=window) for _ in range(bins)]
        self._curve: list[float] | None = None

    def bin_of(self, strength: float) -> int:
        return min(max(int(strength * self.bins), 0), self.bins - 1)

    def record(self, strength: float, correct: bool) -> None:
        self.outcomes[self.bin_of(strength)].append(correct)
        self._curve = None

    def confidence(self, strength: float) -> float:
        if self._curve is None:
            self._curve = self._fit()
        return self._curve[self.bin_of(strength)]

    def observed(self) -> int:
        return sum(len(o) for o in self.outcomes)

    def _fit(self) -> list[float]:
        # Pool adjacent violators over the bins: blocks of (weighted rate, weight, bin count).
        blocks: list[list[float]] = []
        for window in self.outcomes:
            weight = len(window) + self.prior
            rate = (sum(window) + 0.5 * self.prior) / weight if weight > 0 else 0.5
            blocks.append([rate, weight, 1])
            while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
                r2, w2, n2 = blocks.pop()
                r1, w1, n1 = blocks.pop()
                w = w1 + w2
                blocks.append([(r1 * w1 + r2 * w2) / w if w > 0 else 0.5, w, n1 + n2])
        curve: list[float] = []
        for rate, _, count in blocks:
            curve.extend([min(max(rate, 0.0), 1.0)] * int(count))
        return curve

    def to_json(self) -> list[str]:
        return ["".join("1" if c else "0" for c in window) for window in self.outcomes]

    def load(self, data: list[str]) -> None:
        if len(data) != self.bins:  # the bin count changed: start over rather than misplace outcomes
            return
        for window, bits in zip(self.outcomes, data, strict=True):
            window.clear()
            window.extend(c == "1" for c in bits)
        self._curve = None
