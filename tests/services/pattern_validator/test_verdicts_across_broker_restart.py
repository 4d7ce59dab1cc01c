"""A broker restart (the embedded broker's new, empty log) loses no verdict for the bars published
after it came back: ai-orchestration and pattern-validator on a broker of the test's own, which is
killed and started again (topics ensured, as the supervisor does) between two runs of bars."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from services.ai_orchestration.catalog import Champion
from services.ai_orchestration.service import definition as orchestration
from services.ai_orchestration.settings import AiOrchestrationSettings
from services.pattern_validator.psi import NoDistributions
from services.pattern_validator.service import definition as validator
from services.pattern_validator.settings import PatternValidatorSettings
from shared.bus.broker import ensure_topics
from shared.events import Timeframe
from shared.settings import PlatformSettings
from tests.conftest import PORT_OFFSET
from tests.intelligence_support import Producer, bearer, new_key, running, service_database, unique_symbol
from tests.services.pattern_validator.test_validator_flow import bar, vector
from tests.support import OwnBroker, eventually

#: A broker of this module's own (beside the session's), so that it can be restarted.
PORT = 9092 + PORT_OFFSET + 1700
M1 = Timeframe.M1
BEFORE, AFTER = range(4), range(4, 12)


class NoChampions:
    async def champions(self, symbol: str, timeframe: Timeframe) -> Sequence[Champion]:
        return ()


@pytest.fixture
def own_broker(tmp_path: Path):
    broker = OwnBroker(PORT, tmp_path / "kafka.log")
    yield broker
    broker.stop()


async def test_no_verdict_is_lost_for_bars_published_after_a_broker_restart(own_broker, infra_env, tmp_path):
    await ensure_topics(own_broker.servers)
    key, symbol = new_key(), unique_symbol("BR")
    orch, val = orchestration(lambda rt: NoChampions()), validator(lambda rt: NoDistributions())
    orch_settings = AiOrchestrationSettings(signal_timeframes=[M1], rsi_maturity_bars=2, deadline_ms=50)
    # Staleness by the clock is not what this is about (the bars are of the past).
    val_settings = PatternValidatorSettings(max_delay_s=10**9)
    async with service_database(infra_env, orch) as orch_db, service_database(infra_env, val) as val_db:

        def platform(url: str, name: str) -> PlatformSettings:
            return PlatformSettings(
                hats_var_dir=tmp_path / name,
                hats_port_offset=PORT_OFFSET,
                kafka_bootstrap_servers=own_broker.servers,
                database_url=url,
            )

        val_platform = platform(val_db, "validator")
        async with (
            running(orch, platform(orch_db, "orchestration"), orch_settings, key),
            running(val, val_platform, val_settings, key) as (http, _),
        ):

            async def listed(expected: int) -> list[int] | None:
                r = await http.get(
                    "/api/v1/signals", params={"symbol": symbol, "limit": 100}, headers=bearer(key, val_platform)
                )
                bars = sorted(row["bar_open_ns"] for row in r.json())
                return bars if len(bars) >= expected else None

            async with Producer(own_broker.servers) as producer:
                for i in BEFORE:
                    await producer.send(bar(symbol, i), vector(symbol, i))
                await eventually(lambda: listed(len(BEFORE)), timeout_s=30)

            await asyncio.to_thread(own_broker.restart)
            await ensure_topics(own_broker.servers)  # what the supervisor does after starting a broker

            async with Producer(own_broker.servers) as producer:  # at once: the consumers may not be back yet
                for i in AFTER:
                    await producer.send(bar(symbol, i), vector(symbol, i))
            expected = [bar(symbol, i).ts_event for i in (*BEFORE, *AFTER)]
            try:
                verdicts = await eventually(lambda: listed(len(expected)), timeout_s=60)
            except AssertionError:
                verdicts = await listed(0)
            missing = [expected.index(t) for t in expected if t not in (verdicts or [])]
            assert verdicts == expected, f"no verdict for bars {missing}"
