"""trading-engine settings (``TRADING_ENGINE_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, model_validator

from shared.settings import PoolSettings


class TradingEngineSettings(PoolSettings):
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

    @model_validator(mode="after")
    def _grace_outlasts_a_submit(self) -> TradingEngineSettings:
        # An order still being submitted must never be taken for one that never reached the venue.
        if self.never_reached_grace_s <= self.submit_timeout_s:
            raise ValueError("never_reached_grace_s must be longer than submit_timeout_s")
        return self
