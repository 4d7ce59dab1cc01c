"""The sequence kinds (LSTM, Transformer): windows, the purged early-stopping slice, determinism,
early stopping, training-only standardisation, safetensors artifacts; and a job through the
registry on the real PostgreSQL (round trip, tampered artifact refused)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.ml import training
from shared.ml.artifacts import ArtifactIntegrityError
from shared.ml.deep import FORMAT, SequenceModel, artifact_header
from shared.ml.kinds import kind_of, window_of
from shared.ml.sequence import sequence_hyperparameters, windows
from shared.ml.validation import holdout_tail
from tests.shared.ml.stand_in import random_walk, stand_in
from tests.shared.ml.test_registry_and_jobs import executor, pool, runner_for, spec, train  # noqa: F401

SMALL = {"window": 8, "hidden": 8, "heads": 2, "feedforward": 16, "epochs": 3, "batch_size": 32}
KINDS = ("lstm", "transformer")


def dataset(kind: str, params: dict, n: int = 600, task: str = "direction") -> training.Dataset:
    s = training.TrainSpec(
        name="d",
        kind=kind,
        task=task,
        symbols=["EURUSD"],
        start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        end=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
        folds=2,
    )
    full = kind_of(kind).hyperparameters(params)
    return training.assemble(s, training.features([random_walk(n)], stand_in), window_of(kind_of(kind), full))


def test_a_window_is_the_rows_up_to_its_bar_and_complete_only_past_warm_up():
    values = np.arange(30, dtype=np.float64).reshape(10, 3)
    values[1, 2] = np.nan  # a warm-up gap
    x, complete = windows(values, 4)
    assert x.shape == (10, 4, 3)
    for i in range(10):
        if complete[i]:
            assert np.array_equal(x[i], values[i - 3 : i + 1])
    assert complete.tolist() == [False] * 5 + [True] * 5  # rows 0-2: too early; 3, 4: hold the gap


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 12), min_size=4, max_size=80),
    fraction=st.floats(0.05, 0.45),
    embargo=st.integers(0, 5),
)
def test_the_early_stopping_slice_is_purged_like_a_test_window(lengths, fraction, embargo):
    start = np.arange(len(lengths), dtype=np.int64)
    end = start + np.array(lengths, dtype=np.int64)
    split = holdout_tail(start, end, fraction, embargo)
    assert split.test[-1] == len(lengths) - 1 and split.test.size >= 1  # the END of the rows
    t0, t1 = split.test_window
    assert t0 == start[split.test[0]] and t1 == end[split.test].max()
    kept = split.train
    assert not np.any((start[kept] <= t1) & (end[kept] >= t0))  # no training label reaches the slice
    assert split.purged == int(np.sum(end[: split.test[0]] >= t0))


def test_hyperparameters_are_validated_naming_the_field():
    assert sequence_hyperparameters({})["window"] == 32
    for bad, field in (({"window": 1}, "window"), ({"hidden": 30, "heads": 4}, "heads"), ({"pickle": 1}, "pickle")):
        with pytest.raises(ValueError, match=field):
            sequence_hyperparameters(bad)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_weights_and_predictions_bit_for_bit(kind):
    data = dataset(kind, SMALL)
    params = kind_of(kind).hyperparameters(SMALL)

    def final(seed: int) -> training.FinalModel:
        return training.fit_final(kind, "direction", data, params, seed, 1, 5 * 60 * 10**9)

    a, b, c = final(3), final(3), final(4)
    assert a.artifact == b.artifact and a.artifact != c.artifact
    ma, mb = (kind_of(kind).load("direction", f.artifact, 1) for f in (a, b))
    pa, pb = ma.predict(data.x), mb.predict(data.x)
    assert pa.tobytes() == pb.tobytes() and np.all((pa > 0) & (pa < 1))
    assert ma.predict_row(data.x[-1]) == pa[-1]  # the online path agrees with the batch path


@pytest.mark.parametrize("kind", KINDS)
def test_early_stopping_stops_and_keeps_the_best_epoch(kind):
    # Labels of noise: the validation loss stops improving long before 200 epochs.
    data = dataset(kind, SMALL, n=400)
    params = kind_of(kind).hyperparameters(SMALL | {"epochs": 200, "patience": 2, "learning_rate": 0.01})
    y = np.random.default_rng(0).integers(0, 2, data.y.shape[0]).astype(np.float64)
    intervals = training.Intervals(data.start_ns, data.end_ns, 0)
    model, info = training.fit(kind, "direction", data.x, y, intervals, params, 1, 1)
    assert info["epochs_run"] < 200 and info["epochs_run"] == info["best_epoch"] + 2, info
    assert info["validation_purged"] == 5  # the horizon's labels reaching into the slice
    # The weights kept are the best epoch's: their validation loss is the one reported.
    split = holdout_tail(data.start_ns, data.end_ns, params["validation_fraction"], 0)
    p = np.clip(model.predict(data.x[split.test]), 1e-7, 1 - 1e-7)
    yv = y[split.test]
    loss = -np.mean(yv * np.log(p) + (1 - yv) * np.log(1 - p))
    assert loss == pytest.approx(info["best_validation_loss"], rel=1e-4)


def test_standardisation_comes_from_the_training_rows_only():
    kind = kind_of("lstm")
    data = dataset("lstm", SMALL, task="return")
    params = kind.hyperparameters(SMALL | {"epochs": 1})
    x, y = data.x[:400], data.y[:400]
    val = data.x[450:], data.y[450:]
    a = kind.fit_validated("return", x, y, *val, params, 1, 1)
    b = kind.fit_validated("return", x, y, val[0] * 100 + 7, val[1] * 50, params, 1, 1)
    assert isinstance(a, SequenceModel) and isinstance(b, SequenceModel)
    for key in ("input.mean", "input.std", "target.mean", "target.std"):
        assert a.stats[key].tobytes() == b.stats[key].tobytes()
    assert np.allclose(a.stats["input.mean"], x[:, -1, :].mean(axis=0))
    assert a.stats["target.std"][0] == pytest.approx(y.std())
    # ... and they travel in the artifact: a loaded regressor gives the same returns.
    loaded = kind.load("return", a.to_bytes(), 1)
    assert loaded.predict(data.x).tobytes() == a.predict(data.x).tobytes()


@pytest.mark.parametrize("kind", KINDS)
def test_the_artifact_is_safetensors_with_its_architecture_and_refuses_another_kind(kind):
    data = dataset(kind, SMALL)
    params = kind_of(kind).hyperparameters(SMALL | {"epochs": 1})
    artifact = training.fit_final(kind, "direction", data, params, 1, 1).artifact
    header = artifact_header(artifact)
    assert header["format"] == FORMAT and header["kind"] == kind and header["task"] == "direction"
    assert header["hyperparameters"] == params and header["features"] == 3
    assert b"pickle" not in artifact and not artifact.startswith(b"\x80")  # no pickle protocol byte
    other = "transformer" if kind == "lstm" else "lstm"
    with pytest.raises(ValueError, match=f"not a {FORMAT} {other}"):
        kind_of(other).load("direction", artifact, 1)
    with pytest.raises(ValueError, match="return"):
        kind_of(kind).load("return", artifact, 1)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_sequence_job_registers_round_trips_and_a_tampered_artifact_is_refused(
    pool,  # noqa: F811
    tmp_path,
    executor,  # noqa: F811
    kind,
):
    runner = runner_for(pool, tmp_path, executor)
    runner.settings = runner.settings.__class__(kinds=KINDS, heartbeat_s=0.2)
    view, stages = await train(runner, spec(f"deep-{kind}", kind, hyperparameters=SMALL))
    assert view["state"] == "done", view
    assert "training fold 3/3" in stages and "training final" in stages, stages
    model = await runner.registry.get(view["model_id"])
    assert model.kind == kind and model.artifact_path.endswith(".safetensors")
    assert model.hyperparameters == kind_of(kind).hyperparameters(SMALL)
    assert set(model.feature_distributions) == {"close", "ret_1", "ret_3"}
    assert all(f["epochs_run"] >= 1 and f["validation_purged"] > 0 for f in model.metrics["folds"])
    assert model.metrics["final"]["best_epoch"] >= 1
    loaded = runner.registry.load(model)
    data = dataset(kind, SMALL)
    again = kind_of(kind).load("direction", (tmp_path / "models" / model.artifact_path).read_bytes(), 1)
    assert loaded.predict(data.x[:50]).tobytes() == again.predict(data.x[:50]).tobytes()
    path = tmp_path / "models" / model.artifact_path
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(raw))
    with pytest.raises(ArtifactIntegrityError, match="refusing to load"):
        runner.registry.load(model)
