"""trading-engine settings (``TRADING_ENGINE_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from shared.events import SYMBOL_PATTERN_PY
from shared.settings import PoolSettings, SignalPathPolling


class TradingEngineSettings(PoolSettings, SignalPathPolling):
    #: Every field here is read from ``TRADING_ENGINE_<FIELD>``; document each one in README.md.
    #: PostgreSQL connections of the service's pool.
    pool_min_size: int = 1
    pool_max_size: int = 10
    #: Balance of the platform tenant's paper account, created on the first start (account currency).
    paper_starting_balance: Decimal = Field(default=Decimal(100_000), ge=0, allow_inf_nan=False)
    #: Currency of the accounts the engine creates unless told otherwise.
    account_currency: str = Field(default="USD", min_length=3, max_length=8)
    #: Commission a reservation expects per lot (the venue charges the real one).
    commission_per_lot: Decimal = Field(default=Decimal(7), ge=0, allow_inf_nan=False)
    #: How often open orders are asked of their venue, seconds (and once at start).
    reconcile_interval_s: float = Field(default=5.0, gt=0)
    #: An order in pending_submit or unknown that its venue still does not know this long after it
    #: was committed for submission never reached it: it is rejected (``never_reached_venue``), seconds.
    never_reached_grace_s: float = Field(default=30.0, gt=0)
    #: How often unpublished order and fill events are retried, and how old they must be, seconds.
    outbox_sweep_interval_s: float = Field(default=2.0, gt=0)
    outbox_grace_s: float = Field(default=5.0, ge=0)
    #: A venue's submit that has not answered in this long is a lost answer (the order becomes
    #: ``unknown`` and is reconciled), seconds. Keep it well below ``never_reached_grace_s``.
    submit_timeout_s: float = Field(default=10.0, gt=0)
    #: A repeated Idempotency-Key waits this long for the first request's answer (then it gets the
    #: order as it stands), seconds.
    idempotency_wait_s: float = Field(default=5.0, gt=0)

    #: The paper venue (the default): ms between a submit and the first tick it may fill on, points
    #: added to the tick's spread (half each side), adverse slippage of market fills (bps), commission
    #: per lot and on the notional (bps), and the share of the remaining quantity one tick fills.
    paper_latency_ms: int = Field(default=50, ge=0, le=60_000)
    paper_extra_spread_points: Decimal = Field(default=Decimal(0), ge=0, allow_inf_nan=False)
    paper_slippage_bps: Decimal = Field(default=Decimal("0.5"), ge=0, le=1_000, allow_inf_nan=False)
    paper_commission_per_lot: Decimal = Field(default=Decimal(7), ge=0, allow_inf_nan=False)
    paper_commission_bps: Decimal = Field(default=Decimal(0), ge=0, le=1_000, allow_inf_nan=False)
    paper_partial_fill_ratio: Decimal = Field(default=Decimal(1), gt=0, le=1, allow_inf_nan=False)
    #: The MT5 venue's link (docs/trading-mt5.md): how long a submit waits for the link to take a
    #: command, how long a command nobody took stays queued, when an unanswered one is handed out
    #: again, and how old a terminal's snapshot may be to answer reconciliation (seconds).
    mt5_take_timeout_s: float = Field(default=5.0, gt=0)
    mt5_command_ttl_s: float = Field(default=60.0, gt=0)
    mt5_redeliver_after_s: float = Field(default=15.0, gt=0)
    mt5_snapshot_max_age_s: float = Field(default=30.0, gt=0)
    #: Bots the first start creates and starts on the platform's paper account, ``strategy:SYMBOL``
    #: each (strategies ``rsi``, ``signals``); empty: none.
    default_bots: Annotated[tuple[str, ...], NoDecode] = ("rsi:EURUSD", "rsi:GBPUSD", "rsi:XAUUSD", "rsi:BTCUSD")
    #: How often each tenant's auto mode looks for bots to create (seconds).
    auto_interval_s: float = Field(default=10.0, gt=0)

    @field_validator("default_bots", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return tuple(s.strip() for s in value.split(",") if s.strip()) if isinstance(value, str) else value

    @field_validator("default_bots")
    @classmethod
    def _bot_specs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for spec in value:
            strategy, _, symbol = spec.partition(":")
            if strategy not in ("rsi", "signals") or not re.fullmatch(SYMBOL_PATTERN_PY, symbol):
                raise ValueError(f"{spec!r}: each default bot is strategy:SYMBOL, the strategy rsi or signals")
        return value

    @model_validator(mode="after")
    def _grace_outlasts_a_submit(self) -> TradingEngineSettings:
        # An order still being submitted must never be taken for one that never reached the venue.
        if self.never_reached_grace_s <= self.submit_timeout_s:
            raise ValueError("never_reached_grace_s must be longer than submit_timeout_s")
        return self
