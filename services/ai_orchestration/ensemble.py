"""The combination rule ``ensemble-1``: weighted score, direction, strength and action.

* Each member (a champion model's prediction, or the RSI rule's view) has a signed score in
  [-1, 1] and a raw weight (``HitRates.raw_weight``: its edge over a coin). Weights are
  normalised over the members present; the ensemble score is their weighted mean.
* ``direction``: ``long`` if score >= ``dead_zone``, ``short`` if <= -``dead_zone``, else ``flat``;
  ``strength`` = |score|.
* ``action`` comes from the RSI rule's position logic, checked against the ensemble:
  an entry goes out only if the ensemble's direction is the entry's (a model majority
  against it, or a flat ensemble, vetoes it: ``hold``); exits always go out (they reduce risk);
  otherwise ``hold``. Models alone never open a position: they weigh, confirm and veto.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.ai_orchestration.rsi_rule import Action


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


def decide(proposed: Action, direction: str) -> Action:
    """The signal's action from the rule's proposal and the ensemble's direction."""
    if proposed == "enter_long":
        return "enter_long" if direction == "long" else "hold"
    if proposed == "enter_short":
        return "enter_short" if direction == "short" else "hold"
    return proposed
