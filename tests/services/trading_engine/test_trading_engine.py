"""trading-engine starts on the template: ready, its contract held, its platform paper account made once."""

from __future__ import annotations

from services.trading_engine.accounts import PLATFORM_PAPER_ACCOUNT


async def test_it_starts_ready_with_its_contract_held(engine):
    assert (await engine.http.get("/readyz")).status_code == 200
    assert (await engine.http.get("/contract")).json()["unused"] == []


async def test_the_first_start_makes_the_platform_paper_account_once(engine, start_engine):
    r = await engine.http.get("/api/v1/accounts", headers=engine.mint("platform"))
    assert r.status_code == 200
    [account] = [a for a in r.json()["items"] if a["id"] == PLATFORM_PAPER_ACCOUNT]
    assert (account["venue"], account["currency"], account["balance"]) == ("paper", "USD", "100000")
    # A second start (another starting balance configured) leaves it as it is.
    async with start_engine(paper_starting_balance="5") as again:
        r = await again.http.get(f"/api/v1/accounts/{PLATFORM_PAPER_ACCOUNT}", headers=engine.mint("platform"))
        assert r.json()["balance"] == "100000"
    assert await engine.pool.fetchval("SELECT count(*) FROM trading.accounts WHERE tenant = 'platform'") == 1
