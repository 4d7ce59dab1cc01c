"""Position sizing in lots, Decimal throughout.

* **Fixed fractional**: risk ``fraction`` of equity between the entry and the stop-loss:
  ``lots = equity * fraction / (|entry - stop| * contract_size)``.
* **Volatility targeting**: the position's daily volatility is ``target`` of equity:
  ``lots = equity * target / (daily_move * contract_size)``, where ``daily_move`` (price units) is
  a daily ATR, or a realised daily volatility (a fraction) times the price.

Either result is rounded DOWN to the instrument's volume step (never more risk than asked), then
clipped to its maximum; below its minimum there is no trade (``None``): rounding up to the minimum
would risk more than the fraction allows.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from shared.instruments import Instrument


def fixed_fractional(
    instrument: Instrument, equity: Decimal, fraction: Decimal, entry: Decimal, stop: Decimal
) -> Decimal | None:
    """Lots risking ``fraction`` of ``equity`` if the position goes from ``entry`` to ``stop``."""
    risk_per_lot = abs(entry - stop) * instrument.contract_size
    if equity <= 0 or fraction <= 0 or risk_per_lot <= 0:
        return None
    return to_volume(instrument, equity * fraction / risk_per_lot)


def volatility_target(
    instrument: Instrument,
    equity: Decimal,
    target: Decimal,
    price: Decimal,
    *,
    daily_atr: Decimal | None = None,
    daily_volatility: Decimal | None = None,
) -> Decimal | None:
    """Lots whose daily move (``daily_atr``, else ``daily_volatility * price``) is ``target`` of equity."""
    move = daily_atr if daily_atr is not None else (None if daily_volatility is None else daily_volatility * price)
    if move is None or move <= 0 or equity <= 0 or target <= 0:
        return None
    return to_volume(instrument, equity * target / (move * instrument.contract_size))


def to_volume(instrument: Instrument, lots: Decimal) -> Decimal | None:
    """``lots`` rounded down to the volume step and clipped to the maximum; ``None`` below the minimum."""
    steps = (lots / instrument.volume_step).to_integral_value(rounding=ROUND_DOWN)
    volume = min(steps * instrument.volume_step, instrument.volume_max)
    if volume < instrument.volume_min:
        return None
    return volume.quantize(instrument.volume_step)
