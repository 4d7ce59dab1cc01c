"""What the platform must know about an instrument to trade it: the server's reference data.

Quantities are in **lots** (MT5's ``volume``): one lot is ``contract_size`` units of the base
(100,000 EUR for EURUSD, 100 oz for XAUUSD, 1 BTC for BTCUSD), so an order's notional is
``quantity * contract_size * price`` in the profit currency. Every built-in symbol settles
in USD, the accounts' currency; trading a symbol whose profit currency is not the account's
needs a conversion the engine does not make yet (it refuses such orders).

The simulated terminal reports the same facts through ``symbol_info()``
(``client/metatrader_connector/terminal/symbols.py`` reads them from here); for the MT5
venue the terminal's own ``symbol_info()`` is the truth and this table the fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from shared.market_hours import DEFAULT_SESSIONS


@dataclass(frozen=True, slots=True)
class Instrument:
    """Trading facts of one symbol."""

    symbol: str
    digits: int
    contract_size: Decimal
    volume_min: Decimal
    volume_max: Decimal
    volume_step: Decimal
    currency_profit: str
    #: ``shared.market_hours`` session whose calendar the symbol trades in.
    session: str
    #: Share of the notional held as margin while a position or an order is open (1/leverage).
    margin_rate: Decimal

    @property
    def point(self) -> Decimal:
        """Smallest price change, ``10**-digits``."""
        return Decimal(1).scaleb(-self.digits)

    def notional(self, quantity: Decimal, price: Decimal) -> Decimal:
        """Value of ``quantity`` lots at ``price``, in the profit currency."""
        return quantity * self.contract_size * price

    def volume_error(self, quantity: Decimal) -> str | None:
        """Why ``quantity`` lots cannot be traded (min, max, step), or ``None``."""
        if quantity < self.volume_min:
            return f"{quantity} lots is below the minimum of {self.volume_min}"
        if quantity > self.volume_max:
            return f"{quantity} lots is above the maximum of {self.volume_max}"
        if quantity % self.volume_step:
            return f"{quantity} lots is not a multiple of the step {self.volume_step}"
        return None


def _fx(symbol: str) -> Instrument:
    return Instrument(
        symbol=symbol,
        digits=5,
        contract_size=Decimal(100_000),
        volume_min=Decimal("0.01"),
        volume_max=Decimal(500),
        volume_step=Decimal("0.01"),
        currency_profit="USD",
        session=DEFAULT_SESSIONS[symbol],
        margin_rate=Decimal("0.0333"),  # 1:30, the retail FX maximum in the EU
    )


#: The built-in symbols (the simulated terminal's).
INSTRUMENTS: Mapping[str, Instrument] = {
    "EURUSD": _fx("EURUSD"),
    "GBPUSD": _fx("GBPUSD"),
    "XAUUSD": Instrument(
        symbol="XAUUSD",
        digits=2,
        contract_size=Decimal(100),
        volume_min=Decimal("0.01"),
        volume_max=Decimal(100),
        volume_step=Decimal("0.01"),
        currency_profit="USD",
        session=DEFAULT_SESSIONS["XAUUSD"],
        margin_rate=Decimal("0.05"),  # 1:20
    ),
    "BTCUSD": Instrument(
        symbol="BTCUSD",
        digits=2,
        contract_size=Decimal(1),
        volume_min=Decimal("0.01"),
        volume_max=Decimal(20),
        volume_step=Decimal("0.01"),
        currency_profit="USD",
        session=DEFAULT_SESSIONS["BTCUSD"],
        margin_rate=Decimal("0.5"),  # 1:2
    ),
}


def instrument(symbol: str) -> Instrument | None:
    """The built-in facts of ``symbol``, or ``None`` for a symbol the platform does not trade."""
    return INSTRUMENTS.get(symbol)
