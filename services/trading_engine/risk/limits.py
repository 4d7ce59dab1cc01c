"""Pre-trade risk limits: one versioned set per tenant, optionally overridden per account.

A tenant's version holds every limit (defaults filled in); an account's version holds only the
limits it overrides (``None`` there switches a limit off for that account, a missing name inherits
the tenant's). The effective limits of an account are its override merged over its tenant's.

On the wire (``RiskLimitsChanged.limits``, the API) money and prices are decimal strings, counts
integers, switches booleans, symbol lists lists, and a limit that is off is ``null``.
docs/trading-risk.md lists every limit with the check that uses it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from shared.events import EVENT_NAMESPACE, RiskLimitsChanged, now_ns

WireValue = str | int | bool | list[str] | None
Wire = dict[str, WireValue]


def _no_float(value: Any) -> Any:
    # Money never travels as a binary float: 0.1 would arrive as 0.1000000000000000055...
    if isinstance(value, float):
        raise ValueError("give money and quantities as decimal strings, not floats")
    return value


Money = Annotated[Decimal, BeforeValidator(_no_float), Field(gt=0, max_digits=28, decimal_places=8)]
Lots = Annotated[Decimal, BeforeValidator(_no_float), Field(gt=0, max_digits=18, decimal_places=8)]
SymbolName = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9._#-]{1,31}$")]


class RiskLimits(BaseModel):
    """Every pre-trade limit; ``None`` = that check is off. Defaults are deliberately conservative
    for a retail-sized paper account (100,000 USD): see docs/trading-risk.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Price collar: a limit or stop price further than this from the last price (basis points) is refused.
    price_collar_bps: Annotated[int, Field(gt=0, le=10_000)] | None = 500
    #: Maximum order value: the order's notional (lots * contract size * price) in the account currency.
    max_order_value: Money | None = Decimal(1_000_000)
    #: Maximum order volume, in lots.
    max_order_lots: Lots | None = Decimal(50)
    #: Message-rate limit: submits + modifies + cancels of one account within ``message_window_s``.
    max_messages: Annotated[int, Field(ge=1, le=1_000_000)] | None = 20
    message_window_s: Annotated[int, Field(ge=1, le=86_400)] = 1
    #: Credit limit of one account: open exposure (positions + open orders, notional) + this order.
    account_credit_limit: Money | None = None
    #: Credit limit of the whole tenant, the same sum over all its accounts.
    tenant_credit_limit: Money | None = None
    #: Capital check: the order's margin must fit in the equity not yet used or reserved.
    check_capital: bool = True
    #: Position limit per symbol: the resulting |position| in lots, open orders included.
    max_position_lots: Lots | None = Decimal(100)
    #: Exposure limit per symbol: that resulting position's notional.
    max_symbol_exposure: Money | None = None
    #: Daily loss limit: realised + unrealised PnL of the trading day at or below minus this blocks
    #: orders that increase risk.
    daily_loss_limit: Money | None = None
    #: Duplicate-order window: the same account, symbol, side, quantity, type and prices again within it.
    duplicate_window_s: Annotated[int, Field(ge=1, le=3_600)] | None = 5
    #: Symbols this tenant or account may not trade.
    restricted_symbols: Annotated[list[SymbolName], Field(max_length=1000)] = Field(default_factory=list)
    #: Trading-session check: no orders into a closed market.
    check_market_hours: bool = True
    #: Throttle: this many rejections (risk or venue) of one account within ``throttle_window_s``
    #: trip the account's kill switch.
    throttle_rejections: Annotated[int, Field(ge=2, le=10_000)] | None = 10
    throttle_window_s: Annotated[int, Field(ge=1, le=86_400)] = 60
    #: Whether reaching the daily loss limit also trips the account's kill switch.
    trip_on_daily_loss: bool = True


#: The limits of a tenant that never set any.
DEFAULT_LIMITS = RiskLimits()
LIMIT_NAMES: tuple[str, ...] = tuple(RiskLimits.model_fields)


