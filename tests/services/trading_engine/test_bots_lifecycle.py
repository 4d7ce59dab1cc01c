"""The bot lifecycle: every legal and illegal transition, versions, and the BotChanged of each change."""

from __future__ import annotations

import itertools

import pytest

from services.trading_engine.bots import lifecycle
from services.trading_engine.bots.lifecycle import COMMANDS, STATES, IllegalTransition, apply, changed_event
from tests.services.trading_engine.bots_support import T0, bot

LEGAL = {
    ("created", "start"): "running",
    ("running", "pause"): "paused",
    ("paused", "resume"): "running",
    ("running", "stop"): "stopped",
    ("paused", "stop"): "stopped",
    ("created", "delete"): "deleted",
    ("paused", "delete"): "deleted",
    ("stopped", "delete"): "deleted",
}


@pytest.mark.parametrize(("state", "command"), list(itertools.product(STATES, COMMANDS)))
def test_every_state_and_command(state, command):
    b = bot(state=state)
    if (state, command) in LEGAL:
        before = apply(b, command, T0 + 5)
        assert (before, b.state, b.version, b.updated_ns) == (state, LEGAL[(state, command)], 2, T0 + 5)
    else:
        with pytest.raises(IllegalTransition, match=f"cannot {command} a {state} bot"):
            apply(b, command, T0 + 5)
        assert (b.state, b.version, b.updated_ns) == (state, 1, T0)  # untouched


def test_the_table_is_exactly_the_documented_one():
    assert lifecycle.TRANSITIONS == LEGAL


def test_a_running_bot_is_not_deleted_and_the_error_says_what_is_allowed():
    with pytest.raises(IllegalTransition, match=r"allowed: pause, stop"):
        apply(bot(state="running"), "delete", T0)
    with pytest.raises(IllegalTransition, match=r"\(final\)"):
        apply(bot(state="deleted"), "start", T0)


def test_each_change_is_one_versioned_event_with_a_deterministic_id():
    b = bot(state="created", sizing="fixed_lots", lots="0.05")
    events = []
    for command in ("start", "pause", "resume", "stop", "delete"):
        apply(b, command, T0 + len(events))
        events.append(changed_event(b, "client:desk", ts_init=1))
    assert [(e.version, e.state) for e in events] == [
        (2, "running"),
        (3, "paused"),
        (4, "running"),
        (5, "stopped"),
        (6, "deleted"),
    ]
    assert len({e.event_id for e in events}) == 5
    again = changed_event(b, "client:desk", ts_init=99)
    assert again.event_id == events[-1].event_id  # published again: the same event
    assert events[0].config["lots"] == "0.05" and events[0].config["sizing"] == "fixed_lots"
    assert (events[0].tenant, events[0].account_id, events[0].symbol, events[0].strategy) == (
        "acme",
        "paper-1",
        "EURUSD",
        "signals",
    )
