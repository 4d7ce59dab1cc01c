"""The combination rule ``ensemble-1``: weighted score, direction, strength and action.

* Each member (a champion model's prediction, or the RSI rule's vote) has a signed score in
  [-1, 1] and a raw weight (``HitRates.raw_weight``: its edge over a coin). Weights are
  normalised over the members present; the ensemble score is their weighted mean.
* ``direction``: ``long`` if score >= ``dead_zone``, ``short`` if <= -``dead_zone``, else ``flat``;
  ``strength`` = |score|.
* ``action`` moves the series' position (one per symbol and timeframe, the signal's own):

  - flat: ``enter_<direction>`` when the ensemble is ``long``/``short`` with strength >=
    ``ENTRY_MIN_STRENGTH`` and calibrated confidence >= ``ENTRY_MIN_CONFIDENCE``, the series is
    mature and the higher timeframe's trend allows that side. The position is the RSI rule's if
    the rule voted for that side on that bar, else the models'; models can open one alone;
  - in a position: ``exit_*`` when the ensemble turns to the other side (a reversal, whoever
    opened it), or when the RSI rule exits its own view of a position the rule opened;
  - otherwise ``hold``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.strategies.rsi import Action, Position

#: Who opened the series' position: the RSI rule (its exits close it) or the models' ensemble.
Owner = Literal["rule", "ensemble"]


@dataclass(frozen=True)
class Vote:
    who: str
    score: float
    raw_weight: float


@dataclass(frozen=True)
class Combined:
    score: float
    direction: str
    strength: float
    #: Normalised weight per member (same order as the votes).
    weights: list[float]


def combine(votes: list[Vote], dead_zone: float) -> Combined:
    total = sum(v.raw_weight for v in votes)
    if total <= 0:
        return Combined(0.0, "flat", 0.0, [0.0] * len(votes))
    weights = [v.raw_weight / total for v in votes]
    score = max(-1.0, min(1.0, sum(w * v.score for w, v in zip(weights, votes, strict=True))))
    direction = "long" if score >= dead_zone and score > 0 else "short" if score <= -dead_zone and score < 0 else "flat"
    return Combined(score, direction, abs(score), weights)


@dataclass(frozen=True)
class EntryRule:
    """When the ensemble may open a position."""

    min_strength: float
    min_confidence: float


@dataclass(frozen=True)
class Situation:
    """What one bar's decision looks at."""

    combined: Combined
    #: The calibrated confidence of ``combined.strength``.
    confidence: float
    #: The series has its maturity (enough closed bars) for any entry.
    mature: bool
    #: Whether the higher timeframe's trend allows a long / a short entry.
    long_allowed: bool
    short_allowed: bool
    #: The RSI rule's vote on this bar (+1, -1, 0) and its own action (an exit closes what it opened).
    rule_vote: int
    rule_action: Action


@dataclass
class Book:
    """The series' position as the signals moved it (checkpointed with the series)."""

    position: Position = "flat"
    owner: Owner | None = None

    def decide(self, now: Situation, entry: EntryRule) -> Action:
        """The signal's action on this bar; moves the position by it."""
        action = _action(self, now, entry)
        if action in ("enter_long", "enter_short"):
            side: Position = "long" if action == "enter_long" else "short"
            self.position, self.owner = side, "rule" if now.rule_vote == _sign_of(side) else "ensemble"
        elif action in ("exit_long", "exit_short"):
            self.position, self.owner = "flat", None
        return action

    def to_json(self) -> dict[str, object]:
        return {"position": self.position, "owner": self.owner}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Book:
        position, owner = data.get("position"), data.get("owner")
        if position == "long" or position == "short":
            return cls(position, "rule" if owner == "rule" else "ensemble")
        return cls()


def _action(book: Book, now: Situation, entry: EntryRule) -> Action:
    direction = now.combined.direction
    if book.position == "long":
        if direction == "short" or (book.owner == "rule" and now.rule_action == "exit_long"):
            return "exit_long"
        return "hold"
    if book.position == "short":
        if direction == "long" or (book.owner == "rule" and now.rule_action == "exit_short"):
            return "exit_short"
        return "hold"
    strong = now.combined.strength >= entry.min_strength and now.confidence >= entry.min_confidence
    if not (strong and now.mature):
        return "hold"
    if direction == "long" and now.long_allowed:
        return "enter_long"
    if direction == "short" and now.short_allowed:
        return "enter_short"
    return "hold"


def _sign_of(side: Position) -> int:
    return {"long": 1, "short": -1}.get(side, 0)
