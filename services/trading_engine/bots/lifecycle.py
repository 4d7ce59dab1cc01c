"""The bot lifecycle: an explicit transition table, and the ``BotChanged`` event of each change.

    created --start--> running --pause--> paused --resume--> running
    running | paused --stop--> stopped
    created | paused | stopped --delete--> deleted

Deleting a running bot is refused (``IllegalTransition``, a 409 at the API): a running bot may hold
a position, and what happens to it is the caller's decision, taken by ``stop`` (optionally closing
the position) before ``delete``. ``stopped`` and ``deleted`` are final but for ``delete``; a stopped
bot is not restarted (create a new one: its memory starts clean).
"""

from __future__ import annotations

import uuid
from typing import Literal

from services.trading_engine.bots.model import Bot, BotState
from shared.events import EVENT_NAMESPACE, BotChanged

Command = Literal["start", "pause", "resume", "stop", "delete"]

#: (state, command) -> the new state. Anything else is illegal.
TRANSITIONS: dict[tuple[BotState, Command], BotState] = {
    ("created", "start"): "running",
    ("running", "pause"): "paused",
    ("paused", "resume"): "running",
    ("running", "stop"): "stopped",
    ("paused", "stop"): "stopped",
    ("created", "delete"): "deleted",
    ("paused", "delete"): "deleted",
    ("stopped", "delete"): "deleted",
}

COMMANDS: tuple[Command, ...] = ("start", "pause", "resume", "stop", "delete")
STATES: tuple[BotState, ...] = ("created", "running", "paused", "stopped", "deleted")


class IllegalTransition(Exception):
    """A command the bot's state does not allow (a 409 at the API)."""

    def __init__(self, state: BotState, command: Command) -> None:
        allowed = [c for (s, c) in TRANSITIONS if s == state]
        super().__init__(
            f"cannot {command} a {state} bot" + (f" (allowed: {', '.join(allowed)})" if allowed else " (final)")
        )
        self.state, self.command = state, command


def next_state(state: BotState, command: Command) -> BotState:
    """The state ``command`` moves a ``state`` bot to; raises ``IllegalTransition``."""
    try:
        return TRANSITIONS[(state, command)]
    except KeyError:
        raise IllegalTransition(state, command) from None


def apply(bot: Bot, command: Command, now_ns: int) -> BotState:
    """Move ``bot`` by ``command`` (state, version, updated time); returns the state it left."""
    before = bot.state
    bot.state = next_state(before, command)
    bot.version += 1
    bot.updated_ns = now_ns
    return before


def bot_event_id(bot_id: uuid.UUID, version: int) -> uuid.UUID:
    """Deterministic id of one version of a bot: the change published again is the same event."""
    return uuid.uuid5(EVENT_NAMESPACE, f"bot|{bot_id}|{version}")


def changed_event(bot: Bot, actor: str, ts_init: int) -> BotChanged:
    """The ``BotChanged`` of the bot's current version."""
    return BotChanged(
        event_id=bot_event_id(bot.bot_id, bot.version),
        ts_event=bot.updated_ns,
        ts_init=ts_init,
        bot_id=bot.bot_id,
        version=bot.version,
        tenant=bot.tenant,
        account_id=bot.account_id,
        symbol=bot.symbol,
        strategy=bot.strategy,
        state=bot.state,
        actor=actor,
        config=bot.config.flat(),
    )
