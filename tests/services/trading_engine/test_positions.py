"""What one fill does to a net position (hand-computed cases, Decimal exact)."""

from __future__ import annotations

from decimal import Decimal as D

from services.trading_engine.positions import Position, apply_fill

LOT = D(100_000)


def test_a_fill_on_a_flat_position_opens_it():
    effect = apply_fill(Position(), "sell", D("0.3"), D("1.2"), LOT)
    assert effect.position == Position(D("-0.3"), D("1.2"), D(0)) and effect.realized_pnl == 0


def test_adding_averages_the_price():
    effect = apply_fill(Position(D("0.1"), D("1.1")), "buy", D("0.3"), D("1.2"), LOT)
    assert (effect.position.quantity, effect.position.average_price) == (D("0.4"), D("1.175"))
    assert effect.realized_pnl == 0


def test_reducing_a_long_realises_on_the_closed_part_and_keeps_the_price():
    effect = apply_fill(Position(D("0.4"), D("1.1")), "sell", D("0.1"), D("1.105"), LOT)
    assert effect.realized_pnl == D("50")  # 0.1 * 100,000 * 0.005
    assert effect.position == Position(D("0.3"), D("1.1"), D("50"))


def test_reducing_a_short_realises_the_other_way():
    effect = apply_fill(Position(D("-0.2"), D("1.1")), "buy", D("0.2"), D("1.102"), LOT)
    assert effect.realized_pnl == D("-40")
    assert effect.position == Position(D(0), D(0), D("-40"))


def test_crossing_closes_then_opens_the_rest_at_the_fill_price():
    effect = apply_fill(Position(D("0.1"), D("1.1")), "sell", D("0.3"), D("1.09"), LOT)
    assert effect.realized_pnl == D("-100")  # 0.1 * 100,000 * -0.01
    assert effect.position == Position(D("-0.2"), D("1.09"), D("-100"))


def test_margin_is_the_open_notional_at_the_average_price():
    assert Position(D("-0.2"), D("1.09")).margin(LOT, D("0.0333")) == D("0.2") * LOT * D("1.09") * D("0.0333")
