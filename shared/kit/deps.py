"""What a service can ask the kit to open for it: each a declaration in ``ServiceDefinition.uses``.

The kit opens them in the declared order before the service's ``start`` runs,
reports each in ``/readyz`` under its own name, starts them once the service has
wired its handlers (the bus begins consuming), and closes them in reverse order.
A dependency may imply declarations (``TokenAuth`` reads revocations and calls the
gateway's JWKS): they join the service's contract and show in the generated docs.

=================  ============================  ==============================================
declaration        reached as                    readiness
=================  ============================  ==============================================
Postgres()         ``rt.postgres`` (a pool)      ``postgres``; applies the service's migrations
ClickHouse()       ``rt.clickhouse``             ``clickhouse``; applies the service's migrations
Bus()              ``rt.bus`` (ServiceBus)       ``kafka``
TokenAuth()        ``require(...)`` on routes    ``revocations`` (the gateway's list read once)
HttpClient()       ``rt.http`` + ``rt.url_of``    —
ServiceIdentity()  ``rt.http`` sends its token   ``identity`` (credentials found, token held)
=================  ============================  ==============================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from shared.events import ClientTokensRevoked, TokenRevoked
from shared.kit.contract import Consumes, Contract
from shared.settings import PoolSettings

if TYPE_CHECKING:
    import asyncpg

    from shared.auth.tokens import TokenVerifier
    from shared.clickhouse import ClickHouse as ClickHouseClient
    from shared.kit.bus import ServiceBus
    from shared.kit.service import Runtime, ServiceDefinition


class Resource:
    """What an opened dependency is while the service runs."""

    #: Name of its ``/readyz`` entry, or ``None`` for no check.
    readiness: str | None = None

    async def check(self) -> str | None:
        """``None`` when usable, else what is wrong (only called if ``readiness`` is set)."""
        return None

    async def start(self) -> None:
        """Called once the service's ``start`` has wired its handlers."""

    async def close(self) -> None:
        """Called at shutdown, after the service's stop hooks, in reverse order of opening."""


class Dependency:
    """A declaration in ``ServiceDefinition.uses``; ``open`` makes the live resource."""

    #: Declarations this dependency adds to the service's contract.
    contract: Contract = Contract()
    #: Dependencies that must be declared before this one.
    requires: tuple[type[Dependency], ...] = ()

    async def open(self, rt: Runtime[Any, Any]) -> Resource:
        raise NotImplementedError

    def check_definition(self, definition: ServiceDefinition[Any, Any]) -> None:
        """Raise ``ValueError`` if ``definition`` cannot use this dependency (checked when it is declared)."""


# --- PostgreSQL -----------------------------------------------------------------------------


class PostgresPool(Resource):
    readiness = "postgres"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def check(self) -> str | None:
        await self.pool.fetchval("SELECT 1")
        return None

    async def close(self) -> None:
        await self.pool.close()


@dataclass(frozen=True)
class Postgres(Dependency):
    """A pool on ``DATABASE_URL`` (or the embedded server), after applying the service's
    ``migrations/postgres/*.sql``. A service whose settings are ``PoolSettings`` sizes its
    pool from them (``<PREFIX>POOL_MIN_SIZE`` / ``POOL_MAX_SIZE``) instead of these defaults.
    ``shared_migrations``: sets of tables several services share, applied first
    (``shared.kit.migrations``), e.g. ``(shared.ml.REGISTRY_MIGRATIONS,)``."""

    min_size: int = 1
    max_size: int = 4
    shared_migrations: tuple[tuple[str, Path], ...] = ()

    async def open(self, rt: Runtime[Any, Any]) -> Resource:
        import asyncpg

        from infra.postgres import database_url
        from shared.kit.migrations import migrate_postgres

        url = database_url(rt.platform)
        applied = await migrate_postgres(url, rt.name, rt.definition.migrations_dir("postgres"), self.shared_migrations)
        if applied:
            rt.log.info("applied PostgreSQL migrations: %s", ", ".join(applied))
        min_size, max_size = self.min_size, self.max_size
        if isinstance(rt.settings, PoolSettings):
            min_size, max_size = rt.settings.pool_min_size, rt.settings.pool_max_size
        return PostgresPool(await asyncpg.create_pool(url, min_size=min_size, max_size=max_size))


