"""The cold start: a registry without a champion gets one trained on the stored history and promoted
(actor ``bootstrap``), announced on ``ml.models.v1``; a registry with a champion is left alone."""

from __future__ import annotations

from services.ml_supervised.bootstrap import ACTOR, NAME
from shared.events import ModelLifecycle
from tests.services.ml_supervised.test_ml_supervised import running_ml
from tests.shared.ml.stand_in import T0_NS
from tests.support import eventually, own_database

#: The stand-in serves 1,500 M1 bars per symbol from T0: the clock stands just after them.
AFTER_THE_BARS_S = T0_NS / 1e9 + 1500 * 60 + 30


async def _champions(http, token):
    r = await http.get("/api/v1/models", params={"status": "champion"}, headers=token("market:read"))
    assert r.status_code == 200, r.text
    return r.json()


async def test_an_empty_registry_gets_a_champion_trained_on_the_stored_history(infra_env, tmp_path_factory):
    settings = {"bootstrap_symbols": ("EURUSD", "GBPUSD"), "bootstrap_days": 2.0, "bootstrap_min_bars": 500}
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], "mlcold") as db:
        await _cold_start_then_restart(infra_env, tmp_path_factory, db, settings)


async def _cold_start_then_restart(infra_env, tmp_path_factory, db, settings):
    async with running_ml(infra_env, tmp_path_factory, db, AFTER_THE_BARS_S, **settings) as running:
        http, token, feed, _, _ = running
        (champion,) = await eventually(lambda: _champions(http, token), timeout_s=120)
        assert champion["name"] == NAME and champion["promoted_by"] == ACTOR
        assert champion["kind"] == "xgboost" and sorted(champion["symbols"]) == ["EURUSD", "GBPUSD"]
        promoted = await feed.first(
            lambda e: isinstance(e, ModelLifecycle) and e.action == "promoted" and str(e.model_id) == champion["id"]
        )
        assert promoted.actor == ACTOR

    # A second start finds the champion and trains nothing more.
    async with running_ml(infra_env, tmp_path_factory, db, AFTER_THE_BARS_S, **settings) as running:
        http, token, _, _, _ = running
        r = await http.get("/api/v1/models", headers=token("market:read"))
        assert [m["id"] for m in r.json()] == [champion["id"]]
