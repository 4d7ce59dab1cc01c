"""One signal per symbol and bar: collect the expected predictions until all are in or the deadline
passes, weigh them with the RSI rule, publish, and learn from realised outcomes.

Free of FastAPI and Kafka: ``consumers.py`` feeds it events, ``publish`` sends the signal.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.ai_orchestration.catalog import Champion, Champions
from services.ai_orchestration.ensemble import EntryRule, Situation, Vote, combine
from services.ai_orchestration.outcomes import Call
from services.ai_orchestration.series import MemberInfo, SeriesState
from services.ai_orchestration.settings import AiOrchestrationSettings
from shared.bus.consume import RecentIds
from shared.events import (
    Contribution,
    FeatureVector,
    MarketBar,
    ModelLifecycle,
    Prediction,
    PredictionRefused,
    Signal,
    Skipped,
    Timeframe,
    now_ns,
    signal_id,
)
from shared.strategies.rsi import (
    RULE_KIND,
    RULE_NAME,
    RULE_VERSION,
    RsiThresholds,
    trend_allows,
    trend_of,
)

log = logging.getLogger(__name__)

SeriesKey = tuple[str, Timeframe]
#: Predictions or refusals for a vector not seen yet, kept at most (oldest dropped).
EARLY_LIMIT = 10_000
#: Vector ids whose round is over, remembered so a late prediction is not taken for an early one.
FINISHED_LIMIT = 10_000


@dataclass
class Round:
    """The collection of one vector's predictions."""

    vector: FeatureVector
    expected: dict[uuid.UUID, Champion]
    flagged: list[Champion]
    predictions: dict[uuid.UUID, Prediction] = field(default_factory=dict)
    refusals: dict[uuid.UUID, PredictionRefused] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None
    started: float = 0.0

    def complete(self) -> bool:
        return all(m in self.predictions or m in self.refusals for m in self.expected)


