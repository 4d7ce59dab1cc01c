"""What a bot asks the engine to do, and the hook the engine gives bots to ask it.

An intent becomes one market order. Its ``client_order_id`` is derived from the bot and the input
that caused it (a signal's id, a bar's time, a stop's trigger), so deciding the same input again
(a redelivery after a crash between submitting and saving the bot's memory) yields the same client
order id, which the engine's orders refuse to duplicate. Bots therefore submit first, then save.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

from shared.events import EVENT_NAMESPACE, OrderAttribution

IntentAction = Literal["open_long", "open_short", "close"]


@dataclass(frozen=True, slots=True)
class Intent:
    """Open or close the bot's position with a market order of ``quantity`` lots on ``side``."""

    bot_id: uuid.UUID
    tenant: str
    account_id: str
    symbol: str
    action: IntentAction
    side: Literal["buy", "sell"]
    quantity: Decimal
    #: Why, for people and the audit trail (``signal enter_long conf 0.71``, ``rsi 27.4 <= 29``, ...).
    reason: str
    client_order_id: str
    #: The protective stop level to place with the order at a venue that supports it.
    stop_loss: Decimal | None
    attribution: OrderAttribution


def intent_client_order_id(bot_id: uuid.UUID, cause: str) -> str:
    """The client order id of the intent ``cause`` (an input's key) led ``bot_id`` to (36 chars)."""
    return "bot-" + uuid.uuid5(EVENT_NAMESPACE, f"bot-intent|{bot_id}|{cause}").hex


class IntentSink(Protocol):
    """The engine's hook: submit this intent as an order (through the risk gate, as any order).

    Submitting an intent whose ``client_order_id`` the engine already has changes nothing there.
    Raises if the order could not be accepted for submission (the bot's memory is then not saved,
    and the input is decided again on its redelivery).
    """

    async def submit(self, intent: Intent) -> None: ...
