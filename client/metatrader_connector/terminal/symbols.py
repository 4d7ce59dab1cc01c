"""Symbol specifications and trading-session calendars of the simulated broker.

A :class:`SymbolSpec` holds two kinds of facts: what ``symbol_info()`` reports
(digits, contract size, currencies...) and how the generator should behave
(price level, volatility, tick intensity, spread by hour of day).  The hourly
profiles are indexed by UTC hour; the simulated trade server runs on UTC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The trading calendar is the platform's one (shared.market_hours): the validator counts missing
# bars against the same sessions this terminal trades in.
from shared.instruments import INSTRUMENTS
from shared.market_hours import SAT, open_hours

from . import constants as c

# Share of an ordinary trading day's price variance that accrues during each
# hour the market is *closed*.  The latent price keeps drifting over the
# weekend (news does not stop), which is what produces the weekly-open gap:
# 48 closed hours x 0.0015 = 7% of a daily variance, i.e. a gap with standard
# deviation ~0.27 daily sigmas (~13 pips on EURUSD, ~$5 on gold).
CLOSED_HOUR_VARIANCE = 0.0015


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """Static description of one symbol, shared by the generator and symbol_info()."""

    name: str
    description: str
    path: str
    digits: int
    ref_price: float  # long-run price level the daily path mean-reverts to
    annual_vol: float  # annualised volatility of log returns
    session: str  # "fx" | "metal" | "crypto": which calendar applies
    ticks_per_hour: tuple[float, ...]  # mean quote arrivals per UTC hour when open
    spread_points: float  # typical spread in liquid hours, in points
    min_spread_points: int
    spread_profile: tuple[float, ...]  # spread multiplier per UTC hour
    currency_base: str
    currency_profit: str
    currency_margin: str
    contract_size: float
    volume_min: float = 0.01
    volume_max: float = 100.0
    volume_step: float = 0.01
    calc_mode: int = c.SYMBOL_CALC_MODE_FOREX
    trade_fraction: float = 0.0  # share of ticks that are trades (exchange-style)
    usd_loading: float = 0.0  # exposure to the common US-dollar daily factor
    swap_long: float = 0.0
    swap_short: float = 0.0
    stops_level: int = 0
    margin_rate: float = 0.01  # share of the notional held as margin (1/leverage)
    vol_profile: tuple[float, ...] = field(default=())  # defaults to ticks^0.9

    @property
    def point(self) -> float:
        """Smallest price change, 10**-digits (MT5's SYMBOL_POINT)."""
        return 10.0**-self.digits

    @property
    def daily_sigma(self) -> float:
        """Standard deviation of one ordinary trading day's log return."""
        trading_days = 365 if self.session == "crypto" else 260
        return self.annual_vol / math.sqrt(trading_days)

    def hourly_vol_weights(self) -> np.ndarray:
        """Share of a weekday's variance per UTC hour (sums to 1 over 24 hours)."""
        profile = np.asarray(self.vol_profile or np.power(self.ticks_per_hour, 0.9), float)
        # Hours that are closed on weekdays (the metals' 21:00 break) still need
        # a profile value so the weekday table is well defined; borrow the
        # neighbouring hour's.
        profile = np.where(profile > 0, profile, np.roll(profile, 1))
        return profile / profile.sum()


def hourly_tables(spec: SymbolSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per [weekday, hour]: open mask, variance weight, mean tick count.

    A full weekday's variance weights sum to 1 (one daily sigma squared).
    Closed hours get CLOSED_HOUR_VARIANCE and zero ticks; crypto weekends are
    quieter (fewer ticks, ~75% of the variance), as on real exchanges.
    """
    is_open = open_hours(spec.session)
    weights = np.tile(spec.hourly_vol_weights(), (7, 1))
    ticks = np.tile(np.asarray(spec.ticks_per_hour, float), (7, 1))
    weights = np.where(is_open, weights, CLOSED_HOUR_VARIANCE)
    ticks = np.where(is_open, ticks, 0.0)
    if spec.session == "crypto":
        weights[SAT:] *= 0.75
        ticks[SAT:] *= 0.6
    return is_open, weights, ticks


# --- hourly profiles (UTC) ---------------------------------------------------
# FX majors: quiet Asian session, busy from the London open (07:00), busiest in
# the London/New York overlap (13:00-16:00), thin after the NY close.
_FX_TICKS = (
    650, 800, 850, 750, 650, 700, 1100, 2200, 2900, 2700, 2400, 2300,
    2600, 3300, 3600, 3200, 2500, 1900, 1500, 1200, 950, 380, 450, 550,
)  # fmt: skip
# Spreads are tight in London/NY, wider in Asia, and blow out at the 21:00-22:00
# UTC rollover when liquidity providers step back; they stay wide for a while
# after 22:00 until Asian liquidity arrives.
_FX_SPREAD = (
    1.5, 1.4, 1.3, 1.3, 1.4, 1.4, 1.2, 1.0, 1.0, 1.0, 1.0, 1.0,
    1.0, 1.0, 1.0, 1.0, 1.0, 1.1, 1.2, 1.3, 1.5, 4.5, 3.0, 1.8,
)  # fmt: skip
# Gold: most active around COMEX hours (13:00-17:00 UTC); closed 21:00-22:00.
_METAL_TICKS = (
    900, 1100, 1100, 950, 850, 850, 1200, 2300, 3000, 2800, 2500, 2500,
    3100, 4200, 4600, 4000, 3100, 2400, 1900, 1500, 1100, 0, 700, 900,
)  # fmt: skip
_METAL_SPREAD = (
    1.5, 1.4, 1.3, 1.3, 1.4, 1.4, 1.2, 1.0, 1.0, 1.0, 1.0, 1.0,
    1.0, 1.0, 1.0, 1.0, 1.0, 1.1, 1.2, 1.3, 1.6, 3.0, 3.5, 2.0,
)  # fmt: skip
# Bitcoin: never closes; activity follows US hours more than anything else.
_CRYPTO_TICKS = (
    1500, 1400, 1300, 1200, 1150, 1150, 1250, 1500, 1700, 1800, 1800, 1850,
    2000, 2400, 2700, 2600, 2300, 2000, 1800, 1700, 1600, 1500, 1450, 1500,
)  # fmt: skip
_CRYPTO_SPREAD = (
    1.2, 1.25, 1.3, 1.3, 1.3, 1.25, 1.2, 1.1, 1.0, 1.0, 1.0, 1.0,
    1.0, 1.0, 1.0, 1.0, 1.0, 1.05, 1.1, 1.1, 1.15, 1.8, 1.4, 1.2,
)  # fmt: skip


def _trading_facts(symbol: str) -> dict[str, Any]:
    """The trading facts of a built-in symbol, read from the platform's reference data
    (``shared.instruments``) so the terminal and the server never disagree on them."""
    facts = INSTRUMENTS[symbol]
    return {
        "digits": facts.digits,
        "contract_size": float(facts.contract_size),
        "volume_min": float(facts.volume_min),
        "volume_max": float(facts.volume_max),
        "volume_step": float(facts.volume_step),
        "margin_rate": float(facts.margin_rate),
        "session": facts.session,
    }


DEFAULT_SPECS: dict[str, SymbolSpec] = {
    s.name: s
    for s in (
        SymbolSpec(
            name="EURUSD",
            **_trading_facts("EURUSD"),
            description="Euro vs US Dollar",
            path="Forex\\Majors\\EURUSD",
            ref_price=1.08,
            annual_vol=0.075,
            ticks_per_hour=_FX_TICKS,
            spread_points=6,
            min_spread_points=2,
            spread_profile=_FX_SPREAD,
            currency_base="EUR",
            currency_profit="USD",
            currency_margin="EUR",
            usd_loading=0.75,
            swap_long=-6.9,
            swap_short=2.1,
            stops_level=0,
        ),
        SymbolSpec(
            name="GBPUSD",
            **_trading_facts("GBPUSD"),
            description="Great Britain Pound vs US Dollar",
            path="Forex\\Majors\\GBPUSD",
            ref_price=1.27,
            annual_vol=0.085,
            ticks_per_hour=tuple(0.9 * t for t in _FX_TICKS),
            spread_points=10,
            min_spread_points=3,
            spread_profile=_FX_SPREAD,
            currency_base="GBP",
            currency_profit="USD",
            currency_margin="GBP",
            usd_loading=0.7,
            swap_long=-4.3,
            swap_short=-1.4,
        ),
        SymbolSpec(
            name="XAUUSD",
            **_trading_facts("XAUUSD"),
            description="Gold vs US Dollar",
            path="Metals\\XAUUSD",
            ref_price=2000.0,
            annual_vol=0.15,
            ticks_per_hour=_METAL_TICKS,
            spread_points=18,
            min_spread_points=8,
            spread_profile=_METAL_SPREAD,
            currency_base="XAU",
            currency_profit="USD",
            currency_margin="XAU",
            usd_loading=0.3,
            swap_long=-25.6,
            swap_short=12.3,
            stops_level=10,
        ),
        SymbolSpec(
            name="BTCUSD",
            **_trading_facts("BTCUSD"),
            description="Bitcoin vs US Dollar",
            path="Crypto\\BTCUSD",
            ref_price=60_000.0,
            annual_vol=0.55,
            ticks_per_hour=_CRYPTO_TICKS,
            spread_points=2000,
            min_spread_points=500,
            spread_profile=_CRYPTO_SPREAD,
            currency_base="BTC",
            currency_profit="USD",
            currency_margin="BTC",
            calc_mode=c.SYMBOL_CALC_MODE_CFD,
            trade_fraction=0.35,
            usd_loading=0.1,
            swap_long=-18.0,
            swap_short=-12.0,
        ),
    )
}


def generic_spec(name: str, digits: int, ref_price: float = 1.0) -> SymbolSpec:
    """A plausible FX-style spec for a symbol only known from a CSV export.

    Only the reporting fields matter for a replayed symbol (digits, point,
    currencies); the generator parameters are never used for it.
    """
    base, profit = (name[:3], name[3:6]) if len(name) >= 6 else (name, "USD")
    return SymbolSpec(
        name=name, description=name, path=f"Custom\\{name}", digits=digits,
        ref_price=ref_price, annual_vol=0.1, session="fx", ticks_per_hour=_FX_TICKS,
        spread_points=10, min_spread_points=1, spread_profile=_FX_SPREAD,
        currency_base=base, currency_profit=profit or "USD", currency_margin=base,
        contract_size=100_000.0, calc_mode=c.SYMBOL_CALC_MODE_CFD,
    )  # fmt: skip