class Orchestrator:
    def __init__(
        self,
        settings: AiOrchestrationSettings,
        champions: Champions,
        publish: Callable[[Signal], Awaitable[object]],
        states: dict[SeriesKey, SeriesState] | None = None,
    ) -> None:
        self.settings = settings
        self.champions = champions
        self._publish = publish
        self.series: dict[SeriesKey, SeriesState] = states or {}
        self.dirty: set[SeriesKey] = set()
        self.rounds: dict[uuid.UUID, Round] = {}
        self._early: OrderedDict[uuid.UUID, list[Prediction | PredictionRefused]] = OrderedDict()
        self._finished: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Vectors handled by this process (a redelivery is recognised by its id).
        self._handled = RecentIds(100_000)
        self._rules = RsiThresholds(
            settings.rsi_enter_long,
            settings.rsi_enter_short,
            settings.rsi_exit_long,
            settings.rsi_exit_short,
            settings.rsi_maturity_bars,
            settings.trend_required,
        )
        self._entry = EntryRule(settings.entry_min_strength, settings.entry_min_confidence)
        self.published = 0

    def state(self, symbol: str, timeframe: Timeframe) -> SeriesState:
        key = (symbol, timeframe)
        state = self.series.get(key)
        if state is None:
            state = self.series[key] = SeriesState.new(self.settings)
        return state

    # -- inputs ------------------------------------------------------------------------------

    async def on_vector(self, vector: FeatureVector) -> None:
        state = self.state(vector.symbol, vector.timeframe)
        if vector.event_id in self._handled or vector.ts_event <= state.replay_floor:
            return  # handled before: a redelivery, or a replay of what the checkpoint already covers
        self._handled.fresh((vector,))
        # Newer than every vector before it, as a rule; an older one not handled yet comes after a
        # broker restart (its new log read again from the start, shared.bus.rewind): it still gets
        # its signal, but does not set the trend back.
        newest = vector.ts_event > state.last_vector
        state.last_vector = max(state.last_vector, vector.ts_event)
        self.dirty.add((vector.symbol, vector.timeframe))
        if newest and vector.timeframe == self.settings.trend_timeframe:
            state.trend = trend_of(
                vector.features.get(self.settings.trend_price_feature),
                vector.features.get(self.settings.trend_average_feature),
            )
        if vector.timeframe not in self.settings.signal_timeframes:
            return
        champions = await self.champions.of(vector.symbol, vector.timeframe)
        expected = {c.model_id: c for c in champions if not c.flagged}
        flagged = [c for c in champions if c.flagged]
        round_ = Round(vector, expected, flagged, started=time.monotonic())
        self.rounds[vector.event_id] = round_
        for early in self._early.pop(vector.event_id, ()):
            self._add(round_, early)
        if round_.complete():
            await self._finish(round_)
        else:
            loop = asyncio.get_running_loop()
            round_.timer = loop.call_later(self.settings.deadline_ms / 1000, self._on_deadline, vector.event_id)

    async def on_prediction(self, prediction: Prediction) -> None:
        state = self.state(prediction.symbol, prediction.timeframe)
        who = str(prediction.model_id)
        state.members[who] = MemberInfo(prediction.model_name, prediction.model_version, prediction.model_kind)
        # Scored later against the realised move, whether or not it was in time for its signal.
        state.realiser.expect(Call(prediction.ts_event, prediction.horizon_bars, who, _sign(prediction.score)))
        self.dirty.add((prediction.symbol, prediction.timeframe))
        await self._arrived(prediction.feature_vector_id, prediction)

    async def on_refusal(self, refusal: PredictionRefused) -> None:
        await self._arrived(refusal.feature_vector_id, refusal)

    def on_bar(self, bar: MarketBar) -> None:
        state = self.state(bar.symbol, bar.timeframe)
        outcomes = state.realiser.on_bar(bar.ts_event, float(bar.close))
        for outcome in outcomes:
            if outcome.call.who == "signal":
                state.calibration.record(outcome.call.strength, outcome.correct)
            else:
                state.hits.record(outcome.call.who, outcome.correct)
        self.dirty.add((bar.symbol, bar.timeframe))

    def on_lifecycle(self, event: ModelLifecycle) -> None:
        self.champions.apply(event)

    # -- rounds ------------------------------------------------------------------------------

    async def _arrived(self, vector_id: uuid.UUID, item: Prediction | PredictionRefused) -> None:
        round_ = self.rounds.get(vector_id)
        if round_ is None:
            if vector_id not in self._finished:  # the vector itself is still on its way
                self._early.setdefault(vector_id, []).append(item)
                while len(self._early) > EARLY_LIMIT:
                    self._early.popitem(last=False)
            return
        self._add(round_, item)
        if round_.complete():
            await self._finish(round_)

    @staticmethod
    def _add(round_: Round, item: Prediction | PredictionRefused) -> None:
        if item.model_id not in round_.expected:
            return  # not a champion of this series (a candidate, a flagged or retired model)
        if isinstance(item, Prediction):
            round_.predictions[item.model_id] = item
        else:
            round_.refusals[item.model_id] = item

    def _on_deadline(self, vector_id: uuid.UUID) -> None:
        round_ = self.rounds.get(vector_id)
        if round_ is not None:
            task = asyncio.get_running_loop().create_task(self._finish(round_))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _finish(self, round_: Round) -> None:
        vector = round_.vector
        if self.rounds.pop(vector.event_id, None) is None:
            return  # finished already (all arrived just as the deadline fired)
        if round_.timer is not None:
            round_.timer.cancel()
        self._finished[vector.event_id] = None
        while len(self._finished) > FINISHED_LIMIT:
            self._finished.popitem(last=False)
        signal = self.build_signal(round_)
        try:
            await self._publish(signal)
            self.published += 1
        except Exception:
            log.exception("publishing the signal of %s %s %s failed", vector.symbol, vector.timeframe, vector.ts_event)

    def build_signal(self, round_: Round) -> Signal:
        """Weigh what arrived, decide, and move the state (RSI position, pending calls)."""
        vector, settings = round_.vector, self.settings
        state = self.state(vector.symbol, vector.timeframe)
        trend = self.state(vector.symbol, settings.trend_timeframe).trend
        rsi = vector.features.get(settings.rsi_feature)
        proposal = state.rsi.propose(rsi, trend, self._rules)

        votes: list[Vote] = []
        members: list[tuple[uuid.UUID | None, str, int, str]] = []
        skipped: list[Skipped] = []
        for model_id, champion in round_.expected.items():
            prediction = round_.predictions.get(model_id)
            if prediction is None:
                reason = "refused" if model_id in round_.refusals else "deadline"
                skipped.append(
                    Skipped(model_id=model_id, model_name=champion.name, model_version=champion.version, reason=reason)
                )
                continue
            who = str(model_id)
            votes.append(Vote(who, prediction.score, state.hits.raw_weight(who)))
            members.append((model_id, prediction.model_name, prediction.model_version, prediction.model_kind))
        for champion in round_.flagged:
            skipped.append(
                Skipped(
                    model_id=champion.model_id,
                    model_name=champion.name,
                    model_version=champion.version,
                    reason="flagged",
                )
            )
        if proposal.mature:
            # A flat rule abstains (weight 0): it has no view to dilute the models' with.
            weight = state.hits.raw_weight(RULE_NAME) if proposal.score != 0 else 0.0
            votes.append(Vote(RULE_NAME, proposal.score, weight))
            members.append((None, RULE_NAME, RULE_VERSION, RULE_KIND))
        else:
            skipped.append(Skipped(model_id=None, model_name=RULE_NAME, model_version=RULE_VERSION, reason="immature"))

        combined = combine(votes, settings.dead_zone)
        confidence = state.calibration.confidence(combined.strength)
        rule_vote = _sign(proposal.score) if proposal.mature else 0
        action = state.book.decide(
            Situation(
                combined,
                confidence,
                mature=state.rsi.bars >= settings.rsi_maturity_bars,
                long_allowed=trend_allows(trend, "up", settings.trend_required),
                short_allowed=trend_allows(trend, "down", settings.trend_required),
                rule_vote=rule_vote,
                rule_action=proposal.action if proposal.mature else "hold",
            ),
            self._entry,
        )
        if proposal.mature:
            state.rsi.commit(proposal.action)  # the rule's own position, whatever the signal did
            if rule_vote != 0:
                state.realiser.expect(Call(vector.ts_event, settings.rsi_horizon_bars, RULE_NAME, rule_vote))
        state.realiser.expect(
            Call(
                vector.ts_event,
                settings.rsi_horizon_bars,
                "signal",
                _direction_sign(combined.direction),
                combined.strength,
            )
        )
        self.dirty.add((vector.symbol, vector.timeframe))
        contributions = [
            Contribution(
                model_id=model_id,
                model_name=name,
                model_version=version,
                model_kind=kind,
                score=vote.score,
                weight=_unit(weight),
                hit_rate=state.hits.hit_rate(vote.who),
            )
            for (model_id, name, version, kind), vote, weight in zip(members, votes, combined.weights, strict=True)
        ]
        return Signal(
            event_id=signal_id(vector.symbol, vector.timeframe, vector.ts_event, settings.strategy),
            ts_event=vector.ts_event,
            ts_init=now_ns(),
            symbol=vector.symbol,
            timeframe=vector.timeframe,
            feature_vector_id=vector.event_id,
            direction=combined.direction,  # type: ignore[arg-type]
            action=action,
            strength=_unit(combined.strength),
            confidence=_unit(confidence),
            strategy=settings.strategy,
            contributions=contributions,
            skipped=skipped,
        )

    async def close(self) -> None:
        for round_ in list(self.rounds.values()):
            if round_.timer is not None:
                round_.timer.cancel()
        for task in list(self._tasks):
            task.cancel()

    def take_dirty(self) -> dict[tuple[str, str], dict]:
        """The changed series' documents (for the checkpoint), forgetting that they changed."""
        dirty, self.dirty = self.dirty, set()
        return {(s, tf.value): self.series[(s, tf)].to_json() for s, tf in dirty if (s, tf) in self.series}


def _sign(x: float) -> int:
    return 1 if x > 0 else -1 if x < 0 else 0


def _direction_sign(direction: str) -> int:
    return {"long": 1, "short": -1}.get(direction, 0)


def _unit(x: float) -> float:
    return 0.0 if math.isnan(x) else min(max(x, 0.0), 1.0)
