"""The service template: the kit opens a declared service's dependencies in order, holds it to its
contract, hands its typed state to routes, supervises its tasks and closes everything in reverse."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter
from pydantic import SecretStr

from shared.events import MarketBar, MarketTick
from shared.kit.app import Notice
from shared.kit.contract import Consumes, Contract, ContractError, ContractUse
from shared.kit.deps import Dependency, Resource
from shared.kit.service import Runtime, ServiceDefinition, state_of
from shared.settings import PlatformSettings, ServiceSettings

#: A port-matrix entry that is not built yet: the kit only needs its name, port and prefix.
NAME = "performance-analytics"


class Settings(ServiceSettings):
    answer: int = 42
    secret: SecretStr = SecretStr("s3cr3t")


@dataclass
class State:
    settings: Settings
    log: list[str] = field(default_factory=list)


StateDep = Annotated[State, state_of(State)]
router = APIRouter()


@router.get("/answer")
async def answer(state: StateDep) -> dict[str, int]:
    return {"answer": state.settings.answer}


class Recorded(Resource):
    def __init__(self, name: str, log: list[str], healthy: bool = True) -> None:
        self.readiness = name
        self._name, self._log, self._healthy = name, log, healthy

    async def check(self) -> str | None:
        return None if self._healthy else f"{self._name} is down"

    async def start(self) -> None:
        self._log.append(f"start {self._name}")

    async def close(self) -> None:
        self._log.append(f"close {self._name}")


@dataclass(frozen=True)
class Fake(Dependency):
    """A dependency that records its life in a shared list."""

    name: str
    log: list[str] = field(hash=False, compare=False)
    healthy: bool = True

    async def open(self, rt: Runtime[Any, Any]) -> Resource:
        self.log.append(f"open {self.name}")
        return Recorded(self.name, self.log, self.healthy)


@dataclass(frozen=True)
class Other(Fake):
    pass


def definition(log: list[str], start=None, **overrides) -> ServiceDefinition[Settings, State]:
    async def default_start(rt: Runtime[Settings, State]) -> State:
        log.append("service start")

        async def hook() -> None:
            log.append("stop hook")

        rt.on_stop(hook)
        return State(rt.settings, log)

    options = {"uses": (Fake("first", log), Other("second", log)), "routers": (router,), "contract": Contract()}
    return ServiceDefinition(NAME, settings=Settings, start=start or default_start, **{**options, **overrides})


async def run(app, *paths: str) -> list[httpx.Response]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            return [await client.get(p) for p in paths]


async def test_dependencies_open_in_order_start_after_wiring_and_close_in_reverse(tmp_path):
    log: list[str] = []
    app = definition(log).create_app(platform=PlatformSettings(hats_var_dir=tmp_path))
    ready, answered = await run(app, "/readyz", "/answer")
    assert log == [
        "open first",
        "open second",
        "service start",
        "start first",
        "start second",
        "stop hook",
        "close second",
        "close first",
    ]
    assert ready.json()["checks"] == {"first": {"ok": True}, "second": {"ok": True}}
    assert answered.json() == {"answer": 42}


async def test_each_dependency_has_its_own_readiness_verdict(tmp_path):
    log: list[str] = []
    uses = (Fake("first", log), Other("second", log, healthy=False))
    (ready,) = await run(
        definition(log, uses=uses).create_app(platform=PlatformSettings(hats_var_dir=tmp_path)), "/readyz"
    )
    assert ready.status_code == 503
    assert ready.json()["checks"]["second"] == {"ok": False, "detail": "second is down"}


async def test_settings_come_from_the_entrys_prefix_and_are_logged_with_secrets_masked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PERFORMANCE_ANALYTICS_ANSWER", "7")
    monkeypatch.setenv("ANSWER", "99")  # an unprefixed variable is nobody's setting
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:hunter2@db/x")
    log: list[str] = []
    app = definition(log).create_app(platform=PlatformSettings(hats_var_dir=tmp_path))
    (answered,) = await run(app, "/answer")
    assert answered.json() == {"answer": 7}
    # The kit's JSON log lines, on stderr:
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    started = next(e for e in lines if e["logger"] == NAME and e["msg"].startswith("starting"))
    assert started["settings"] == {"answer": 7, "secret": "**********"}
    assert started["platform_settings"]["database_url"] == "**********"
    assert "hunter2" not in json.dumps(started) and "s3cr3t" not in json.dumps(started)
    assert Settings().answer == 42  # built outside the kit: defaults, not the environment


async def test_a_dead_background_task_turns_readiness_red(tmp_path):
    log: list[str] = []

    async def start(rt: Runtime[Settings, State]) -> State:
        async def crashes() -> None:
            raise ValueError("boom")

        async def runs() -> None:
            await asyncio.Event().wait()

        rt.background("crashes", crashes)
        rt.background("runs", runs)
        return State(rt.settings)

    app = definition(log, start=start).create_app(platform=PlatformSettings(hats_var_dir=tmp_path))
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.05)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            ready = (await client.get("/readyz")).json()
    assert ready["status"] == "not_ready"
    # The error is in the log (it died there); /readyz is unauthenticated and only says which task.
    assert ready["checks"]["tasks"] == {"ok": False, "detail": "crashes: failed"}


async def test_a_restartable_background_task_is_red_while_down_and_runs_again(tmp_path):
    runs: list[int] = []
    running_again = asyncio.Event()

    async def start(rt: Runtime[Settings, State]) -> State:
        async def fails_once() -> None:
            runs.append(len(runs))
            if len(runs) == 1:
                raise ValueError("boom")
            running_again.set()
            await asyncio.Event().wait()

        rt.background("worker", fails_once, restart_after_s=0.3)
        return State(rt.settings)

    app = definition([], start=start).create_app(platform=PlatformSettings(hats_var_dir=tmp_path))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            await asyncio.sleep(0.05)
            down = (await client.get("/readyz")).json()["checks"]["tasks"]
            await asyncio.wait_for(running_again.wait(), 5)
            up = (await client.get("/readyz")).json()["checks"]["tasks"]
    assert down == {"ok": False, "detail": "worker: ValueError: boom (restarting)"}
    assert up == {"ok": True} and runs == [0, 1]


async def test_a_notice_is_shown_without_making_the_service_unready(tmp_path):
    async def start(rt: Runtime[Settings, State]) -> State:
        async def remark() -> str | None:
            return Notice("3 records set aside for an operator")

        rt.add_check("aside", remark)
        return State(rt.settings)

    app = definition([], start=start).create_app(platform=PlatformSettings(hats_var_dir=tmp_path))
    [ready] = await run(app, "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.json()["checks"]["aside"] == {"ok": True, "detail": "3 records set aside for an operator"}


async def test_a_dependency_that_is_not_declared_cannot_be_reached(tmp_path):
    async def start(rt: Runtime[Settings, State]) -> State:
        rt.postgres  # noqa: B018 - the access is the test
        return State(rt.settings)

    with pytest.raises(ContractError, match="does not declare"):
        await run(definition([], start=start).create_app(platform=PlatformSettings(hats_var_dir=tmp_path)), "/readyz")


async def test_a_declared_call_never_made_fails_the_start_and_an_undeclared_one_is_refused(tmp_path):
    platform = PlatformSettings(hats_var_dir=tmp_path)
    stale = definition([], contract=Contract(calls=("user-service",)))
    with pytest.raises(ContractError, match="calls user-service"):
        await run(stale.create_app(platform=platform), "/readyz")

    async def start(rt: Runtime[Settings, State]) -> State:
        rt.url_of("user-service")
        return State(rt.settings)

    with pytest.raises(ContractError, match=r"add it to CONTRACT\.calls"):
        await run(definition([], start=start).create_app(platform=platform), "/readyz")


def test_the_contract_refuses_what_it_does_not_declare():
    use = ContractUse(NAME, Contract(produces=(MarketBar,), consumes=(Consumes(MarketTick, group="g"),)))
    use.publish(MarketBar)
    with pytest.raises(ContractError, match=r"add it to CONTRACT\.produces"):
        use.publish(MarketTick)
    with pytest.raises(ContractError, match=r"Consumes\(MarketTick, group='other'\)"):
        use.subscribe(MarketTick, "other")
    assert use.unused() == ["consumes MarketTick as group 'g'"]
    use.subscribe(MarketTick, "g")
    use.verify()


def test_a_contract_names_each_thing_once_and_only_services_of_the_matrix():
    with pytest.raises(ContractError, match="twice"):
        Contract(produces=(MarketBar, MarketBar))
    with pytest.raises(ContractError, match="port matrix"):
        Contract(calls=("nowhere",))


def test_a_definition_names_a_matrix_service_and_orders_its_dependencies():
    from shared.kit.deps import Bus, TokenAuth

    with pytest.raises(KeyError):
        ServiceDefinition("nowhere", settings=Settings, contract=Contract(), start=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="TokenAuth needs Bus before it"):
        ServiceDefinition(NAME, settings=Settings, contract=Contract(), start=None, uses=(TokenAuth(), Bus()))  # type: ignore[arg-type]
    merged = ServiceDefinition(NAME, settings=Settings, contract=Contract(), start=None, uses=(Bus(), TokenAuth()))  # type: ignore[arg-type]
    assert merged.effective_contract.calls == ("api-gateway",)
    assert [c.event.__name__ for c in merged.effective_contract.consumes] == ["TokenRevoked", "ClientTokensRevoked"]
