"""A service is a declaration; the kit runs it.

Each service package has a ``service.py`` declaring it; its port-matrix entry points there::

    SERVICE = ServiceDefinition(
        "data-bridge",                       # the port-matrix entry: port, env prefix, job
        settings=DataBridgeSettings,         # read from DATA_BRIDGE_* (prefix from the entry)
        contract=CONTRACT,                   # produces / consumes (event, group) / calls
        uses=(Postgres(), Bus(), TokenAuth()),
        routers=(ingest.router,),
        start=start,                         # async (rt: Runtime) -> the service's typed state
    )

The kit then owns the lifecycle (``Runtime.lifespan``):

1. logging and tracing; the effective settings are logged, secrets masked;
2. every dependency of ``uses`` is opened in order (migrations applied, pools opened,
   the bus connected but not consuming), each with its own ``/readyz`` entry;
3. ``start(rt)`` wires the service: builds its state, adds subscribers and publishers
   (held to the contract), registers background tasks and hooks;
4. the contract is verified (nothing declared goes unused); dependencies start (the
   bus begins consuming); ``after_start`` hooks run; background tasks are started;
5. at shutdown: background tasks are cancelled, ``on_stop`` hooks run (newest first),
   dependencies close in reverse order.

Handlers and routes reach the state through a FastAPI dependency
(``Annotated[MyState, state_of(MyState)]``), never through ``app.state``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from fastapi import APIRouter, Depends, Request
from pydantic_settings import BaseSettings
from starlette.types import Scope

from shared import ports
from shared.kit.app import Kit, ServiceApp, build_app
from shared.kit.contract import Contract, ContractError, ContractUse
from shared.kit.deps import (
    BusConnection,
    ClickHouseStore,
    Dependency,
    HttpClientResource,
    PostgresPool,
    Resource,
    ServiceIdentity,
    TokenVerification,
)
from shared.settings import PlatformSettings

if TYPE_CHECKING:
    import asyncpg
    import httpx

    from shared.auth.tokens import TokenVerifier
    from shared.clickhouse import ClickHouse
    from shared.kit.bus import ServiceBus
    from shared.kit.identity import ServiceAccount

S = TypeVar("S", bound=BaseSettings)
T = TypeVar("T")
R = TypeVar("R", bound=Resource)

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Overrides:
    """What a test may put in place of the real thing."""

    #: Verify tokens with this instead of the gateway's JWKS (it must carry a ``RevokedTokens``).
    token_verifier: TokenVerifier | None = None
    #: The wall clock (Unix seconds) a service that takes one reads instead of ``time.time``: a
    #: host whose clock is off (the data-collector's 70 s skew test), without touching the host's.
    wall_clock: Callable[[], float] | None = None


@dataclass(frozen=True)
class ServiceDefinition(Generic[S, T]):
    """Everything the kit needs to run a service of the port matrix (see the module docstring)."""

    name: str
    settings: type[S]
    contract: Contract
    start: Callable[[Runtime[S, T]], Awaitable[T]]
    uses: Sequence[Dependency] = ()
    routers: Sequence[APIRouter] = ()
    #: App-level wiring done once when the app is built (middleware, extra routes): the gateway's proxy.
    configure: Callable[[ServiceApp, Runtime[S, T]], None] | None = None

    def __post_init__(self) -> None:
        entry = ports.service(self.name)  # KeyError: not in the matrix
        if entry.group in (ports.Group.INFRA, ports.Group.RESERVED):
            raise ValueError(f"{self.name} is infrastructure, not a service")
        seen: list[type[Dependency]] = []
        for dependency in self.uses:
            for needed in dependency.requires:
                if needed not in seen:
                    raise ValueError(f"{self.name}: {type(dependency).__name__} needs {needed.__name__} before it")
            if type(dependency) in seen:
                raise ValueError(f"{self.name}: {type(dependency).__name__} is declared twice")
            seen.append(type(dependency))
            dependency.check_definition(self)
        if self.entry.implemented and self.entry.identity and ServiceIdentity not in seen:
            raise ValueError(
                f"{self.name}: its row in shared/ports.py gives it an identity; declare ServiceIdentity(scopes=...)"
            )

    @property
    def entry(self) -> ports.Service:
        """The port-matrix row: port, group, job, and the settings' environment prefix."""
        return ports.service(self.name)

    @property
    def effective_contract(self) -> Contract:
        """The service's own declarations plus those its dependencies imply (e.g. ``TokenAuth``)."""
        contract = self.contract
        for dependency in self.uses:
            contract = contract | dependency.contract
        return contract

    def migrations_dir(self, store: str) -> Path:
        """Where this service keeps its migrations for ``store`` (``postgres``, ``clickhouse``):
        ``migrations/<store>/`` in its package, next to its declaration."""
        module = (self.entry.module or "").partition(":")[0]
        return Path(cast(str, importlib.import_module(module).__file__)).parent / "migrations" / store

    def load_settings(self) -> S:
        """The service's settings from the environment, under the entry's prefix (``DATA_BRIDGE_...``)."""
        loader = cast(Any, self.settings)
        return cast(S, loader(_env_prefix=self.entry.env_prefix))

    def create_app(
        self,
        *,
        platform: PlatformSettings | None = None,
        settings: S | None = None,
        overrides: Overrides | None = None,
    ) -> ServiceApp:
        """The service's ASGI app; settings default to the environment (tests pass their own)."""
        platform = platform or PlatformSettings()
        runtime = Runtime(self, platform, settings if settings is not None else self.load_settings(), overrides)
        app = build_app(self.name, lifespan=runtime.lifespan, routers=self.routers, settings=platform, kit=runtime.kit)
        app.runtime = runtime
        runtime.app = app
        for path, endpoint, summary in (
            (
                "/contract",
                runtime.contract_report,
                "What this service produces, consumes and calls",
            ),
            (
                "/asyncapi.json",
                runtime.asyncapi,
                "Its contract as an AsyncAPI 3.0 document",
            ),
        ):
            operation = path.strip("/").partition(".")[0]
            app.add_api_route(path, endpoint, methods=["GET"], tags=["ops"], operation_id=operation, summary=summary)
        if self.configure is not None:
            self.configure(app, runtime)
        return app


