"""BalanceManager: money held for orders before they reach the venue, and what fills do to the balance.

An account's **available** money is ``balance - used margin - reserved``:

* ``balance``: deposits plus realised PnL minus commissions (``trading.accounts.balance``);
* ``used margin``: what open positions hold (``trading.positions.margin``);
* ``reserved``: what open orders hold until they fill, are rejected, canceled or expire
  (``trading.reservations``, one row per order: they survive a restart).

A reservation is ``notional * margin rate + estimated commission`` at the order's price (the
last price for a market order). Every change to any of the three happens with the account's row
locked (``SELECT ... FOR UPDATE``, always the account before the order, so transactions never
deadlock), so concurrent orders see each other's reservations and the sum of reservations
never exceeds what is available. Reservations are conservative: an order that would close a
position reserves margin too (the venue's netting may need none).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from services.trading_engine.positions import Position, apply_fill
from shared.events import Side
from shared.instruments import Instrument

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Account:
    """An account row, read with its lock held."""

    id: str
    tenant: str
    venue: str
    name: str
    currency: str
    balance: Decimal
    margin_rate: Decimal | None
    venue_account: str | None

    def margin_rate_of(self, instrument: Instrument) -> Decimal:
        return self.margin_rate if self.margin_rate is not None else instrument.margin_rate


@dataclass(frozen=True, slots=True)
class Funds:
    balance: Decimal
    used_margin: Decimal
    reserved: Decimal

    @property
    def available(self) -> Decimal:
        return self.balance - self.used_margin - self.reserved


def account_of(row: asyncpg.Record | Mapping[str, Any]) -> Account:
    return Account(
        id=row["id"],
        tenant=row["tenant"],
        venue=row["venue"],
        name=row["name"],
        currency=row["currency"],
        balance=row["balance"],
        margin_rate=row["margin_rate"],
        venue_account=row["venue_account"],
    )


class BalanceManager:
    """Reserves before submit, releases on fill, reject, cancel and expiry; books fills into positions."""

    def __init__(self, commission_per_lot: Decimal) -> None:
        """``commission_per_lot``: the commission a reservation expects per lot (the venue charges the real one)."""
        self.commission_per_lot = commission_per_lot

    def requirement(self, account: Account, instrument: Instrument, quantity: Decimal, price: Decimal) -> Decimal:
        """What an order of ``quantity`` lots at ``price`` must reserve."""
        margin = instrument.notional(quantity, price) * account.margin_rate_of(instrument)
        return margin + quantity * self.commission_per_lot

    async def lock(self, conn: asyncpg.Connection, account_id: str, tenant: str | None = None) -> Account | None:
        """Lock the account's row for this transaction and read it (``None``: no such account, or
        not ``tenant``'s)."""
        row = await conn.fetchrow("SELECT * FROM trading.accounts WHERE id = $1 FOR UPDATE", account_id)
        if row is None or (tenant is not None and row["tenant"] != tenant):
            return None
        return account_of(row)

    async def funds(self, conn: asyncpg.Connection, account: Account) -> Funds:
        """The account's balance, used margin and reservations (exact while its lock is held)."""
        row = await conn.fetchrow(
            "SELECT (SELECT COALESCE(sum(margin), 0) FROM trading.positions WHERE account_id = $1) AS used,"
            " (SELECT COALESCE(sum(amount), 0) FROM trading.reservations WHERE account_id = $1) AS reserved",
            account.id,
        )
        assert row is not None
        return Funds(account.balance, row["used"], row["reserved"])

    async def reserve(
        self,
        conn: asyncpg.Connection,
        account: Account,
        order_id: uuid.UUID,
        amount: Decimal,
        funds: Funds | None = None,
    ) -> bool:
        """Hold ``amount`` for the order if it is available (the account's lock must be held; ``funds``:
        read under this same lock, if the caller has them)."""
        if funds is None:
            funds = await self.funds(conn, account)
        if amount > funds.available:
            return False
        await conn.execute(
            "INSERT INTO trading.reservations (order_id, account_id, amount) VALUES ($1, $2, $3)",
            order_id,
            account.id,
            amount,
        )
        return True

    async def release(self, conn: asyncpg.Connection, order_id: uuid.UUID) -> None:
        """Give back what the order holds (it is done: filled, rejected, canceled, expired)."""
        await conn.execute("DELETE FROM trading.reservations WHERE order_id = $1", order_id)

    async def keep_share(
        self, conn: asyncpg.Connection, order_id: uuid.UUID, remaining: Decimal, total: Decimal
    ) -> None:
        """Keep only the share of the reservation of the order's unfilled ``remaining`` of ``total`` lots."""
        await conn.execute(
            "UPDATE trading.reservations SET amount = amount * $2 / $3 WHERE order_id = $1",
            order_id,
            remaining,
            total,
        )

    async def book_fill(
        self,
        conn: asyncpg.Connection,
        account: Account,
        instrument: Instrument,
        side: Side,
        quantity: Decimal,
        price: Decimal,
        commission: Decimal,
    ) -> Decimal:
        """Apply a fill to the position and the balance (realised PnL minus commission); returns the
        PnL it realised. The account's lock must be held."""
        row = await conn.fetchrow(
            "SELECT quantity, average_price, realized_pnl FROM trading.positions WHERE account_id = $1 AND symbol = $2",
            account.id,
            instrument.symbol,
        )
        before = Position(*row) if row is not None else Position()
        effect = apply_fill(before, side, quantity, price, instrument.contract_size)
        after = effect.position
        # One round trip: the position and the balance.
        await conn.execute(
            "WITH p AS (INSERT INTO trading.positions"
            " (account_id, symbol, tenant, quantity, average_price, realized_pnl, margin)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (account_id, symbol) DO UPDATE SET"
            " quantity = $4, average_price = $5, realized_pnl = $6, margin = $7, updated_at = now())"
            " UPDATE trading.accounts SET balance = balance + $8 WHERE id = $1",
            account.id,
            instrument.symbol,
            account.tenant,
            after.quantity,
            after.average_price,
            after.realized_pnl,
            after.margin(instrument.contract_size, account.margin_rate_of(instrument)),
            effect.realized_pnl - commission,
        )
        return effect.realized_pnl