# --- ClickHouse -----------------------------------------------------------------------------


class ClickHouseStore(Resource):
    readiness = "clickhouse"

    def __init__(self, client: ClickHouseClient) -> None:
        self.client = client

    async def check(self) -> str | None:
        await self.client.rows("SELECT 1")
        return None

    async def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class ClickHouse(Dependency):
    """``CLICKHOUSE_URL`` through clickhouse-driver, or chdb in this process (data under
    ``var/clickhouse``), after applying the service's ``migrations/clickhouse/*.sql``.

    ``own_embedded_dir``: embedded, keep the data under ``var/<service>/clickhouse`` instead. chdb
    locks its directory to one process, and database-service holds ``var/clickhouse`` under
    ``hats up``; a second service with tables of its own needs its own directory (with
    ``CLICKHOUSE_URL`` every service uses the server)."""

    own_embedded_dir: bool = False

    async def open(self, rt: Runtime[Any, Any]) -> Resource:
        from shared.clickhouse import open_clickhouse
        from shared.kit.migrations import migrate_clickhouse

        url = rt.platform.clickhouse_url
        var = rt.platform.hats_var_dir / rt.name if self.own_embedded_dir else rt.platform.hats_var_dir
        client = open_clickhouse(url.get_secret_value() if url else None, var)
        try:
            applied = await migrate_clickhouse(client, rt.name, rt.definition.migrations_dir("clickhouse"))
        except BaseException:
            client.close()
            raise
        if applied:
            rt.log.info("applied ClickHouse migrations: %s", ", ".join(applied))
        return ClickHouseStore(client)


# --- the event bus --------------------------------------------------------------------------


class BusConnection(Resource):
    readiness = "kafka"

    def __init__(self, bus: ServiceBus) -> None:
        self.bus = bus

    async def check(self) -> str | None:
        return None if await self.bus.ping(timeout_s=1.5) else "broker does not answer"

    async def start(self) -> None:
        await self.bus.start()

    async def close(self) -> None:
        await self.bus.stop()  # drains running handlers, commits offsets


@dataclass(frozen=True)
class Bus(Dependency):
    """The service's ``ServiceBus`` on ``KAFKA_BOOTSTRAP_SERVERS`` (or the embedded broker); it
    starts consuming after the service's ``start`` has added its subscribers."""

    async def open(self, rt: Runtime[Any, Any]) -> Resource:
        from shared.kit.bus import ServiceBus

        platform = rt.platform
        bus = ServiceBus.connect(
            rt.use, platform.kafka_servers, rt.registry, publish_timeout_s=platform.kafka_publish_timeout_s
        )
        return BusConnection(bus)


# --- token verification ---------------------------------------------------------------------


class TokenVerification(Resource):
    def __init__(self, verifier: TokenVerifier, http: httpx.AsyncClient | None) -> None:
        self.verifier = verifier
        self._http = http
        if http is not None:
            # Only a verifier that loads the gateway's revocation list can be not ready for it.
            self.readiness = "revocations"

    async def check(self) -> str | None:
        revoked = self.verifier.revoked
        return None if revoked is None or revoked.complete else "the gateway's revocation list is not loaded yet"

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()