class InvalidLimits(ValueError):
    """Limits that do not parse: ``field`` names the first wrong one (for a 422 naming it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _invalid(exc: ValidationError) -> InvalidLimits:
    first = exc.errors()[0]
    return InvalidLimits(".".join(str(p) for p in first.get("loc", ())) or "limits", first["msg"])


def to_wire(limits: RiskLimits) -> Wire:
    """Every limit of ``limits`` in its wire form (Decimals as strings)."""
    return override_to_wire(limits.model_dump())


def override_to_wire(values: Mapping[str, Any]) -> Wire:
    """Some limits (an account's override) in their wire form."""
    out: Wire = {}
    for name, value in values.items():
        if isinstance(value, Decimal):
            out[name] = str(value)
        elif isinstance(value, list):
            out[name] = [str(v) for v in value]
        else:
            out[name] = value
    return out


def from_wire(wire: Mapping[str, Any]) -> RiskLimits:
    """A tenant's full set from its wire form; missing names take their default. ``InvalidLimits``."""
    try:
        return RiskLimits.model_validate(dict(wire))
    except ValidationError as exc:
        raise _invalid(exc) from None


def parse_override(wire: Mapping[str, Any]) -> dict[str, Any]:
    """An account's override, validated name by name (unknown names refused); ``InvalidLimits``."""
    try:
        parsed = RiskLimits.model_validate(dict(wire))
    except ValidationError as exc:
        raise _invalid(exc) from None
    return {name: getattr(parsed, name) for name in wire}


def effective(tenant: RiskLimits, override: Mapping[str, Any] | None) -> RiskLimits:
    """The limits of an account: its ``override`` (parsed, see ``parse_override``) over its tenant's."""
    if not override:
        return tenant
    return tenant.model_copy(update=dict(override))


@dataclass(frozen=True, slots=True)
class LimitsVersion:
    """One stored version: a tenant's full set (``account_id`` None) or an account's override."""

    tenant: str
    account_id: str | None
    version: int
    #: Wire form: every limit for a tenant, the overridden ones for an account.
    limits: Wire
    actor: str
    reason: str | None
    created_ns: int

    def event(self) -> RiskLimitsChanged:
        """The ``RiskLimitsChanged`` of this version (deterministic id: recording it twice is one event)."""
        return RiskLimitsChanged(
            event_id=limits_event_id(self.tenant, self.account_id, self.version),
            ts_event=self.created_ns,
            ts_init=now_ns(),
            tenant=self.tenant,
            account_id=self.account_id,
            version=self.version,
            limits=dict(self.limits),
            actor=self.actor,
            reason=self.reason,
        )


def limits_event_id(tenant: str, account_id: str | None, version: int) -> uuid.UUID:
    """Deterministic id of one version of a tenant's or an account's limits."""
    return uuid.uuid5(EVENT_NAMESPACE, f"risk-limits|{tenant}|{account_id or ''}|{version}")


class LimitsBook:
    """The current limits of every tenant and account, in memory, for the gate's hot path.

    Filled from the store at start (``load``) and kept current by the ``RiskLimitsChanged`` events
    of every change (``apply``, idempotent and order-safe: an older version never replaces a newer).
    """

    def __init__(self) -> None:
        self._tenants: dict[str, tuple[int, RiskLimits]] = {}
        self._accounts: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self._effective: dict[tuple[str, str], RiskLimits] = {}

    def load(self, versions: list[LimitsVersion]) -> None:
        for v in versions:
            self._put(v.tenant, v.account_id, v.version, v.limits)

    def apply(self, event: RiskLimitsChanged) -> bool:
        """Take a change in; ``False`` if this book already holds that version or a newer one."""
        return self._put(event.tenant, event.account_id, event.version, event.limits)

    def _put(self, tenant: str, account_id: str | None, version: int, wire: Mapping[str, Any]) -> bool:
        if account_id is None:
            if self._tenants.get(tenant, (0, None))[0] >= version:
                return False
            self._tenants[tenant] = (version, from_wire(wire))
            self._effective = {k: v for k, v in self._effective.items() if k[0] != tenant}
        else:
            if self._accounts.get((tenant, account_id), (0, None))[0] >= version:
                return False
            self._accounts[(tenant, account_id)] = (version, parse_override(wire))
            self._effective.pop((tenant, account_id), None)
        return True

    def tenant(self, tenant: str) -> RiskLimits:
        return self._tenants.get(tenant, (0, DEFAULT_LIMITS))[1]

    def limits_for(self, tenant: str, account_id: str) -> RiskLimits:
        """The effective limits of one account (cached until either version changes)."""
        key = (tenant, account_id)
        found = self._effective.get(key)
        if found is None:
            override = self._accounts.get(key)
            found = self._effective[key] = effective(self.tenant(tenant), override[1] if override else None)
        return found


__all__ = [
    "DEFAULT_LIMITS",
    "LIMIT_NAMES",
    "InvalidLimits",
    "LimitsBook",
    "LimitsVersion",
    "RiskLimits",
    "Wire",
    "effective",
    "from_wire",
    "limits_event_id",
    "override_to_wire",
    "parse_override",
    "to_wire",
]
