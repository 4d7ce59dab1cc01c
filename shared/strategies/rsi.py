"""The seeds' RSI strategy (``infobot_bots_service.ru.md``): one rule, used by ai-orchestration as an
ensemble member and by trading-engine's "rsi" bots.

RSI(14) <= 29 enters long, >= 71 enters short; a long exits at >= 65, a short at <= 35. Two
filters: *maturity* (a series needs ``maturity_bars`` closed bars before the rule trades) and
the *trend* of a higher timeframe (no long while its close is below its average, no short while
above). The rule is one member of the ensemble: it keeps its own position, as the seeds' strategy
trading alone would (``commit`` its own proposal), and votes it (+1 long, -1 short, 0 flat). The
signal's position is the ensemble's (``ensemble.Book``); an exit of the rule closes a position the
rule opened there.

A bot trades the same rule on its real position: ``rsi_action`` is the rule as a pure function of the
position, the count of closed bars seen and this bar's readings; ``RsiSeries.propose`` is it applied
to the rule's own position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Position = Literal["flat", "long", "short"]
Action = Literal["enter_long", "enter_short", "exit_long", "exit_short", "hold"]
#: ``up``: the higher timeframe's close is at or above its average; ``None``: not known yet.
Trend = Literal["up", "down"] | None

RULE_NAME = "rsi-14"
RULE_VERSION = 1
RULE_KIND = "rule"


@dataclass(frozen=True)
class RsiThresholds:
    """The rule's parameters; the defaults are the seed's (RSI 29/71 entries, 65/35 exits)."""

    enter_long: float = 29.0
    enter_short: float = 71.0
    exit_long: float = 65.0
    exit_short: float = 35.0
    maturity_bars: int = 50
    #: Without a trend reading, ``True`` blocks entries.
    trend_required: bool = False


@dataclass(frozen=True)
class Proposal:
    """What the rule would do on this bar, and its view as a signed score for the ensemble."""

    action: Action
    #: +1 long, -1 short, 0 flat: the position the rule would hold after ``action``.
    score: float
    #: ``False`` while the series is not mature: the rule then takes no part (skipped, ``immature``).
    mature: bool


@dataclass
class RsiSeries:
    """The rule's state for one symbol and timeframe (checkpointed with the series)."""

    position: Position = "flat"
    bars: int = 0

    def propose(self, rsi: float | None, trend: Trend, rules: RsiThresholds) -> Proposal:
        """The rule's proposal for a newly closed bar (counts the bar towards maturity)."""
        self.bars += 1
        return rsi_action(self.position, self.bars, rsi, trend, rules)

    def commit(self, action: Action) -> None:
        """Move the rule's own position by its proposal."""
        if action == "enter_long":
            self.position = "long"
        elif action == "enter_short":
            self.position = "short"
        elif action in ("exit_long", "exit_short"):
            self.position = "flat"

    def to_json(self) -> dict[str, object]:
        """The state as JSON (``from_json`` reads it back)."""
        return {"position": self.position, "bars": self.bars}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> RsiSeries:
        """The state ``to_json`` wrote (anything unreadable starts flat and immature)."""
        position: Position = "flat"
        if data.get("position") in ("long", "short"):
            position = "long" if data["position"] == "long" else "short"
        bars = data.get("bars", 0)
        return cls(position, bars if isinstance(bars, int) else 0)


def rsi_action(position: Position, bars: int, rsi: float | None, trend: Trend, rules: RsiThresholds) -> Proposal:
    """The rule on one closed bar: ``bars`` closed bars seen so far (this one included), ``rsi`` this
    bar's RSI (``None`` during the indicator's warm-up), ``trend`` the higher timeframe's reading.

    Exits come first (a long exits at ``rsi >= exit_long``, a short at ``rsi <= exit_short``); a flat
    position enters long at ``rsi <= enter_long`` when the trend allows a long, short at
    ``rsi >= enter_short`` when it allows a short. Before maturity (``bars < maturity_bars``, or no
    RSI yet) the rule holds.
    """
    mature = bars >= rules.maturity_bars and rsi is not None
    if not mature or rsi is None:
        return Proposal("hold", _score(position), False)
    if position == "long" and rsi >= rules.exit_long:
        return Proposal("exit_long", 0.0, True)
    if position == "short" and rsi <= rules.exit_short:
        return Proposal("exit_short", 0.0, True)
    if position == "flat":
        if rsi <= rules.enter_long and _allows(trend, "up", rules):
            return Proposal("enter_long", 1.0, True)
        if rsi >= rules.enter_short and _allows(trend, "down", rules):
            return Proposal("enter_short", -1.0, True)
    return Proposal("hold", _score(position), True)


def trend_of(price: float | None, average: float | None) -> Trend:
    """The trend filter's reading of a higher-timeframe feature vector."""
    if price is None or average is None:
        return None
    return "up" if price >= average else "down"


def trend_allows(trend: Trend, needed: Literal["up", "down"], trend_required: bool) -> bool:
    """The trend filter: an entry needs the higher timeframe's trend on its side (``up`` for a long);
    without a reading, it passes unless ``trend_required``."""
    if trend is None:
        return not trend_required
    return trend == needed


def _allows(trend: Trend, needed: Literal["up", "down"], rules: RsiThresholds) -> bool:
    return trend_allows(trend, needed, rules.trend_required)


def _score(position: Position) -> float:
    return {"flat": 0.0, "long": 1.0, "short": -1.0}[position]
