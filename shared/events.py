"""The event contract: every message on the bus, one frozen, versioned model each.

Rules (see docs/events.md):

* every event carries ``event_type``, ``schema_version``, ``event_id``,
  ``ts_event`` (when it happened, ns since the Unix epoch, UTC) and
  ``ts_init`` (when this process created the event, ns);
* a change to an event is a new ``schema_version`` (a new class), never an edit;
* money, prices and quantities are ``Decimal`` and travel as JSON strings;
* ``event_id`` is deterministic where the fact is: the same tick or the same
  bar always gets the same id, so a duplicate anywhere upstream is recognised
  downstream as the same event.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared import topics
from shared.codecs import derive

__all__ = [
    "MARKET_TICK",
    "SYMBOL_PATTERN",
    "SYMBOL_PATTERN_PY",
    "BotChanged",
    "ClientTokensRevoked",
    "Contribution",
    "DirectoryChanged",
    "Event",
    "EventDecodeError",
    "FeatureDrift",
    "FeatureVector",
    "Fill",
    "KillSwitchChanged",
    "MarketBar",
    "MarketTick",
    "ModelLifecycle",
    "OrderAttribution",
    "OrderUpdated",
    "Prediction",
    "PredictionRefused",
    "Reason",
    "RejectedSignal",
    "RiskLimitsChanged",
    "Signal",
    "Skipped",
    "TickRecord",
    "Timeframe",
    "TokenRevoked",
    "ValidatedSignal",
    "bar_event_id",
    "decode_event",
    "encode_event",
    "encode_tick",
    "feature_vector_id",
    "fill_event_id",
    "now_ns",
    "order_event_id",
    "prediction_id",
    "signal_id",
    "tick_event_id",
    "tick_event_id_text",
    "uuid5_text",
]

#: Namespace of the deterministic (uuid5) event ids.
EVENT_NAMESPACE = uuid.UUID("5f0c2b0e-4a53-4c1e-9d59-2f1a7b8c6d10")

SYMBOL_PATTERN = r"^[A-Z0-9][A-Z0-9._#-]{1,31}$"
#: The same for Python's ``re`` (and msgspec, which uses it), where ``$`` also matches
#: before a final newline: anchored with ``\Z`` instead.
SYMBOL_PATTERN_PY = SYMBOL_PATTERN.removesuffix("$") + r"\Z"
Symbol = Annotated[str, Field(pattern=SYMBOL_PATTERN)]
# What a tick or a bar price may carry is what market storage holds: ClickHouse
# ``Decimal64(8)`` (18 digits, 8 of them decimals; docs/architecture.md, "Nothing stalls").
# Wider values were accepted here, then silently truncated (a 9th decimal) or refused by
# every insert (an 11th integer digit), which stalled storage behind them.
Price = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=8, allow_inf_nan=False)]
Quantity = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=8, allow_inf_nan=False)]
#: A sum of tick quantities (a bar's ``real_volume``), stored as ``Decimal128(8)``: 30 integer
#: digits, so no count of ticks a bar can have (fewer than 10**20) makes it overflow.
QuantitySum = Annotated[Decimal, Field(ge=0, max_digits=38, decimal_places=8, allow_inf_nan=False)]
TimestampNs = Annotated[int, Field(ge=0)]


def now_ns() -> int:
    return time.time_ns()


class Timeframe(StrEnum):
    """Bar timeframes under their MT5 names; ``seconds`` and ``nanos`` give each one's length."""

    M1 = "M1"
    M5 = "M5"
    M15 = "M15"
    H1 = "H1"

    @property
    def seconds(self) -> int:
        return _TIMEFRAME_SECONDS[self]

    @property
    def nanos(self) -> int:
        return _TIMEFRAME_SECONDS[self] * 1_000_000_000


_TIMEFRAME_SECONDS = {Timeframe.M1: 60, Timeframe.M5: 300, Timeframe.M15: 900, Timeframe.H1: 3600}