class Runtime(Generic[S, T]):
    """One running instance of a declared service: what ``start`` receives, and what holds its state."""

    app: ServiceApp

    def __init__(
        self,
        definition: ServiceDefinition[S, T],
        platform: PlatformSettings,
        settings: S,
        overrides: Overrides | None = None,
    ) -> None:
        self.definition = definition
        self.entry = definition.entry
        self.platform = platform
        self.settings = settings
        self.overrides = overrides or Overrides()
        self.kit = Kit(service=self.entry, settings=platform)
        self.use = ContractUse(self.entry.name, definition.effective_contract)
        self.log = logging.getLogger(definition.name)
        self._resources: dict[type[Dependency], Resource] = {}
        self._state: T | None = None
        self._after_start: list[Hook] = []
        self._on_stop: list[Hook] = []
        self._background: list[tuple[str, Hook, float | None]] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: Restartable background tasks that failed and wait to run again: name -> what failed.
        self._restarting: dict[str, str] = {}
        self._asyncapi: dict[str, Any] | None = None

    # -- what the service is -----------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def registry(self) -> Any:
        """The service's Prometheus registry (``/metrics``)."""
        return self.kit.registry

    @property
    def state(self) -> T:
        """What ``start`` built; routes reach it through ``state_of``."""
        if self._state is None:
            raise RuntimeError(f"{self.name} has not started")
        return self._state

    @property
    def started(self) -> bool:
        return self._state is not None

    # -- dependencies (each must be declared in ``uses``) -------------------------------------

    def _resource(self, kind: type[R]) -> R:
        for resource in self._resources.values():
            if isinstance(resource, kind):
                return resource
        raise ContractError(f"{self.name} does not declare the dependency that provides {kind.__name__} in `uses`")

    @property
    def postgres(self) -> asyncpg.Pool:
        return self._resource(PostgresPool).pool

    @property
    def clickhouse(self) -> ClickHouse:
        return self._resource(ClickHouseStore).client

    @property
    def bus(self) -> ServiceBus:
        return self._resource(BusConnection).bus

    @property
    def http(self) -> httpx.AsyncClient:
        return self._resource(HttpClientResource).client

    @property
    def verifier(self) -> TokenVerifier:
        return self._resource(TokenVerification).verifier

    @property
    def identity(self) -> ServiceAccount:
        """The service's own OAuth2 client (``ServiceIdentity``): ``await rt.identity.ready()`` waits for a token."""
        from shared.kit.identity import ServiceAccount

        return self._resource(ServiceAccount)

    def url_of(self, service: str, *, override: str | None = None) -> str:
        """Base URL of another service (``override`` if configured); the contract must declare the call.
        With a ``ServiceIdentity``, requests to it carry the service's token (an override's too)."""
        self.use.call(service)
        if override is not None:
            from shared.kit.identity import ServiceAccount

            for resource in self._resources.values():
                if isinstance(resource, ServiceAccount):
                    resource.targets.allow(override)
        return override or self.platform.url_of(service)

    # -- what the service registers during ``start`` ----------------------------------------

    def add_check(self, name: str, check: Callable[[], Awaitable[str | None]]) -> None:
        """Another ``/readyz`` entry (a dependency the kit does not open, e.g. the MT5 terminal).

        ``check`` returns None (ready), a problem (not ready) or a ``Notice`` (ready, with a remark).
        """
        self.kit.add_check(name, check)

    def background(self, name: str, run: Hook, *, restart_after_s: float | None = None) -> None:
        """Run ``run()`` while the service serves (started after the bus, cancelled first at stop).

        If it ends or fails, ``/readyz`` says so under ``tasks`` and the error is logged. With
        ``restart_after_s``, a failed (or ended) ``run`` is started again after that pause;
        ``/readyz`` is red from the failure until it runs again.
        """
        if any(n == name for n, _, _ in self._background):
            raise ValueError(f"background task {name!r} is already registered")
        self._background.append((name, run, restart_after_s))

    def after_start(self, hook: Hook) -> None:
        """Await ``hook()`` once everything has started (e.g. publish what start-up recorded)."""
        self._after_start.append(hook)

    def on_stop(self, hook: Hook) -> None:
        """Await ``hook()`` at shutdown, before the dependencies close (hooks run newest first)."""
        self._on_stop.append(hook)

    # -- the lifecycle --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, kit: Kit) -> AsyncIterator[None]:
        self._log_settings()
        async with contextlib.AsyncExitStack() as stack:
            for dependency in self.definition.uses:
                resource = await dependency.open(self)
                self._resources[type(dependency)] = resource
                stack.push_async_callback(resource.close)
                if resource.readiness is not None:
                    kit.add_check(resource.readiness, resource.check)
            self._state = await self.definition.start(self)
            self.use.verify()
            stack.push_async_callback(self._run_stop_hooks)
            for resource in self._resources.values():
                await resource.start()
            for hook in self._after_start:
                await hook()
            if self._background:
                kit.add_check("tasks", self._tasks_ready)
                stack.push_async_callback(self._cancel_tasks)
                for name, run, restart_after_s in self._background:
                    supervised = self._supervised(name, run, restart_after_s)
                    self._tasks[name] = asyncio.create_task(supervised, name=name)
            yield

    async def _supervised(self, name: str, run: Hook, restart_after_s: float | None) -> None:
        while True:
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if restart_after_s is None:
                    self.log.exception("background task %s failed; it is not running any more", name)
                    raise
                self.log.exception("background task %s failed; restarting it in %.1fs", name, restart_after_s)
                self._restarting[name] = f"{type(exc).__name__}: {exc}"
            else:
                if restart_after_s is None:
                    self.log.error("background task %s returned; it is not running any more", name)
                    return
                self.log.error("background task %s returned; restarting it in %.1fs", name, restart_after_s)
                self._restarting[name] = "ended"
            await asyncio.sleep(restart_after_s)
            del self._restarting[name]

    async def _tasks_ready(self) -> str | None:
        dead = [f"{name}: {error} (restarting)" for name, error in self._restarting.items()]
        for name, task in self._tasks.items():
            if task.done():
                error = None if task.cancelled() else task.exception()
                # The error itself was logged when the task died (``_supervised``); /readyz is public.
                dead.append(f"{name}: failed" if error else f"{name}: ended")
        return "; ".join(dead) or None

    async def _cancel_tasks(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run_stop_hooks(self) -> None:
        for hook in reversed(self._on_stop):
            try:
                await hook()
            except Exception:  # the others and the dependencies must still close
                self.log.exception("stop hook %s failed", getattr(hook, "__qualname__", hook))

    def _log_settings(self) -> None:
        """The effective configuration, once at start: what an operator checks first (secrets masked)."""
        self.log.info(
            "starting %s on port %d",
            self.name,
            self.platform.port_of(self.name),
            extra={
                "platform_settings": self.platform.model_dump(mode="json"),
                "settings": self.settings.model_dump(mode="json"),
            },
        )

    async def contract_report(self) -> dict[str, object]:
        """``GET /contract``: what this service declares, and anything declared it has not used."""
        return self.use.report()

    async def asyncapi(self) -> dict[str, Any]:
        """``GET /asyncapi.json``: the service's contract as FastStream exports it (AsyncAPI 3.0)."""
        from shared.kit.asyncapi import asyncapi_document

        if self._asyncapi is None:
            self._asyncapi = asyncapi_document(self.definition, self.platform.kafka_servers)
        return self._asyncapi


def state_of(kind: type[T]) -> Any:
    """A FastAPI dependency giving the running service's state, checked to be a ``kind``::

    Bridge = Annotated[DataBridge, state_of(DataBridge)]

    @router.post("/ticks")
    async def ingest(bridge: Bridge) -> ...
    """

    def current_state(request: Request) -> T:
        state = state_in(request.scope, kind)
        if state is None:  # a wiring bug, not the caller's: a 500 and the log
            raise RuntimeError(f"this app has no running {kind.__name__} (not started, or another service's state)")
        return state

    return Depends(current_state)


def state_in(scope: Scope, kind: type[T]) -> T | None:
    """The running service's state from an ASGI scope (for ASGI code before FastAPI's routing), if a ``kind``."""
    runtime = getattr(scope.get("app"), "runtime", None)
    state = runtime.state if runtime is not None and runtime.started else None
    return state if isinstance(state, kind) else None


def load_definition(entry: ports.Service) -> ServiceDefinition[Any, Any]:
    """The declaration a port-matrix entry points at (``package.module:NAME``)."""
    if entry.module is None:
        raise LookupError(f"{entry.name} is in the port matrix but not implemented yet")
    module_name, _, attr = entry.module.partition(":")
    definition = getattr(importlib.import_module(module_name), attr)
    if not isinstance(definition, ServiceDefinition) or definition.name != entry.name:
        raise TypeError(f"{entry.module} is not the ServiceDefinition of {entry.name}")
    return definition


def implemented_definitions() -> list[ServiceDefinition[Any, Any]]:
    """Every built service's declaration, in port-matrix order."""
    return [load_definition(entry) for entry in ports.implemented_services()]


__all__ = [
    "Overrides",
    "Runtime",
    "ServiceDefinition",
    "implemented_definitions",
    "load_definition",
    "state_in",
    "state_of",
]
