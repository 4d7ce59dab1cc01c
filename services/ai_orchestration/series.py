"""Everything ai-orchestration remembers about one symbol and timeframe, checkpointed as one JSON
document (``checkpoint.py``): the signals' position, the RSI rule's own position and maturity,
the trend reading it gives lower timeframes, the recent closes and pending calls, the members'
hit-rate windows and the confidence calibration."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.ai_orchestration.calibration import Calibrator
from services.ai_orchestration.ensemble import Book
from services.ai_orchestration.outcomes import HitRates, Realiser
from services.ai_orchestration.settings import AiOrchestrationSettings
from shared.strategies.rsi import RsiSeries, Trend


@dataclass
class MemberInfo:
    """What a member was last seen as (for the members endpoint)."""

    name: str
    version: int
    kind: str


@dataclass
class SeriesState:
    hits: HitRates
    calibration: Calibrator
    rsi: RsiSeries = field(default_factory=RsiSeries)
    #: The signals' position (what the signals opened and closed), besides the rule's own.
    book: Book = field(default_factory=Book)
    realiser: Realiser = field(default_factory=Realiser)
    #: Open time (ns) of the newest feature vector handled (checkpointed).
    last_vector: int = -1
    #: ``last_vector`` as restored from the checkpoint: a vector not newer is a replay, skipped.
    replay_floor: int = -1
    #: This series' reading as the trend filter of lower timeframes (when it is the trend timeframe).
    trend: Trend = None
    members: dict[str, MemberInfo] = field(default_factory=dict)

    @classmethod
    def new(cls, settings: AiOrchestrationSettings) -> SeriesState:
        return cls(
            HitRates(settings.hit_window, settings.min_outcomes, settings.prior_hit_rate),
            Calibrator(settings.calibration_bins, settings.calibration_window, settings.calibration_prior),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "rsi": self.rsi.to_json(),
            "book": self.book.to_json(),
            "realiser": self.realiser.to_json(),
            "hits": self.hits.to_json(),
            "calibration": self.calibration.to_json(),
            "last_vector": self.last_vector,
            "trend": self.trend,
            "members": {k: [m.name, m.version, m.kind] for k, m in self.members.items()},
        }

    @classmethod
    def from_json(cls, settings: AiOrchestrationSettings, data: dict) -> SeriesState:
        state = cls.new(settings)
        state.rsi = RsiSeries.from_json(data.get("rsi", {}))
        state.book = Book.from_json(data.get("book", {}))
        state.realiser = Realiser.from_json(data.get("realiser", {}))
        state.hits.load(data.get("hits", {}))
        state.calibration.load(data.get("calibration", []))
        state.last_vector = state.replay_floor = int(data.get("last_vector", -1))
        trend = data.get("trend")
        state.trend = trend if trend in ("up", "down") else None
        state.members = {
            k: MemberInfo(str(n), int(v), str(kind)) for k, (n, v, kind) in data.get("members", {}).items()
        }
        return state
