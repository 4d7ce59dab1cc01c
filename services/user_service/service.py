"""user-service (8009): owner of tenants, users, role assignments and OAuth2 clients."""

from __future__ import annotations

from services.user_service import internal, routes
from services.user_service.bootstrap import bootstrap
from services.user_service.outbox import Outbox
from services.user_service.repository import Store
from services.user_service.secrets import SecretHasher
from services.user_service.service_clients import declared_identities, provision_service_clients
from services.user_service.settings import UserServiceSettings
from services.user_service.state import Services
from shared.events import ClientTokensRevoked, DirectoryChanged
from shared.kit.contract import Contract
from shared.kit.deps import Bus, Postgres, TokenAuth
from shared.kit.service import Runtime, ServiceDefinition

CONTRACT = Contract(produces=(DirectoryChanged, ClientTokensRevoked))


async def start(rt: Runtime[UserServiceSettings, Services]) -> Services:
    settings = rt.settings
    store = Store(rt.postgres)
    hasher = SecretHasher(settings.hash_concurrency, remember_s=settings.verified_secret_ttl_s)
    await hasher.warm_up()
    started = await bootstrap(
        store,
        hasher,
        var_dir=rt.platform.hats_var_dir,
        token_url=rt.platform.token_issuer + "/oauth2/token",
        override=settings.admin_override(),
        token_lifetime_s=settings.token_lifetime_s,
    )
    # The services' own clients, on every start: created, re-keyed if their file was lost, re-scoped.
    accounts = await provision_service_clients(
        store,
        hasher,
        declared_identities(),
        var_dir=rt.platform.hats_var_dir,
        token_url=rt.platform.token_issuer + "/oauth2/token",
        token_lifetime_s=settings.token_lifetime_s,
    )
    publishers = {event.TOPIC: rt.bus.publisher(event) for event in (DirectoryChanged, ClientTokensRevoked)}
    outbox = Outbox(store, publishers, grace_s=settings.outbox_grace_s)

    async def publish_bootstrap_changes() -> None:
        await outbox.deliver([*started.events, *accounts.events])
        await outbox.announce_recent_revocations(settings.token_lifetime_s)

    async def sweep_outbox() -> None:
        await outbox.run(settings.outbox_sweep_interval_s)

    rt.after_start(publish_bootstrap_changes)
    rt.background("outbox-sweep", sweep_outbox)
    return Services(store, hasher, outbox, settings)


SERVICE = ServiceDefinition(
    "user-service",
    settings=UserServiceSettings,
    contract=CONTRACT,
    uses=(Postgres(), Bus(), TokenAuth()),
    routers=(routes.router, internal.router),
    start=start,
)