@dataclass(frozen=True)
class TokenAuth(Dependency):
    """Verify the gateway's access tokens on this service's routes (``require(...)``): keys from
    the gateway's JWKS, revocations from ``auth.revocations.v1`` and ``auth.client-revocations.v1``
    (every instance reads them all) and from the gateway's durable revocation list (at start and
    every minute, so a broker that restarted empty forgets nothing)."""

    contract = Contract(
        consumes=(
            Consumes(TokenRevoked, group=None, purpose="refuse revoked tokens at once (every instance)"),
            Consumes(ClientTokensRevoked, group=None, purpose="refuse a revoked client's tokens at once"),
        ),
        calls=("api-gateway",),
    )
    requires = (Bus,)

    async def open(self, rt: Runtime[Any, Any]) -> Resource:
        from shared.auth.fastapi import install_auth
        from shared.auth.feed import REVOCATION_LIST_PATH, RevocationListLoader, register_revocation_feed
        from shared.auth.service import platform_verifier

        gateway = rt.url_of("api-gateway")
        http = None
        verifier = rt.overrides.token_verifier
        if verifier is None:
            http = httpx.AsyncClient(timeout=5.0)
            verifier = platform_verifier(rt.platform, gateway + "/.well-known/jwks.json", http)
        if verifier.revoked is None:
            raise ValueError("a service's token verifier must honour revocations (give it a RevokedTokens)")
        register_revocation_feed(rt.bus, verifier.revoked)
        if http is not None:
            loader = RevocationListLoader(gateway + REVOCATION_LIST_PATH, http, verifier.revoked)
            rt.background("revocation-list", loader.run)
        install_auth(rt.app, verifier)
        return TokenVerification(verifier, http)


# --- HTTP to other services -----------------------------------------------------------------


class HttpClientResource(Resource):
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def close(self) -> None:
        await self.client.aclose()


@dataclass(frozen=True)
class HttpClient(Dependency):
    """One pooled ``httpx.AsyncClient`` for calls to the services in the contract's ``calls``
    (``rt.url_of(name)`` gives their base URL). ``options`` builds the client's keyword arguments
    from the service's settings (timeouts, limits)."""

    options: Callable[[Any], dict[str, Any]] | None = None

    async def open(self, rt: Runtime[Any, Any]) -> Resource:
        kwargs = self.options(rt.settings) if self.options is not None else {"timeout": 10.0}
        return HttpClientResource(httpx.AsyncClient(**kwargs))


@dataclass(frozen=True)
class ServiceIdentity(Dependency):
    """The service's own OAuth2 client ("service account"), holding only ``scopes``: every request
    ``rt.http`` sends to a service of the contract's ``calls`` carries its access token.

    user-service provisions the client (tenant ``platform``, grant ``client_credentials``) from the
    service's port-matrix row, whose ``identity`` must list the same scopes. The credentials are
    ``<PREFIX>CLIENT_ID`` / ``<PREFIX>CLIENT_SECRET`` (the settings must be ``IdentitySettings``), else
    the file user-service writes (``<HATS_VAR_DIR>/service-credentials/<service>.json``): until it
    exists ``/readyz`` says so under ``identity`` and the file is looked for again every half second,
    so start-up converges in any order. The token comes from the gateway's ``/oauth2/token``, is
    renewed before it expires and replaced once on a 401 (``shared.auth.client.ClientIdentity``).
    """

    scopes: tuple[str, ...] = ()
    contract = Contract(calls=("api-gateway",))
    requires = (HttpClient,)

    def __post_init__(self) -> None:
        from shared.auth.scopes import CLIENT_SCOPES

        if not self.scopes or len(set(self.scopes)) != len(self.scopes):
            raise ValueError("ServiceIdentity needs its scopes, each once")
        if unknown := set(self.scopes) - CLIENT_SCOPES:
            raise ValueError(f"ServiceIdentity: not a client scope: {', '.join(sorted(unknown))}")

    def check_definition(self, definition: ServiceDefinition[Any, Any]) -> None:
        from shared.settings import IdentitySettings

        entry = definition.entry
        if not issubclass(definition.settings, IdentitySettings):
            raise ValueError(f"{entry.name}: a ServiceIdentity needs settings that are IdentitySettings")
        # user-service provisions what the row says: a declaration that differs would get other scopes.
        if entry.implemented and sorted(self.scopes) != sorted(entry.identity):
            raise ValueError(
                f"{entry.name}: ServiceIdentity scopes {sorted(self.scopes)} differ from its row's identity "
                f"{sorted(entry.identity)} in shared/ports.py; user-service provisions the row's"
            )

    async def open(self, rt: Runtime[Any, Any]) -> Resource:
        from shared.kit.identity import open_service_account

        return open_service_account(rt, rt.http)


__all__ = [
    "Bus",
    "ClickHouse",
    "Dependency",
    "HttpClient",
    "Postgres",
    "Resource",
    "ServiceIdentity",
    "TokenAuth",
]
