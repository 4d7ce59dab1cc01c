"""Every pair of order states (9 x 9): the legal ones pass, every other one raises IllegalTransition.

The expected matrix is written out here independently of the module's table, so an edit of
either shows up as a failure.
"""

from __future__ import annotations

import pytest

from services.trading_engine.orders.states import STATES, TERMINAL, IllegalTransition, check_transition, is_legal

#: Rows: from; columns in the order of COLUMNS; "x" = legal.
COLUMNS = (
    "new",
    "pending_submit",
    "accepted",
    "partially_filled",
    "filled",
    "canceled",
    "rejected",
    "expired",
    "unknown",
)
MATRIX = {
    #                   new pend acc  part fill canc rej  exp  unk
    "new": ".   x    .    .    .    .    x    .    .",
    "pending_submit": ".   .    x    x    x    x    x    x    x",
    "accepted": ".   .    .    x    x    x    .    x    x",
    "partially_filled": ".   .    .    x    x    x    .    x    x",
    "filled": ".   .    .    .    .    .    .    .    .",
    "canceled": ".   .    .    .    .    .    .    .    .",
    "rejected": ".   .    .    .    .    .    .    .    .",
    "expired": ".   .    .    .    .    .    .    .    .",
    "unknown": ".   .    x    x    x    x    x    x    .",
}
EXPECTED = {
    (src, dst) for src, row in MATRIX.items() for dst, mark in zip(COLUMNS, row.split(), strict=True) if mark == "x"
}
PAIRS = [(src, dst) for src in COLUMNS for dst in COLUMNS]


def test_the_matrix_covers_every_state():
    assert set(COLUMNS) == set(STATES) and len(PAIRS) == 81


@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=[f"{s}->{d}" for s, d in PAIRS])
def test_transition(src, dst):
    if (src, dst) in EXPECTED:
        assert is_legal(src, dst)
        check_transition(src, dst)
    else:
        assert not is_legal(src, dst)
        with pytest.raises(IllegalTransition) as refused:
            check_transition(src, dst)
        assert (refused.value.current, refused.value.target) == (src, dst)


def test_terminal_states_have_no_way_out():
    for state in TERMINAL:
        assert not any(is_legal(state, dst) for dst in STATES)
