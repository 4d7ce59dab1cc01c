"""The risk gate's view of an account, read in one round trip on the placing transaction's connection
(``RiskCheck.context``): the tenant's positions and open orders, and the account's realised PnL of
the current UTC day only (fills of yesterday and of other accounts do not count)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from services.trading_engine.balance import BalanceManager
from services.trading_engine.orders import repository
from services.trading_engine.orders.models import Order
from services.trading_engine.orders.pretrade import PreTradeContext
from services.trading_engine.prices import LastPrices
from services.trading_engine.risk.controls import RiskControls
from services.trading_engine.risk_wiring import RiskCheck, TripQueue
from shared.events import OrderAttribution
from shared.instruments import instrument
from tests.services.trading_engine.risk_support import WEDNESDAY_NS

DAY = 86_400 * 1_000_000_000
TENANT = "ctx"


def _order(account: str, side: str, quantity: str, state: str = "accepted") -> Order:
    return Order(
        id=uuid.uuid4(),
        tenant=TENANT,
        account_id=account,
        venue="paper",
        client_order_id=uuid.uuid4().hex,
        symbol="EURUSD",
        side=side,  # type: ignore[arg-type]
        type="market",
        quantity=Decimal(quantity),
        limit_price=None,
        stop_price=None,
        time_in_force="gtc",
        stop_loss=None,
        take_profit=None,
        state=state,  # type: ignore[arg-type]
        version=1,
        filled_quantity=Decimal(0),
        average_fill_price=None,
        venue_order_id=None,
        reason_code=None,
        reason=None,
        attribution=OrderAttribution(),
        actor="test",
    )


async def _fill(conn, order: Order, realized: str, commission: str, ts_ns: int) -> None:
    await conn.execute(
        "INSERT INTO trading.fills (fill_id, order_id, tenant, account_id, venue, venue_fill_id, symbol, side,"
        " quantity, price, commission, currency, realized_pnl, ts_event)"
        " VALUES ($1, $2, $3, $4, 'paper', $5, 'EURUSD', 'buy', 0.1, 1.1, $6, 'USD', $7, $8)",
        uuid.uuid4(),
        order.id,
        TENANT,
        order.account_id,
        uuid.uuid4().hex,
        Decimal(commission),
        Decimal(realized),
        ts_ns,
    )


async def test_context_reads_positions_open_orders_and_only_todays_pnl_of_the_account(engine):
    mine, other = f"ctx-{uuid.uuid4().hex[:8]}", f"ctx-{uuid.uuid4().hex[:8]}"
    async with engine.pool.acquire() as conn:
        for account in (mine, other):
            await conn.execute(
                "INSERT INTO trading.accounts (id, tenant, venue, name, currency, balance)"
                " VALUES ($1, $2, 'paper', 'ctx', 'USD', 100000)",
                account,
                TENANT,
            )
        await conn.execute(
            "INSERT INTO trading.positions (account_id, symbol, tenant, quantity, average_price, realized_pnl, margin)"
            " VALUES ($1, 'EURUSD', $2, 0.3, 1.1, 0, 100)",
            mine,
            TENANT,
        )
        buy, sell, done = _order(mine, "buy", "0.2"), _order(mine, "sell", "0.5"), _order(mine, "buy", "9", "filled")
        elsewhere = _order(other, "buy", "0.4")
        for o in (buy, sell, done, elsewhere):
            assert await repository.insert_order(conn, o)
        await _fill(conn, done, "-40", "2", WEDNESDAY_NS - 60_000_000_000)  # today: -42
        await _fill(conn, done, "10", "1", WEDNESDAY_NS - 3_600_000_000_000)  # today: +9
        await _fill(conn, done, "-500", "0", WEDNESDAY_NS - DAY)  # yesterday
        await _fill(conn, elsewhere, "-700", "0", WEDNESDAY_NS)  # another account

        prices = LastPrices()
        prices.update("EURUSD", WEDNESDAY_NS, Decimal("1.2"))
        check = RiskCheck(RiskControls(), prices, TripQueue())
        balances = BalanceManager(Decimal(7))
        async with conn.transaction():
            account = await balances.lock(conn, mine)
            assert account is not None
            new = _order(mine, "buy", "0.1", "new")
            traded = instrument("EURUSD")
            assert traded is not None
            funds = await balances.funds(conn, account)
            ctx = await check.context(
                new, PreTradeContext(account, funds, traded, Decimal("1.2"), Decimal("1.2"), WEDNESDAY_NS, conn)
            )

    assert ctx.account.realised_pnl_today == Decimal(-33)
    assert ctx.positions == {"EURUSD": Decimal("0.3")}
    lots = ctx.open_orders["EURUSD"]
    assert (lots.buy, lots.sell) == (Decimal("0.2"), Decimal("0.5"))
    size = traded.contract_size
    assert ctx.account.open_exposure == (Decimal("0.3") + Decimal("0.2") + Decimal("0.5")) * size * Decimal("1.2")
    assert ctx.tenant_open_exposure == ctx.account.open_exposure + Decimal("0.4") * size * Decimal("1.2")
    assert ctx.account.unrealised_pnl == Decimal("0.3") * size * (Decimal("1.2") - Decimal("1.1"))
    assert ctx.account.used_margin == Decimal(100)
