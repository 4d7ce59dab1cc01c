"""The embedded ClickHouse (chdb) adapter: inserts and reads back awkward values exactly."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from shared.clickhouse import ChdbClickHouse, literal


@pytest.fixture(scope="module")
def ch(tmp_path_factory):
    engine = ChdbClickHouse(tmp_path_factory.mktemp("chdb"))
    yield engine
    engine.close()


async def test_insert_round_trips_text_decimals_nulls_uuids_and_microseconds(ch):
    await ch.execute(
        "CREATE TABLE IF NOT EXISTS default.roundtrip (name String, ts DateTime64(6, 'UTC'), "
        "id UUID, price Decimal(18, 8), last Nullable(Decimal(18, 8)), n UInt32) "
        "ENGINE = MergeTree ORDER BY (name, ts)"
    )
    rows = [
        (
            "quote ' backslash \\ dquote \" newline \n tab \t",
            dt.datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=dt.UTC),
            uuid.UUID(int=1),
            Decimal("1.10006"),
            None,
            6,
        ),
        (
            "whole second",
            dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=dt.UTC),
            uuid.UUID(int=2),
            Decimal("99999999.12345678"),
            Decimal("0.00000001"),
            4_000_000_000,
        ),
    ]
    await ch.insert("default.roundtrip", ("name", "ts", "id", "price", "last", "n"), rows)
    back = await ch.rows(
        "SELECT name, toUnixTimestamp64Micro(ts), toString(id), toString(price), toString(last), n "
        "FROM default.roundtrip ORDER BY ts"
    )
    assert back == [
        [rows[0][0], 1_767_225_600_123_456, str(uuid.UUID(int=1)), "1.10006", None, 6],
        [rows[1][0], 1_767_225_601_000_000, str(uuid.UUID(int=2)), "99999999.12345678", "0.00000001", 4_000_000_000],
    ]


async def test_literals_are_escaped_for_where_clauses(ch):
    tricky = "it's a \\ test"
    assert await ch.rows(f"SELECT {literal(tricky)}") == [[tricky]]
    assert literal(None) == "NULL" and literal(Decimal("1.50")) == "1.50"
