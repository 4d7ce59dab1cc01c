"""Realised outcomes without look-ahead: a call made at a bar's close is scored only once the bar
``horizon`` bars later has closed, against the direction the close moved in between.

``Realiser`` keeps one series' recent closes (from ``MarketBar``, which are closed bars) and the
calls waiting for their horizon; ``HitRates`` keeps each member's rolling window of scored calls.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

#: Closes kept per series: far more than any horizon.
KEPT_BARS = 2048
#: Calls waiting per series at most (the oldest are dropped first).
MAX_PENDING = 20_000


@dataclass(frozen=True)
class Call:
    """A directional call made at the close of bar ``t0`` (its open time, ns), for ``horizon`` bars."""

    t0: int
    horizon: int
    #: ``signal`` (the ensemble's own) or a member's key (model id, or the rule's name).
    who: str
    #: The call's sign: +1 up, -1 down. Flat calls are never recorded (nothing to be right about).
    sign: int
    #: For signals: the strength the calibration bins it by.
    strength: float = 0.0


@dataclass(frozen=True)
class Outcome:
    call: Call
    correct: bool


@dataclass
class Realiser:
    opens: list[int] = field(default_factory=list)
    closes: dict[int, float] = field(default_factory=dict)
    pending: list[Call] = field(default_factory=list)

    def expect(self, call: Call) -> None:
        if call.sign == 0:
            return
        self.pending.append(call)
        if len(self.pending) > MAX_PENDING:
            del self.pending[: len(self.pending) - MAX_PENDING]

    def on_bar(self, open_time: int, close: float) -> list[Outcome]:
        """Record a closed bar; the calls whose horizon it completes, scored. Bars of a series arrive
        in order (one key, one partition); an older or repeated bar changes nothing."""
        if self.opens and open_time <= self.opens[-1]:
            return []
        self.opens.append(open_time)
        self.closes[open_time] = close
        if len(self.opens) > KEPT_BARS:
            for old in self.opens[: len(self.opens) - KEPT_BARS]:
                del self.closes[old]
            del self.opens[: len(self.opens) - KEPT_BARS]
        return self._resolve()

    def _resolve(self) -> list[Outcome]:
        done: list[Outcome] = []
        waiting: list[Call] = []
        newest = self.opens[-1]
        for call in self.pending:
            at = self.closes.get(call.t0)
            if at is None:
                # The call's own bar was never seen: once a later bar is here it never will be.
                if call.t0 >= newest:
                    waiting.append(call)
                continue
            i = bisect.bisect_left(self.opens, call.t0)
            j = i + call.horizon
            if j >= len(self.opens):
                waiting.append(call)
                continue
            move = self.closes[self.opens[j]] - at
            if move != 0:  # an unchanged close scores no one
                done.append(Outcome(call, (move > 0) == (call.sign > 0)))
        self.pending = waiting
        return done

    def to_json(self) -> dict[str, object]:
        # From the oldest pending call's bar (or the last 64 bars), so every call resolves after a restart.
        first = min((c.t0 for c in self.pending), default=None)
        start = len(self.opens) - 64 if first is None else bisect.bisect_left(self.opens, first)
        tail = self.opens[max(min(start, len(self.opens) - 64), 0) :]
        return {
            "opens": tail,
            "closes": [self.closes[t] for t in tail],
            "pending": [[c.t0, c.horizon, c.who, c.sign, c.strength] for c in self.pending],
        }

    @classmethod
    def from_json(cls, data: dict) -> Realiser:
        opens = [int(t) for t in data.get("opens", [])]
        closes = dict(zip(opens, (float(c) for c in data.get("closes", [])), strict=True))
        pending = [Call(int(a), int(b), str(c), int(d), float(e)) for a, b, c, d, e in data.get("pending", [])]
        return cls(opens, closes, pending)


class HitRates:
    """Each member's rolling window of scored calls, and the weight that follows from it.

    The weight is the member's *edge* over a coin: ``max(hit_rate - 0.5, 0)``. A member with fewer
    than ``min_outcomes`` scored calls gets ``prior_hit_rate``'s edge; one no better than a coin
    gets none (it stays listed, with weight 0, and regains weight as its window improves).
    """

    def __init__(self, window: int, min_outcomes: int, prior_hit_rate: float) -> None:
        self.window = window
        self.min_outcomes = min_outcomes
        self.prior = prior_hit_rate
        self.windows: dict[str, deque[bool]] = {}

    def record(self, who: str, correct: bool) -> None:
        self.windows.setdefault(who, deque(maxlen=self.window)).append(correct)

    def hit_rate(self, who: str) -> float | None:
        """The member's hit rate over its window, or ``None`` while it has too few outcomes."""
        window = self.windows.get(who)
        if window is None or len(window) < self.min_outcomes:
            return None
        return sum(window) / len(window)

    def outcomes(self, who: str) -> int:
        return len(self.windows.get(who, ()))

    def raw_weight(self, who: str) -> float:
        rate = self.hit_rate(who)
        return max((self.prior if rate is None else rate) - 0.5, 0.0)

    def to_json(self) -> dict[str, str]:
        return {who: "".join("1" if c else "0" for c in w) for who, w in self.windows.items()}

    def load(self, data: dict[str, str]) -> None:
        self.windows = {who: deque((c == "1" for c in bits), maxlen=self.window) for who, bits in data.items()}
