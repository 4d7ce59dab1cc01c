"""The service's live picture: every account's ledger, the latest quote per symbol, the signals
seen (for model weights and confidence), and the fills already counted. Free of Kafka and HTTP."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from services.performance_analytics.accounting import FillFact
from services.performance_analytics.ledger import AccountLedger, Quote
from shared.events import Fill, ValidatedSignal
from shared.instruments import instrument


class UnknownInstrument(ValueError):
    """A fill of a symbol without a contract size: its PnL cannot be computed (dead-lettered)."""


@dataclass(frozen=True, slots=True)
class SignalFacts:
    """What a validated signal says that performance needs: its confidence and its members' weights."""

    signal_id: str
    ts_ns: int
    symbol: str
    confidence: float
    #: ``name:version`` -> contribution weight.
    weights: dict[str, float]

    @classmethod
    def of(cls, event: ValidatedSignal) -> SignalFacts:
        signal = event.signal
        weights: dict[str, float] = {}
        for c in signal.contributions:
            key = f"{c.model_name}:{c.model_version}"
            weights[key] = weights.get(key, 0.0) + c.weight
        return cls(str(signal.event_id), signal.ts_event, signal.symbol, signal.confidence, weights)


#: Weights are rounded to this many decimals (0.75, not 0.7499999999999999), so shares of money stay exact.
WEIGHT_DIGITS = 10


def model_weights(models: Iterable[str], signal: SignalFacts | None) -> dict[str, float]:
    """Each model's share of a trade: the signal's contribution weights of the order's models,
    normalised to sum 1; an equal split when the signal is unknown or gives them no weight.
    An order that names no models gets the signal's members (if the signal is known)."""
    names = list(dict.fromkeys(models))
    if not names and signal is not None:
        names = list(signal.weights)
    if not names:
        return {}
    if signal is not None:
        raw = {name: signal.weights.get(name, 0.0) for name in names}
        total = sum(raw.values())
        if total > 0:
            return {name: round(w / total, WEIGHT_DIGITS) for name, w in raw.items() if w > 0}
    return {name: round(1.0 / len(names), WEIGHT_DIGITS) for name in names}


class Analytics:
    """Ledgers by (tenant, account); quotes by symbol; signals by id; ids of counted fills."""

    def __init__(self, max_signals: int = 100_000) -> None:
        self.ledgers: dict[tuple[str, str], AccountLedger] = {}
        self.marks: dict[str, Quote] = {}
        self.signals: OrderedDict[str, SignalFacts] = OrderedDict()
        self._max_signals = max_signals
        self._counted: set[int] = set()

    def counted(self, fill_id: uuid.UUID) -> bool:
        return fill_id.int in self._counted

    def fact_of(self, fill: Fill) -> FillFact:
        """``fill`` as the ledger applies it, with the weights and confidence known now."""
        info = instrument(fill.symbol)
        if info is None:
            raise UnknownInstrument(f"no contract size for {fill.symbol}")
        a = fill.attribution
        signal = self.signals.get(str(a.signal_id)) if a.signal_id else None
        return FillFact(
            fill_id=fill.event_id,
            tenant=fill.tenant,
            account_id=fill.account_id,
            symbol=fill.symbol,
            side=fill.side,
            quantity=fill.quantity,
            price=fill.price,
            commission=fill.commission,
            ts_ns=fill.ts_event,
            contract_size=info.contract_size,
            strategy=a.strategy,
            bot_id=str(a.bot_id) if a.bot_id else None,
            signal_id=str(a.signal_id) if a.signal_id else None,
            model_weights=model_weights(a.models, signal),
            confidence=signal.confidence if signal else None,
        )

    def apply(self, fact: FillFact) -> bool:
        """Count ``fact`` once: ``False`` (nothing done) if its fill was counted already."""
        if fact.fill_id.int in self._counted:
            return False
        key = (fact.tenant, fact.account_id)
        ledger = self.ledgers.get(key)
        if ledger is None:
            ledger = self.ledgers[key] = AccountLedger(*key)
        ledger.apply(fact)
        self._counted.add(fact.fill_id.int)
        return True

    def remember_signal(self, facts: SignalFacts) -> None:
        self.signals[facts.signal_id] = facts
        self.signals.move_to_end(facts.signal_id)
        while len(self.signals) > self._max_signals:
            self.signals.popitem(last=False)

    def quote(self, symbol: str, bid: Decimal, ask: Decimal, ts_ns: int) -> None:
        """Keep the newest quote of ``symbol`` (an older one arriving late is ignored)."""
        current = self.marks.get(symbol)
        if current is None or ts_ns >= current.ts_ns:
            self.marks[symbol] = Quote(bid, ask, ts_ns)

    def ledger(self, tenant: str, account_id: str) -> AccountLedger | None:
        return self.ledgers.get((tenant, account_id))

    def ledgers_of(self, tenant: str) -> list[AccountLedger]:
        return [ledger for (t, _), ledger in sorted(self.ledgers.items()) if t == tenant]