class Event(BaseModel):
    """Base of every event. Subclasses pin ``event_type`` and ``schema_version`` as literals
    and name their topic in ``TOPIC``: publishers and subscribers are built from the class
    (``bus.publisher(MarketBar)``), so a payload cannot go to another event's topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The topic every event of this class is published to (a constant of ``shared.topics``).
    TOPIC: ClassVar[str]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        topic = cls.__dict__.get("TOPIC")
        if topic is None or topic not in topics.PARTITIONS:
            raise TypeError(f"{cls.__name__}.TOPIC must name a topic of shared.topics.PARTITIONS, not {topic!r}")

    event_id: uuid.UUID
    ts_event: TimestampNs
    ts_init: TimestampNs

    def partition_key(self) -> bytes:
        """Kafka key: events with the same key keep their order (symbol or account)."""
        raise NotImplementedError


class MarketTick(Event):
    """One price update of one symbol, as the terminal reported it (MT5 ``MqlTick``)."""

    TOPIC: ClassVar[str] = topics.MARKET_TICKS

    event_type: Literal["market.tick"] = "market.tick"
    schema_version: Literal[1] = 1
    symbol: Symbol
    bid: Price
    ask: Price
    last: Quantity | None = None
    volume: Quantity = Decimal(0)
    flags: int = 0
    source: Annotated[str, Field(max_length=64)] = "unknown"

    def partition_key(self) -> bytes:
        return self.symbol.encode()


#: ``MarketTick``'s fast codec, derived from the model (``shared.codecs``): its strict wire
#: form, its values record, and an encoder writing exactly the model's JSON.
MARKET_TICK = derive(MarketTick, record_name="TickRecord")

#: A decoded tick (``shared.tick_decoder.decode_tick``): ``MarketTick``'s fields and values,
#: read-only like the model, without a pydantic model per tick. Not tracked by the garbage
#: collector (``gc=False``): a consumer holds thousands at a time.
if TYPE_CHECKING:
    # Generated at import, so invisible to a type checker: it has exactly the model's fields
    # and value types, which is what it is checked as.
    TickRecord = MarketTick
else:
    TickRecord = MARKET_TICK.record


class MarketBar(Event):
    """A closed OHLC bar built from bid prices (the MT5 convention).

    ``ts_event`` is the bar's open time; ``volume`` is the tick volume (count of
    ticks, what MT5 charts show), ``real_volume`` the sum of traded volume.
    """

    TOPIC: ClassVar[str] = topics.MARKET_BARS

    event_type: Literal["market.bar"] = "market.bar"
    schema_version: Literal[1] = 1
    symbol: Symbol
    timeframe: Timeframe
    open: Price
    high: Price
    low: Price
    close: Price
    volume: int = Field(ge=0)
    real_volume: QuantitySum = Decimal(0)

    def partition_key(self) -> bytes:
        return self.symbol.encode()


class TokenRevoked(Event):
    """An access token revoked before it expired; verifiers refuse ``token_id`` until ``expires_at``."""

    TOPIC: ClassVar[str] = topics.AUTH_REVOCATIONS

    event_type: Literal["auth.token_revoked"] = "auth.token_revoked"
    schema_version: Literal[1] = 1
    token_id: Annotated[str, Field(min_length=1, max_length=64)]
    #: Epoch seconds: after this the token is dead anyway and may be forgotten.
    expires_at: int
    reason: Annotated[str, Field(max_length=64)] = "revoked"

    def partition_key(self) -> bytes:
        return self.token_id.encode()


class ClientTokensRevoked(Event):
    """Every access token of ``client_id`` issued before ``issued_before`` is revoked (the client was
    disabled, its secret rotated, or an admin revoked its tokens); verifiers refuse them until ``expires_at``."""

    TOPIC: ClassVar[str] = topics.AUTH_CLIENT_REVOCATIONS

    event_type: Literal["auth.client_tokens_revoked"] = "auth.client_tokens_revoked"
    schema_version: Literal[1] = 1
    client_id: Annotated[str, Field(min_length=1, max_length=128)]
    tenant: Annotated[str, Field(max_length=32)]
    #: Epoch seconds: a token of the client whose ``iat`` is before this is refused.
    issued_before: int
    #: Epoch seconds: every token issued before ``issued_before`` has expired by then; forget it after.
    expires_at: int
    reason: Annotated[str, Field(max_length=64)] = "revoked"

    def partition_key(self) -> bytes:
        return self.client_id.encode()


class DirectoryChanged(Event):
    """One change to a tenant, user, role assignment or OAuth2 client (the audit trail's input)."""

    TOPIC: ClassVar[str] = topics.DIRECTORY_CHANGES

    event_type: Literal["users.directory_changed"] = "users.directory_changed"
    schema_version: Literal[1] = 1
    tenant: Annotated[str, Field(max_length=32)]
    #: ``tenant``, ``user``, ``client``.
    entity: Literal["tenant", "user", "client"]
    entity_id: Annotated[str, Field(max_length=64)]
    #: e.g. ``created``, ``disabled``, ``roles_assigned``, ``secret_rotated``.
    action: Annotated[str, Field(max_length=32)]
    #: Who did it: the ``sub`` of the caller's token, or ``bootstrap``.
    actor: Annotated[str, Field(max_length=128)]
    #: What changed, never a secret.
    details: dict[str, str | int | bool | list[str] | None] = Field(default_factory=dict)

    def partition_key(self) -> bytes:
        return self.tenant.encode()


# -- Intelligence: bars -> features -> predictions -> signals -> verdicts ------------------------

#: A feature's or model's name: lower-case words, digits and ``_ . -`` (``rsi_14``, ``xgb-direction``).
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
#: A probability, weight or confidence.
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
#: A signed strength: -1 (fully short) .. +1 (fully long).
Signed = Annotated[float, Field(ge=-1.0, le=1.0, allow_inf_nan=False)]
#: A machine-readable reason: ``stale_data``, ``deadline``, ``feature_list_mismatch``, ...
ReasonCode = Annotated[str, Field(min_length=1, max_length=48, pattern=r"^[a-z][a-z0-9_]*$")]
Direction = Literal["long", "short", "flat"]


class FeatureVector(Event):
    """The features of one symbol at the close of one bar (``ts_event`` = the bar's open time).

    ``features`` keeps its order: a model's feature list is compared with it name by name. A
    value is ``None`` (never 0) until its indicator's warm-up is complete. Every value is
    computed from this bar and earlier ones only.
    """

    TOPIC: ClassVar[str] = topics.FEATURES

    event_type: Literal["features.vector"] = "features.vector"
    schema_version: Literal[1] = 1
    symbol: Symbol
    timeframe: Timeframe
    #: The ``event_id`` of the bar whose close this vector describes.
    bar_event_id: uuid.UUID
    #: Names the definition the values come from (indicators, parameters, order), e.g. ``core-1``.
    feature_set: Name
    features: dict[Name, Annotated[float, Field(allow_inf_nan=False)] | None]

    def partition_key(self) -> bytes:
        return self.symbol.encode()


class Prediction(Event):
    """One model's prediction from one feature vector (``ts_event`` = the bar's open time).

    ``score`` is the model's view as one signed number (a classifier's ``2 * p_up - 1``, a
    regressor's forward return scaled by its training spread and clipped): what the ensemble
    weighs. ``probability_up`` (classifiers) and ``expected_return`` (regressors) are the raw outputs.
    """

    TOPIC: ClassVar[str] = topics.PREDICTIONS

    event_type: Literal["ml.prediction"] = "ml.prediction"
    schema_version: Literal[1] = 1
    symbol: Symbol
    timeframe: Timeframe
    feature_vector_id: uuid.UUID
    model_id: uuid.UUID
    model_name: Name
    model_version: Annotated[int, Field(ge=1)]
    #: ``xgboost``, ``lightgbm``, ``lstm``, ``transformer``.
    model_kind: Name
    #: ``direction`` (classifier) or ``return`` (regressor), over ``horizon_bars`` bars.
    task: Literal["direction", "return"]
    horizon_bars: Annotated[int, Field(ge=1)]
    score: Signed
    probability_up: Unit | None = None
    expected_return: Annotated[float, Field(allow_inf_nan=False)] | None = None

    def partition_key(self) -> bytes:
        return self.symbol.encode()


class PredictionRefused(Event):
    """A model did not predict from a feature vector, and why (e.g. ``feature_list_mismatch``)."""

    TOPIC: ClassVar[str] = topics.PREDICTION_REFUSALS

    event_type: Literal["ml.prediction_refused"] = "ml.prediction_refused"
    schema_version: Literal[1] = 1
    symbol: Symbol
    timeframe: Timeframe
    feature_vector_id: uuid.UUID
    model_id: uuid.UUID
    model_name: Name
    model_version: Annotated[int, Field(ge=1)]
    reason: ReasonCode
    detail: Annotated[str, Field(max_length=2000)]

    def partition_key(self) -> bytes:
        return self.symbol.encode()


class ModelLifecycle(Event):
    """A change of a registered model: ``registered``, ``promoted`` (to champion), ``retired``,
    ``flagged`` (expired, drifted: orchestration stops trusting it) or ``unflagged``."""

    TOPIC: ClassVar[str] = topics.MODEL_LIFECYCLE

    event_type: Literal["ml.model_lifecycle"] = "ml.model_lifecycle"
    schema_version: Literal[1] = 1
    model_id: uuid.UUID
    model_name: Name
    model_version: Annotated[int, Field(ge=1)]
    model_kind: Name
    action: Literal["registered", "promoted", "retired", "flagged", "unflagged"]
    #: Status after the change.
    status: Literal["candidate", "champion", "retired"]
    #: Why, for ``flagged``/``retired``: ``expired``, ``drift``, ``replaced``, ...
    reason: ReasonCode | None = None
    #: Who: a token's ``sub``, or the service that acted on its own.
    actor: Annotated[str, Field(max_length=128)]
    details: dict[str, str | int | float | bool | None] = Field(default_factory=dict)

    def partition_key(self) -> bytes:
        return self.model_name.encode()


class FeatureDrift(Event):
    """A model's live inputs drifted from its training distribution: population stability index
    per feature (``psi``) above ``threshold`` for at least one of them."""

    TOPIC: ClassVar[str] = topics.FEATURE_DRIFT

    event_type: Literal["ml.feature_drift"] = "ml.feature_drift"
    schema_version: Literal[1] = 1
    symbol: Symbol
    timeframe: Timeframe
    model_id: uuid.UUID
    model_name: Name
    model_version: Annotated[int, Field(ge=1)]
    threshold: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    #: Every feature's PSI over the live window, drifted or not.
    psi: dict[Name, Annotated[float, Field(ge=0, allow_inf_nan=False)]]
    drifted: list[Name]
    window_bars: Annotated[int, Field(ge=1)]

    def partition_key(self) -> bytes:
        return self.model_name.encode()


class Contribution(BaseModel):
    """One member of an ensemble signal: which model (or rule), what it said, how much it counted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: ``None`` for a rule member (the RSI strategy), which has no registry entry.
    model_id: uuid.UUID | None
    model_name: Name
    model_version: Annotated[int, Field(ge=1)]
    model_kind: Name
    score: Signed
    weight: Unit
    #: The member's recent out-of-sample hit rate the weight came from (``None``: not enough history).
    hit_rate: Unit | None = None


class Skipped(BaseModel):
    """A member left out of a signal, and why (``deadline``, ``flagged``, ``refused``, ...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: uuid.UUID | None
    model_name: Name
    model_version: Annotated[int, Field(ge=1)]
    reason: ReasonCode


class Signal(Event):
    """The one signal of a symbol and bar (``ts_event`` = the bar's open time), combined from
    every prediction in time, with what went into it."""

    TOPIC: ClassVar[str] = topics.SIGNALS

    event_type: Literal["signals.signal"] = "signals.signal"
    schema_version: Literal[1] = 1
    symbol: Symbol
    timeframe: Timeframe
    feature_vector_id: uuid.UUID
    direction: Direction
    #: ``enter_long``, ``enter_short``, ``exit_long``, ``exit_short`` or ``hold``.
    action: Literal["enter_long", "enter_short", "exit_long", "exit_short", "hold"]
    strength: Unit
    #: Calibrated: of past signals with this confidence, this share was right.
    confidence: Unit
    #: Names the combination rule and its parameters, e.g. ``ensemble-1``.
    strategy: Name
    contributions: list[Contribution]
    skipped: list[Skipped] = Field(default_factory=list)

    def partition_key(self) -> bytes:
        return self.symbol.encode()


class Reason(BaseModel):
    """One finding of pattern-validator about a signal, machine-readable (``code``) and for people."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: ReasonCode
    detail: Annotated[str, Field(max_length=500)]


class ValidatedSignal(Event):
    """A signal pattern-validator accepted (``notes``: findings that did not reject it)."""

    TOPIC: ClassVar[str] = topics.SIGNALS_VALIDATED

    event_type: Literal["signals.validated"] = "signals.validated"
    schema_version: Literal[1] = 1
    signal: Signal
    notes: list[Reason] = Field(default_factory=list)

    def partition_key(self) -> bytes:
        return self.signal.symbol.encode()


class RejectedSignal(Event):
    """A signal pattern-validator rejected, with every reason."""

    TOPIC: ClassVar[str] = topics.SIGNALS_REJECTED

    event_type: Literal["signals.rejected"] = "signals.rejected"
    schema_version: Literal[1] = 1
    signal: Signal
    reasons: Annotated[list[Reason], Field(min_length=1)]

    def partition_key(self) -> bytes:
        return self.signal.symbol.encode()


# -- execution (trading-engine) ------------------------------------------------------------

#: Money (balances, PnL, commissions): signed, wider than a price.
Money = Annotated[Decimal, Field(max_digits=28, decimal_places=8, allow_inf_nan=False)]
#: An order's or a fill's quantity: strictly positive.
OrderQuantity = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=8, allow_inf_nan=False)]
#: Ids chosen by clients and venues (client order ids, venue order and deal ids, account ids).
ExternalId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")]
Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop", "stop_limit"]
#: ``gtc`` good till canceled, ``day`` until the session ends, ``ioc`` immediate or cancel,
#: ``fok`` fill or kill.
TimeInForce = Literal["gtc", "day", "ioc", "fok"]
#: The order state machine (docs/trading.md): ``new`` -> ``pending_submit`` -> ``accepted`` ->
#: ``partially_filled`` -> ``filled``; ``canceled``, ``rejected``, ``expired``; and ``unknown``
#: while the venue's answer is lost (reconciled until its fate is known).
OrderState = Literal[
    "new", "pending_submit", "accepted", "partially_filled", "filled", "canceled", "rejected", "expired", "unknown"
]
Venue = Literal["paper", "mt5"]


class OrderAttribution(BaseModel):
    """Where an order came from: a bot and its strategy, the signal it acts on, the models behind it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bot_id: uuid.UUID | None = None
    strategy: Name | None = None
    signal_id: uuid.UUID | None = None
    #: ``name:version`` of each model that contributed to the signal (for PnL per model).
    models: list[Annotated[str, Field(max_length=80)]] = Field(default_factory=list)


class OrderUpdated(Event):
    """An order after one change of its state (``version`` counts the changes, from 1).

    ``event_id`` = ``order_event_id(order_id, version)``: a change published again (outbox
    retry, restart) is the same event.
    """

    TOPIC: ClassVar[str] = topics.ORDERS

    event_type: Literal["trading.order"] = "trading.order"
    schema_version: Literal[1] = 1
    order_id: uuid.UUID
    version: Annotated[int, Field(ge=1)]
    client_order_id: ExternalId
    tenant: Annotated[str, Field(min_length=1, max_length=32)]
    account_id: ExternalId
    venue: Venue
    symbol: Symbol
    side: Side
    type: OrderType
    quantity: OrderQuantity
    limit_price: Price | None = None
    stop_price: Price | None = None
    time_in_force: TimeInForce
    state: OrderState
    #: The state before this change (``None`` for the first version).
    previous_state: OrderState | None = None
    filled_quantity: Quantity
    average_fill_price: Price | None = None
    venue_order_id: ExternalId | None = None
    #: Why it was rejected, canceled or expired (a risk check's reason code, the venue's, ...).
    reason_code: ReasonCode | None = None
    reason: Annotated[str, Field(max_length=500)] | None = None
    attribution: OrderAttribution = Field(default_factory=OrderAttribution)

    def partition_key(self) -> bytes:
        return self.account_id.encode()


class Fill(Event):
    """One execution at a venue (``ts_event`` = when the venue executed it).

    ``event_id`` = ``fill_id`` = ``fill_event_id(venue, account_id, venue_fill_id)``: the same
    deal reported twice (a reconciliation, a retry) is the same fill.
    """

    TOPIC: ClassVar[str] = topics.FILLS

    event_type: Literal["trading.fill"] = "trading.fill"
    schema_version: Literal[1] = 1
    order_id: uuid.UUID
    client_order_id: ExternalId
    tenant: Annotated[str, Field(min_length=1, max_length=32)]
    account_id: ExternalId
    venue: Venue
    venue_fill_id: ExternalId
    symbol: Symbol
    side: Side
    quantity: OrderQuantity
    price: Price
    #: Fees charged for this fill, in the account's currency (>= 0).
    commission: Annotated[Money, Field(ge=0)]
    currency: Annotated[str, Field(min_length=3, max_length=8)]
    attribution: OrderAttribution = Field(default_factory=OrderAttribution)

    def partition_key(self) -> bytes:
        return self.account_id.encode()


class RiskLimitsChanged(Event):
    """A new version of the pre-trade risk limits of a tenant (``account_id`` None) or one account."""

    TOPIC: ClassVar[str] = topics.RISK_LIMITS

    event_type: Literal["trading.risk_limits"] = "trading.risk_limits"
    schema_version: Literal[1] = 1
    tenant: Annotated[str, Field(min_length=1, max_length=32)]
    account_id: ExternalId | None = None
    version: Annotated[int, Field(ge=1)]
    #: Every limit of this version, by name (decimal strings, integers, lists of symbols, or
    #: ``None`` where the limit is off); docs/trading.md lists them.
    limits: dict[Name, str | int | bool | list[str] | None]
    actor: Annotated[str, Field(min_length=1, max_length=128)]
    reason: Annotated[str, Field(max_length=500)] | None = None

    def partition_key(self) -> bytes:
        return self.tenant.encode()


class KillSwitchChanged(Event):
    """A kill switch tripped (open orders in scope canceled, new ones blocked) or reset.

    Scope ``all`` and ``venue`` are the platform's; ``tenant``, ``account`` and ``strategy``
    belong to ``tenant``. A reset names a person and a reason; an automatic trip names the
    throttle that tripped it (``actor`` ``throttle:<rule>``).
    """

    TOPIC: ClassVar[str] = topics.KILL_SWITCHES

    event_type: Literal["trading.kill_switch"] = "trading.kill_switch"
    schema_version: Literal[1] = 1
    switch_id: uuid.UUID
    scope: Literal["all", "venue", "tenant", "account", "strategy"]
    #: The venue, tenant, account id or strategy name in scope (``None`` for ``all``).
    target: Annotated[str, Field(max_length=64)] | None = None
    tenant: Annotated[str, Field(min_length=1, max_length=32)]
    state: Literal["tripped", "reset"]
    automatic: bool = False
    actor: Annotated[str, Field(min_length=1, max_length=128)]
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    #: How many open orders the trip canceled (0 for a reset).
    canceled_orders: Annotated[int, Field(ge=0)] = 0

    def partition_key(self) -> bytes:
        return self.tenant.encode()


class BotChanged(Event):
    """A bot after one change of its lifecycle (``version`` counts the changes, from 1)."""

    TOPIC: ClassVar[str] = topics.BOTS

    event_type: Literal["trading.bot"] = "trading.bot"
    schema_version: Literal[1] = 1
    bot_id: uuid.UUID
    version: Annotated[int, Field(ge=1)]
    tenant: Annotated[str, Field(min_length=1, max_length=32)]
    account_id: ExternalId
    symbol: Symbol
    strategy: Name
    state: Literal["created", "running", "paused", "stopped", "deleted"]
    actor: Annotated[str, Field(min_length=1, max_length=128)]
    #: The bot's parameters at this version (strategy settings, sizing, stops).
    config: dict[Name, str | int | float | bool | None] = Field(default_factory=dict)

    def partition_key(self) -> bytes:
        return self.account_id.encode()


def order_event_id(order_id: uuid.UUID, version: int) -> uuid.UUID:
    """Deterministic id of one version of an order."""
    return uuid.uuid5(EVENT_NAMESPACE, f"order|{order_id}|{version}")


def fill_event_id(venue: str, account_id: str, venue_fill_id: str) -> uuid.UUID:
    """Deterministic id of a fill: the venue's deal id within the account."""
    return uuid.uuid5(EVENT_NAMESPACE, f"fill|{venue}|{account_id}|{venue_fill_id}")


def feature_vector_id(symbol: str, timeframe: Timeframe, open_time_ns: int, feature_set: str) -> uuid.UUID:
    """Deterministic id of a feature vector: recomputing one (after a restart) is the same event."""
    return uuid.uuid5(EVENT_NAMESPACE, f"features|{symbol}|{timeframe.value}|{open_time_ns}|{feature_set}")


def prediction_id(model_id: uuid.UUID, vector_id: uuid.UUID) -> uuid.UUID:
    """Deterministic id of one model's prediction from one feature vector."""
    return uuid.uuid5(EVENT_NAMESPACE, f"prediction|{model_id}|{vector_id}")


def signal_id(symbol: str, timeframe: Timeframe, open_time_ns: int, strategy: str) -> uuid.UUID:
    """Deterministic id of the signal of a symbol and bar under one combination rule."""
    return uuid.uuid5(EVENT_NAMESPACE, f"signal|{symbol}|{timeframe.value}|{open_time_ns}|{strategy}")


class EventDecodeError(ValueError):
    """A message that is not a valid event of the expected kind; goes to the dead-letter topic."""


def tick_event_id(
    symbol: str, time_msc: int, bid: Decimal, ask: Decimal, last: Decimal | None, volume: Decimal, flags: int
) -> uuid.UUID:
    """Deterministic id of a tick: the same tick resent by any source gets the same id."""
    return uuid.UUID(tick_event_id_text(symbol, time_msc, bid, ask, last, volume, flags))


def tick_event_id_text(
    symbol: str, time_msc: int, bid: Decimal, ask: Decimal, last: Decimal | None, volume: Decimal, flags: int
) -> str:
    """``str(tick_event_id(...))`` without the ``UUID`` object, for the ingest edge's hot loop."""
    return uuid5_text(
        f"tick|{symbol}|{time_msc}|{bid.normalize()}|{ask.normalize()}|"
        f"{'' if last is None else last.normalize()}|{volume.normalize()}|{flags}"
    )


_NAMESPACE_BYTES = EVENT_NAMESPACE.bytes


def uuid5_text(name: str) -> str:
    """``str(uuid.uuid5(EVENT_NAMESPACE, name))`` in a third of the time.

    ``uuid.uuid5`` builds a ``UUID`` through its generic constructor (~3 µs); a
    tick's id is needed only as text in its JSON. RFC 9562 §5.5: the first 16 bytes
    of the SHA-1, version nibble 5, variant bits 10.
    """
    x = hashlib.sha1(_NAMESPACE_BYTES + name.encode()).hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{'89ab'[int(x[16], 16) & 3]}{x[17:20]}-{x[20:32]}"


def bar_event_id(symbol: str, timeframe: Timeframe, open_time_ns: int) -> uuid.UUID:
    """Deterministic id of a bar: a rebuilt bar is the same event as the original."""
    return uuid.uuid5(EVENT_NAMESPACE, f"bar|{symbol}|{timeframe.value}|{open_time_ns}")


E = TypeVar("E", bound=Event)


def decode_event(kind: type[E], payload: bytes) -> E:
    """Parse one JSON payload as ``kind``; raise ``EventDecodeError`` with a readable reason."""
    try:
        return kind.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise EventDecodeError(f"{kind.__name__}: {where}: {first['msg']}") from exc


def encode_event(event: Event) -> bytes:
    return event.model_dump_json().encode()


#: ``encode_tick(event_id=..., ts_event=..., ...)``: exactly ``encode_event(MarketTick(...))``
#: for valid values, without building the model. For producers whose inputs already passed
#: validation with the same field types (data-bridge's ingest edge validates each tick once,
#: as ``IngestTick``): building the event again cost as much as that validation. Every
#: consumer still validates what it reads. ``event_id`` may be a ``UUID`` or its canonical text.
encode_tick = MARKET_TICK.encode
