"""The verdict on one signal: every check, stored, then published (validated or rejected).

Free of FastAPI and Kafka. Idempotent: a signal delivered again gets the verdict stored for it
the first time, published again under the same id (a crash between storing and publishing
is healed by the redelivery), never a second verdict or a ``duplicate`` of itself.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from services.pattern_validator import checks
from services.pattern_validator.inputs import Inputs, WindowKey
from services.pattern_validator.psi import TrainingDistributions, psi
from services.pattern_validator.settings import PatternValidatorSettings
from services.pattern_validator.store import VerdictStore
from shared.dedup import SignalDeduplicator, fingerprint
from shared.events import FeatureDrift, FeatureVector, RejectedSignal, Signal, ValidatedSignal, now_ns, uuid5_text
from shared.features import drift_monitored
from shared.market_hours import MarketHours

log = logging.getLogger(__name__)

Verdict = ValidatedSignal | RejectedSignal
#: Signal ids remembered as decided by this process.
DECIDED_KEPT = 50_000


def verdict_id(signal_id: uuid.UUID) -> uuid.UUID:
    """Deterministic id of the verdict on a signal (validated or rejected: a signal gets one)."""
    return uuid.UUID(uuid5_text(f"verdict|{signal_id}"))


def drift_id(model_id: uuid.UUID, symbol: str, timeframe: str, ts_event: int) -> uuid.UUID:
    return uuid.UUID(uuid5_text(f"drift|{model_id}|{symbol}|{timeframe}|{ts_event}"))


class Validator:
    def __init__(
        self,
        settings: PatternValidatorSettings,
        inputs: Inputs,
        store: VerdictStore,
        distributions: TrainingDistributions,
        publish_verdict: Callable[[Verdict], Awaitable[object]],
        publish_drift: Callable[[FeatureDrift], Awaitable[object]],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.inputs = inputs
        self.store = store
        self.distributions = distributions
        self._publish_verdict = publish_verdict
        self._publish_drift = publish_drift
        self._clock = wall_clock
        self.calendar = MarketHours(settings.sessions)
        self.dedup = SignalDeduplicator(settings.dedup_window_s)
        self.rules = checks.RegimeRules(
            settings.adx_trend,
            settings.adx_range,
            settings.natr_high,
            settings.strong_strength,
            settings.range_min_strength,
        )
        #: model id -> wall-clock time of its last FeatureDrift event (the rate limit).
        self._drift_alerted: dict[uuid.UUID, float] = {}
        #: (model, series window) -> vectors the window had taken when its PSI was computed, and the PSI.
        self._psi_cache: dict[tuple[uuid.UUID, WindowKey], tuple[int, dict[str, float]]] = {}
        #: Signals decided by this process (stored), newest last: a redelivery of one is not decided again.
        self._decided: OrderedDict[uuid.UUID, None] = OrderedDict()

    async def restore(self) -> None:
        """Reload the fingerprints of the dedup window from the stored verdicts."""
        since = int((self._clock() - self.settings.dedup_window_s) * 1e9) - 3_600_000_000_000
        for fp, ts in await self.store.recent_fingerprints(since):
            self.dedup.remember(fp, ts)

    async def handle(self, signal: Signal) -> Verdict:
        # A signal this process decided is a redelivery: its stored verdict is republished. Any
        # other is decided and inserted at once (one round trip, not a look-up first); if a verdict
        # was stored for it already (decided before a restart), the insert keeps that one and it
        # is what goes out again.
        if signal.event_id in self._decided:
            stored = await self.store.stored_event(signal.event_id)
            if stored is not None:
                verdict = _decode_verdict(stored)
                await self._publish_verdict(verdict)
                return verdict
        verdict, fp = await self.decide(signal)
        if await self.store.insert(verdict, fp):
            if fp is not None:  # only a stored verdict's fingerprint counts (a failed batch is decided again)
                self.dedup.remember(fp, signal.ts_event)
        else:
            stored = await self.store.stored_event(signal.event_id)
            verdict = _decode_verdict(stored) if stored else verdict
        self._remember_decided(signal.event_id)
        await self._publish_verdict(verdict)
        return verdict

    def _remember_decided(self, signal_id: uuid.UUID) -> None:
        self._decided[signal_id] = None
        while len(self._decided) > DECIDED_KEPT:
            self._decided.popitem(last=False)

    async def decide(self, signal: Signal) -> tuple[Verdict, str | None]:
        settings, inputs = self.settings, self.inputs
        key = (signal.symbol, signal.timeframe)
        await inputs.wait_for(
            lambda: signal.ts_event in inputs.bars.get(key, {}) and signal.feature_vector_id in inputs.vectors,
            settings.input_wait_ms / 1000,
        )
        now = int(self._clock() * 1e9)
        findings = checks.stale(signal, inputs.newest_bar(key), now, settings.stale_bars, settings.max_delay_s)
        have = set(inputs.bars.get(key, {}))
        first = inputs.first_bar.get(key, signal.ts_event)
        missing = checks.missing_bars(
            signal.symbol, signal.timeframe, signal.ts_event, have, first, settings.gap_window_bars, self.calendar
        )
        findings += checks.gappy(signal, missing, settings.max_missing_bars)
        fp = None
        if signal.action != "hold":
            candidate = fingerprint(signal.symbol, signal.direction, signal.strategy, signal.ts_event)
            if self.dedup.seen(candidate, signal.ts_event):
                findings.append(
                    checks.finding(
                        "duplicate", f"a {signal.direction} {signal.strategy} signal of this minute was seen", True
                    )
                )
            else:
                fp = candidate
        candles = inputs.candles_until(key, signal.ts_event, settings.pattern_bars)
        if candles and candles[-1].open_time == signal.ts_event:
            findings += checks.patterns(signal, checks.patterns_at_last(candles))
        vector = inputs.vectors.get(signal.feature_vector_id)
        if vector is not None:
            feats = vector.features
            price, average = feats.get(settings.trend_price_feature), feats.get(settings.trend_average_feature)
            trend_up = None if price is None or average is None else price >= average
            findings += checks.regime(
                signal, feats.get(settings.adx_feature), feats.get(settings.natr_feature), trend_up, self.rules
            )
            findings += checks.drift(signal, await self._drifted(signal, vector), settings.psi_threshold)
        return self._verdict(signal, findings), fp

    def _verdict(self, signal: Signal, findings: list[checks.Finding]) -> Verdict:
        reasons = [f.reason for f in findings if f.rejects]
        notes = [f.reason for f in findings if not f.rejects]
        common = {
            "event_id": verdict_id(signal.event_id),
            "ts_event": signal.ts_event,
            "ts_init": now_ns(),
            "signal": signal,
        }
        if reasons:
            return RejectedSignal(**common, reasons=reasons + notes)
        return ValidatedSignal(**common, notes=notes)

    async def _drifted(self, signal: Signal, vector: FeatureVector) -> dict[str, list[str]]:
        """Per contributing model (``name@version``), its features whose live PSI is over the threshold.

        Only the features drift means something for are judged (``shared.features.drift_monitored``:
        not price levels, running totals or the calendar), over the series' last ``psi_window``
        vectors once it holds ``psi_min_bars``; the PSI is recomputed every ``psi_recheck_bars``
        vectors (a day's window moves little in between, and the signal's path should not pay for it).
        """
        key: WindowKey = (signal.symbol, signal.timeframe, vector.feature_set)
        window = self.inputs.windows.get(key, ())
        taken = self.inputs.window_taken.get(key, 0)
        monitored = drift_monitored(vector.feature_set)
        out: dict[str, list[str]] = {}
        for contribution in signal.contributions:
            if contribution.model_id is None:
                continue
            distribution = await self.distributions.of(contribution.model_id)
            if distribution is None:
                continue
            cached = self._psi_cache.get((distribution.model_id, key))
            if cached is not None and taken - cached[0] < self.settings.psi_recheck_bars:
                scores = cached[1]
            else:
                scores = {}
                for name, bins in distribution.features.items():
                    if monitored is not None and name not in monitored:
                        continue
                    values = [x for v in window if (x := v.features.get(name)) is not None]
                    if len(values) >= self.settings.psi_min_bars:
                        scores[name] = psi(bins, values)
                if len(window) >= self.settings.psi_min_bars:  # a short window is judged again next time
                    self._psi_cache[(distribution.model_id, key)] = (taken, scores)
            drifted = sorted(n for n, p in scores.items() if p > self.settings.psi_threshold)
            if drifted:
                out[f"{contribution.model_name}@{contribution.model_version}"] = drifted
                await self._alert(signal, distribution.model_id, contribution, scores, drifted, len(window))
        return out

    async def _alert(self, signal, model_id, contribution, scores, drifted, window_bars) -> None:  # type: ignore[no-untyped-def]
        now = self._clock()
        last = self._drift_alerted.get(model_id)
        if last is not None and now - last < self.settings.drift_alert_interval_s:
            return
        self._drift_alerted[model_id] = now
        event = FeatureDrift(
            event_id=drift_id(model_id, signal.symbol, signal.timeframe.value, signal.ts_event),
            ts_event=signal.ts_event,
            ts_init=now_ns(),
            symbol=signal.symbol,
            timeframe=signal.timeframe,
            model_id=model_id,
            model_name=contribution.model_name,
            model_version=contribution.model_version,
            threshold=self.settings.psi_threshold,
            psi={name: round(value, 6) for name, value in scores.items()},
            drifted=drifted,
            window_bars=max(window_bars, 1),
        )
        try:
            await self._publish_drift(event)
        except Exception:  # the alert is retried at the next signal of the model: not a lost verdict
            self._drift_alerted.pop(model_id, None)
            log.exception("publishing the drift alert of %s failed", contribution.model_name)


def _decode_verdict(text: str) -> Verdict:
    if json.loads(text).get("event_type") == "signals.validated":
        return ValidatedSignal.model_validate_json(text)
    return RejectedSignal.model_validate_json(text)
