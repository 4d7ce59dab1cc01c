"""shared.indicators against TA-Lib itself (the ``ta-lib`` wheel): every indicator and output,
on generated series (random walks, flat, gaps, tiny and huge prices, float residues) and on
real price series shipped in a PyPI package (``backtesting.test``); streaming == batch; state
round trips; no look-ahead."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.indicators import INDICATORS, Indicator, IndicatorError, compute, create, spec_of

#: Which price columns each TA-Lib function takes (its abstract API's default inputs).
INPUTS = {
    "SMA": "c", "EMA": "c", "WMA": "c", "RSI": "c", "MACD": "c", "BBANDS": "c", "ROC": "c",
    "OBV": "cv", "ATR": "hlc", "NATR": "hlc", "STOCH": "hlc", "ADX": "hlc", "CCI": "hlc", "WILLR": "hlc",
    "MFI": "hlcv",
}  # fmt: skip


def talib_outputs(name, params, o, h, low, c, v) -> tuple[np.ndarray, ...]:
    columns = {"o": o, "h": h, "l": low, "c": c, "v": v}
    out = getattr(talib, name)(*(columns[k] for k in INPUTS[name]), **params)
    return out if isinstance(out, tuple) else (out,)


def assert_matches_talib(name, params, o, h, low, c, v) -> None:
    """Equal to TA-Lib to 1e-9 relative where TA-Lib has a value (or within 1e-12 of the price
    scale, for values that are float residue around 0 in both), None exactly where it has NaN."""
    mine = compute(name, params, o, h, low, c, v)
    theirs = talib_outputs(name, params, o, h, low, c, v)
    assert list(mine) == list(spec_of(name).outputs)
    floor = 1e-12 * max(1.0, float(np.max(np.abs(c))))
    for (output, got), expected in zip(mine.items(), theirs, strict=True):
        assert len(got) == len(expected)
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            if math.isnan(b):
                assert a is None, f"{name}.{output}[{i}]: TA-Lib NaN, got {a}"
            else:
                assert a is not None, f"{name}.{output}[{i}]: TA-Lib {b}, got None"
                assert math.isclose(a, b, rel_tol=1e-9, abs_tol=floor), f"{name}.{output}[{i}]: {a} != TA-Lib {b}"


def bars_from_close(c: np.ndarray, rng: np.random.Generator, spread: float) -> tuple[np.ndarray, ...]:
    up = np.abs(rng.normal(0, spread, len(c)))
    down = np.abs(rng.normal(0, spread, len(c)))
    o = c + rng.normal(0, spread / 2, len(c))
    h = np.maximum(np.maximum(o, c), c + up)
    low = np.minimum(np.minimum(o, c), c - down)
    v = rng.integers(0, 1000, len(c)).astype(float)
    return o, h, low, c, v


def generated(kind: str, n: int = 500, seed: int = 7) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    if kind == "walk":
        return bars_from_close(100 + np.cumsum(rng.normal(0, 1, n)), rng, 0.5)
    if kind == "flat":
        c = np.full(n, 42.5)
        return c, c.copy(), c.copy(), c, np.full(n, 7.0)
    if kind == "gaps":  # a market closed for a while: flat bars without volume, then a jump
        o, h, low, c, v = bars_from_close(100 + np.cumsum(rng.normal(0, 1, n)), rng, 0.5)
        for arr in (o, h, low, c):
            arr[150:190] = c[149]
        v[150:190] = 0
        for arr in (o, h, low, c):
            arr[190:] += 25.0
        return o, h, low, c, v
    if kind == "tiny":
        return bars_from_close(1e-7 * (1 + np.cumsum(rng.normal(0, 0.003, n))), rng, 2e-10)
    if kind == "huge":
        return bars_from_close(1e9 * (1 + np.cumsum(rng.normal(0, 0.003, n))), rng, 2e6)
    if kind == "residue":  # windows flat up to float residue: 0.1 + 0.2 against 0.3
        c = np.where(rng.random(n) < 0.5, 0.3, 0.1 + 0.2)
        c[::37] += 1e-3
        return c, c.copy(), c.copy(), c, rng.integers(1, 100, n).astype(float)
    if kind == "steps":  # runs of identical bars longer than every default period
        c = np.repeat(100 + np.cumsum(rng.normal(0, 1, n // 40)), 40)
        return c, c + 0.25, c - 0.25, c, rng.integers(1, 100, len(c)).astype(float)
    raise AssertionError(kind)


KINDS = ("walk", "flat", "gaps", "tiny", "huge", "residue", "steps")


def defaults(name: str) -> dict:
    return {p.name: p.default for p in spec_of(name).params}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(INDICATORS))
def test_every_indicator_equals_talib_on_generated_series(name: str, kind: str) -> None:
    assert_matches_talib(name, defaults(name), *generated(kind))


def real_series(which: str) -> tuple[np.ndarray, ...]:
    import backtesting.test as data

    frame = getattr(data, which)
    return tuple(frame[col].to_numpy(dtype=float) for col in ("Open", "High", "Low", "Close", "Volume"))


@pytest.mark.parametrize("which", ["EURUSD", "GOOG", "BTCUSD"])
@pytest.mark.parametrize("name", sorted(INDICATORS))
def test_every_indicator_equals_talib_on_real_prices(name: str, which: str) -> None:
    assert_matches_talib(name, defaults(name), *real_series(which))


def _params(draw, name: str) -> dict:
    params = {}
    for p in spec_of(name).params:
        if p.name.endswith("matype"):
            params[p.name] = draw(st.integers(0, 2))
        elif p.kind is float:
            params[p.name] = draw(st.floats(-3.0, 3.0, allow_nan=False))
        else:
            params[p.name] = draw(st.integers(int(p.minimum), 40))
    return params


@st.composite
def indicator_and_params(draw) -> tuple[str, dict]:
    name = draw(st.sampled_from(sorted(INDICATORS)))
    return name, _params(draw, name)


@settings(max_examples=300, deadline=None)
@given(case=indicator_and_params(), seed=st.integers(0, 2**16), kind=st.sampled_from(["walk", "gaps", "steps"]))
def test_any_parameters_equal_talib(case, seed: int, kind: str) -> None:
    name, params = case
    assert_matches_talib(name, params, *generated(kind, n=160, seed=seed))


@pytest.mark.parametrize("name", sorted(INDICATORS))
def test_lookback_is_where_talib_starts(name: str) -> None:
    o, h, low, c, v = generated("walk")
    first = min(int(np.argmax(~np.isnan(out))) for out in talib_outputs(name, defaults(name), o, h, low, c, v))
    assert spec_of(name).lookback(defaults(name)) == first


def stream(indicator: Indicator, rows) -> list[tuple]:
    return [indicator.update(*row) for row in rows]


@pytest.mark.parametrize("name", sorted(INDICATORS))
def test_streaming_equals_batch_and_state_survives_a_restart_mid_series(name: str) -> None:
    o, h, low, c, v = generated("walk", n=300)
    rows = list(zip(o.tolist(), h.tolist(), low.tolist(), c.tolist(), v.tolist(), strict=True))
    batch = compute(name, None, o, h, low, c, v)
    whole = stream(create(name), rows)
    assert [list(col) for col in zip(*whole, strict=True)] == list(batch.values())
    for cut in (1, 17, 150):
        first = create(name)
        before = stream(first, rows[:cut])
        saved = json.loads(json.dumps(first.state()))  # as stored: JSON text
        after = stream(Indicator.from_state(saved), rows[cut:])
        assert before + after == whole, f"{name}: restored at bar {cut} diverged"


@pytest.mark.parametrize("name", sorted(INDICATORS))
def test_no_look_ahead(name: str) -> None:
    """Changing any future bar changes no earlier value."""
    o, h, low, c, v = generated("walk", n=200)
    base = compute(name, None, o, h, low, c, v)
    rng = np.random.default_rng(1)
    for cut in (40, 120, 199):
        o2, h2, l2, c2, v2 = (arr.copy() for arr in (o, h, low, c, v))
        c2[cut:] += rng.normal(0, 5, 200 - cut)
        h2[cut:] = np.maximum(h2[cut:], c2[cut:]) + 1
        l2[cut:] = np.minimum(l2[cut:], c2[cut:]) - 1
        v2[cut:] = v2[cut:] * 3 + 1
        changed = compute(name, None, o2, h2, l2, c2, v2)
        for output in base:
            assert changed[output][:cut] == base[output][:cut]


def test_unknown_names_and_parameters_are_refused_naming_the_field() -> None:
    with pytest.raises(IndicatorError) as exc:
        create("FOO")
    assert exc.value.field == "name"
    with pytest.raises(IndicatorError) as exc:
        create("RSI", {"period": 14})
    assert exc.value.field == "params.period"
    with pytest.raises(IndicatorError) as exc:
        create("RSI", {"timeperiod": 1})
    assert exc.value.field == "params.timeperiod"
    with pytest.raises(IndicatorError) as exc:
        create("BBANDS", {"matype": 3})
    assert exc.value.field == "params.matype" and "DEMA" in exc.value.message
    with pytest.raises(IndicatorError) as exc:
        create("STOCH", {"slowd_matype": 8})
    assert exc.value.field == "params.slowd_matype"


@pytest.mark.parametrize("name", sorted(INDICATORS))
def test_defaults_ranges_and_outputs_are_talibs(name: str) -> None:
    import talib.abstract

    info = talib.abstract.Function(name).info  # type: ignore[attr-defined]
    assert dict(info["parameters"]) == defaults(name)
    assert tuple(info["output_names"]) == spec_of(name).outputs
