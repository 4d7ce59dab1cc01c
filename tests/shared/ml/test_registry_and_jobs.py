"""The model registry on the real PostgreSQL: round trip, versions, atomic promotion, the sha256
refusal of a tampered artifact; training jobs end to end (worker process, stages, result), same
seed -> bit-identical predictions, an interrupted job shows as failed."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg
import numpy as np
import pytest

from shared.events import Timeframe
from shared.kit.migrations import migrate_postgres
from shared.ml import REGISTRY_MIGRATIONS
from shared.ml.artifacts import ArtifactIntegrityError, ArtifactStore
from shared.ml.dataset import BarSeries
from shared.ml.jobs import JobRunner, JobStore, RunnerSettings, worker_pool
from shared.ml.registry import ModelRegistry, ModelRetired
from shared.ml.training import TrainSpec
from tests.shared.ml.stand_in import random_walk, stand_in
from tests.support import own_database

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class GeneratedBars:
    """A ``BarSource`` serving generated random-walk bars (one seed per symbol)."""

    def __init__(self, n: int = 1500) -> None:
        self.n = n

    async def series(self, symbol: str, timeframe: Timeframe, start: dt.datetime, end: dt.datetime) -> BarSeries:
        return random_walk(self.n, seed=sum(map(ord, symbol)), symbol=symbol, timeframe=timeframe)


@pytest.fixture(scope="module")
async def pool(infra_env):
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], "mlreg") as url:
        await migrate_postgres(url, "ml-tests", infra_env[0] / "none", (REGISTRY_MIGRATIONS,))
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        yield pool
        await pool.close()


@pytest.fixture(scope="module")
def executor():
    pool = worker_pool(10)
    yield lambda: pool
    pool.shutdown()


def spec(name: str, kind: str = "xgboost", **changes) -> TrainSpec:
    base = {
        "name": name,
        "kind": kind,
        "symbols": ["EURUSD"],
        "start": START,
        "end": START + dt.timedelta(days=2),
        "horizon_bars": 5,
        "folds": 3,
        "hyperparameters": {"n_estimators": 30},
        "seed": 7,
    }
    return TrainSpec.model_validate(base | changes)


def runner_for(pool, tmp_path, executor, registered=None) -> JobRunner:
    registry = ModelRegistry(pool, ArtifactStore(tmp_path / "models"))

    async def on_registered(model):
        if registered is not None:
            registered.append(model)

    return JobRunner(
        JobStore(pool),
        registry,
        GeneratedBars(),
        stand_in,
        RunnerSettings(kinds=("xgboost", "lightgbm"), heartbeat_s=0.2),
        worker="test",
        executor=executor,
        on_registered=on_registered,
    )


async def train(runner: JobRunner, s: TrainSpec):
    job_id = await runner.store.create(s, "client:test")
    queued = await runner.store.view(job_id)
    assert queued is not None
    stages: list[str] = [queued["stage"]]
    store_progress = runner.store.progress

    async def progress(job: uuid.UUID, stage: str, percent: float) -> None:
        # Every stage the runner writes (polling the row could miss a short one on a loaded machine).
        stages.append(stage)
        await store_progress(job, stage, percent)

    runner.store.progress = progress  # type: ignore[method-assign,assignment]
    assert await runner.run_one()
    view = await runner.store.view(job_id)
    assert view is not None
    return view, [*stages, view["stage"]]


@pytest.mark.parametrize("kind", ["xgboost", "lightgbm"])
async def test_a_job_trains_registers_and_the_model_round_trips(pool, tmp_path, executor, kind):
    registered = []
    runner = runner_for(pool, tmp_path, executor, registered)
    view, stages = await train(runner, spec(f"rt-{kind}", kind))
    assert view["state"] == "done" and view["stage"] == "done" and view["percent"] == 100, view
    assert "training fold 1/3" in stages and "training fold 3/3" in stages and stages[-1] == "done", stages
    model = await runner.registry.get(view["model_id"])
    assert registered == [model]
    assert model.version == 1 and model.status == "candidate" and model.kind == kind
    assert model.features == ["close", "ret_1", "ret_3"] and model.feature_set == "stand-in-1"
    assert model.symbols == ["EURUSD"] and model.labelling["method"] == "forward"
    assert len(model.metrics["folds"]) == 3 and 0 <= model.metrics["aggregate"]["accuracy"] <= 1
    assert sum(f["purged"] for f in model.metrics["folds"]) > 0  # labels reaching into test windows were dropped
    assert set(model.feature_distributions) == set(model.features)
    assert abs(sum(model.feature_distributions["ret_1"].proportions) - 1) < 1e-9
    assert model.expires_at == model.train_end + dt.timedelta(days=14)
    loaded = runner.registry.load(model)
    x = random_walk(50).close.reshape(-1, 1).repeat(3, axis=1)
    assert np.all((loaded.predict(x) >= 0) & (loaded.predict(x) <= 1))
    # The next training of the name is version 2.
    again, _ = await train(runner, spec(f"rt-{kind}", kind))
    assert (await runner.registry.get(again["model_id"])).version == 2


async def test_same_seed_same_predictions_bit_for_bit(pool, tmp_path, executor):
    runner = runner_for(pool, tmp_path, executor)
    a, _ = await train(runner, spec("seeded", "lightgbm", seed=11))
    b, _ = await train(runner, spec("seeded", "lightgbm", seed=11))
    c, _ = await train(
        runner, spec("seeded", "lightgbm", seed=12, hyperparameters={"n_estimators": 30, "subsample": 0.5})
    )
    ma, mb, mc = [await runner.registry.get(v["model_id"]) for v in (a, b, c)]
    assert ma.data_fingerprint == mb.data_fingerprint
    x = np.random.default_rng(0).normal([1.1, 0, 0], [0.01, 0.001, 0.002], size=(500, 3))
    pa, pb, pc = (runner.registry.load(m).predict(x) for m in (ma, mb, mc))
    assert pa.tobytes() == pb.tobytes()
    assert pa.tobytes() != pc.tobytes()


async def test_a_tampered_artifact_is_refused(pool, tmp_path, executor):
    runner = runner_for(pool, tmp_path, executor)
    view, _ = await train(runner, spec("tampered"))
    model = await runner.registry.get(view["model_id"])
    path = tmp_path / "models" / model.artifact_path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="refusing to load"):
        runner.registry.load(model)
    path.unlink()
    with pytest.raises(ArtifactIntegrityError, match="missing"):
        runner.registry.load(model)


async def test_promotion_retires_the_previous_champion_atomically(pool, tmp_path, executor):
    runner = runner_for(pool, tmp_path, executor)
    registry = runner.registry
    ids = [(await train(runner, spec("promoted")))[0]["model_id"] for _ in range(3)]
    other = (await train(runner, spec("promoted", symbols=["GBPUSD"])))[0]["model_id"]  # another slot
    at = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    first = await registry.promote(ids[0], "client:admin", at)
    assert first.changed and first.model.status == "champion" and first.model.promoted_by == "client:admin"
    await registry.promote(other, "client:admin", at)
    # Two promotions racing in one slot: the per-slot lock serialises them; one champion remains.
    await asyncio.gather(registry.promote(ids[1], "a", at), registry.promote(ids[2], "b", at))
    slot = [m for m in await registry.find(name="promoted") if m.symbols == ["EURUSD"]]
    assert [m.status for m in slot].count("champion") == 1
    assert (await registry.get(ids[0])).status == "retired"
    assert (await registry.get(other)).status == "champion"  # the other slot is untouched
    with pytest.raises(ModelRetired):
        await registry.promote(ids[0], "client:admin", at)
    champion = next(m for m in slot if m.status == "champion")
    assert not (await registry.promote(champion.id, "x", at)).changed


async def test_a_job_that_fails_says_why_and_an_interrupted_one_shows_failed(pool, tmp_path, executor):
    runner = runner_for(pool, tmp_path, executor)
    runner.bars = GeneratedBars(60)
    view, _ = await train(runner, spec("too-short", folds=50))
    assert view["state"] == "failed" and "NotEnoughData" in view["error"], view
    # A job a dead process was running: its heartbeat stops; the next runner marks it failed.
    job_id = await runner.store.create(spec("orphan", "lightgbm"), "client:test")
    await pool.execute(
        "UPDATE ml.jobs SET state = 'running', stage = 'training fold 2/3', heartbeat_at = now() - interval '1 hour'"
        " WHERE id = $1",
        job_id,
    )
    assert job_id in await runner.store.fail_interrupted(["lightgbm"], 30)
    view = await runner.store.view(job_id)
    assert view["state"] == "failed" and "interrupted" in view["error"] and "fold 2/3" in view["error"]
