"""Loading MT5 CSV exports and replaying them through the simulated terminal."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from client.metatrader_connector.terminal import SimulatedTerminal, open_terminal
from client.metatrader_connector.terminal import constants as c
from client.metatrader_connector.terminal.csv_source import load_export, load_rates_csv, load_ticks_csv

TICK_HEADER = "<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>"
BAR_HEADER = "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"
TICK_ROWS = [
    "2024.01.02\t00:00:00.123\t1.10371\t1.10382\t\t\t6",
    "2024.01.02\t00:00:00.456\t\t1.10385\t\t\t4",  # bid unchanged
    "2024.01.02\t00:00:01.002\t1.10369\t\t\t\t2",  # ask unchanged
    "2024.01.02\t00:01:30.000\t1.10380\t1.10390\t\t\t6",
    "2024.01.02\t00:01:59.999\t\t\t1.10386\t2\t24",  # a trade: quotes unchanged
]
JAN2 = int(datetime(2024, 1, 2, tzinfo=UTC).timestamp())


def write(path: Path, header: str, rows: list[str], encoding: str = "utf-8") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding=encoding)
    return path


def test_tick_export_carries_empty_cells_forward(tmp_path):
    ticks = load_ticks_csv(write(tmp_path / "EURUSD.csv", TICK_HEADER, TICK_ROWS))
    assert ticks.dtype == c.TICKS_DTYPE and ticks.size == 5
    assert ticks["time_msc"].tolist() == [JAN2 * 1000 + ms for ms in (123, 456, 1002, 90_000, 119_999)]
    assert ticks["time"].tolist() == [JAN2, JAN2, JAN2 + 1, JAN2 + 90, JAN2 + 119]
    assert ticks["bid"].tolist() == [1.10371, 1.10371, 1.10369, 1.10380, 1.10380]
    assert ticks["ask"].tolist() == [1.10382, 1.10385, 1.10385, 1.10390, 1.10390]
    assert ticks["last"].tolist() == [0, 0, 0, 0, 1.10386]
    assert ticks["volume"].tolist() == [0, 0, 0, 0, 2] and ticks["volume_real"][-1] == 2.0
    assert ticks["flags"].tolist() == [6, 4, 2, 6, 24]


def test_flags_are_derived_when_the_column_is_empty(tmp_path):
    rows = ["2024.01.02\t00:00:00\t1.1\t1.2\t\t\t", "2024.01.02\t00:00:01\t\t1.3\t\t\t"]
    ticks = load_ticks_csv(write(tmp_path / "X.csv", TICK_HEADER, rows))
    assert ticks["flags"].tolist() == [c.TICK_FLAG_BID | c.TICK_FLAG_ASK, c.TICK_FLAG_ASK]


def test_bar_export_loads_in_mt5_rates_layout(tmp_path):
    rows = [
        "2024.01.02\t00:00:00\t1.10371\t1.10390\t1.10350\t1.10380\t57\t0\t8",
        "2024.01.02\t01:00:00\t1.10380\t1.10420\t1.10300\t1.10410\t61\t0\t7",
    ]
    rates = load_rates_csv(write(tmp_path / "bars.csv", BAR_HEADER, rows))
    assert rates.dtype == c.RATES_DTYPE
    assert rates["time"].tolist() == [JAN2, JAN2 + 3600]
    assert rates[0].tolist() == (JAN2, 1.10371, 1.1039, 1.1035, 1.1038, 57, 8, 0)
    export = load_export(tmp_path / "bars.csv")
    assert (export.kind, export.digits) == ("bars", 5)


def test_utf16_exports_load(tmp_path):
    path = write(tmp_path / "EURUSD.csv", TICK_HEADER, TICK_ROWS, encoding="utf-16")
    assert load_ticks_csv(path).size == 5


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("2024.01.02\t00:00:02.000\t1.1x\t1.2\t\t\t6", "bad <BID> value"),
        ("2024.01.02\t00:00:02.000\t1.1\t1.2", "expected 7 fields"),
        ("2024-01-02\t00:00:02.000\t1.1\t1.2\t\t\t6", "bad date"),
        ("2024.01.02\t25:00:02.000\t1.1\t1.2\t\t\t6", "bad time"),
    ],
)
def test_malformed_line_names_its_line_number(tmp_path, bad_line, message):
    path = write(tmp_path / "EURUSD.csv", TICK_HEADER, [*TICK_ROWS[:2], bad_line, *TICK_ROWS[2:]])
    with pytest.raises(ValueError, match=rf"EURUSD\.csv:4: {message}"):
        load_ticks_csv(path)


def test_unknown_header_is_rejected(tmp_path):
    path = tmp_path / "weird.csv"
    path.write_text("date,price\n2024-01-02,1.1\n")
    with pytest.raises(ValueError, match="not an MT5 tick or bar export"):
        load_export(path)


def test_terminal_replays_a_tick_export_from_csv_dir(tmp_path):
    write(tmp_path / "EURUSD.csv", TICK_HEADER, TICK_ROWS)
    write(tmp_path / "USDJPY.csv", TICK_HEADER, ["2024.01.02\t00:00:05.000\t141.123\t141.131\t\t\t6"])
    now = JAN2 + 3600
    t = open_terminal(mode="simulated", csv_dir=tmp_path, symbols=["XAUUSD"], clock=lambda: now)
    assert t.initialize()
    assert [s.name for s in t.symbols_get()] == ["XAUUSD", "EURUSD", "USDJPY"]
    ticks = t.copy_ticks_range("EURUSD", JAN2, JAN2 + 86_400, c.COPY_TICKS_ALL)
    assert np.array_equal(ticks, load_ticks_csv(tmp_path / "EURUSD.csv"))
    m1 = t.copy_rates_range("EURUSD", c.TIMEFRAME_M1, JAN2, JAN2 + 3600)
    assert m1["time"].tolist() == [JAN2, JAN2 + 60]
    assert m1["tick_volume"].tolist() == [3, 2]
    assert m1[0]["open"] == 1.10371 and m1[0]["low"] == 1.10369 and m1[0]["spread"] == 11
    assert t.symbol_info_tick("EURUSD").bid == 1.1038
    jpy = t.symbol_info("USDJPY")
    assert (jpy.digits, jpy.custom, jpy.currency_base, jpy.currency_profit) == (3, True, "USD", "JPY")
    assert t.copy_rates_from_pos("EURUSD", c.TIMEFRAME_M1, 2, 1) is None  # no third bar back
    assert t.last_error()[0] == c.RES_E_FAIL


def test_terminal_replays_a_bar_export(tmp_path):
    rows = [f"2024.01.02\t{h:02d}:00:00\t1.1\t1.2\t1.0\t1.15\t10\t0\t5" for h in range(8)]
    path = write(tmp_path / "bars.csv", BAR_HEADER, rows)
    t = SimulatedTerminal(symbols=[], csv_sources={"EURUSD": path}, clock=lambda: JAN2 + 5 * 3600 + 1)
    t.initialize()
    h1 = t.copy_rates_from_pos("EURUSD", c.TIMEFRAME_H1, 0, 100)
    assert h1.size == 6  # bars opening at or before "now" only
    h4 = t.copy_rates_range("EURUSD", c.TIMEFRAME_H4, JAN2, JAN2 + 86_400)
    assert h4["tick_volume"].tolist() == [40, 20]
    assert t.copy_rates_range("EURUSD", c.TIMEFRAME_M1, JAN2, JAN2 + 3600).size == 0  # finer than the export
    assert t.symbol_info_tick("EURUSD").ask == pytest.approx(1.15005)
