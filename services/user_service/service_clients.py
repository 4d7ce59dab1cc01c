"""Service accounts: one OAuth2 client per service that calls others with its own authority.

The services that need one say so in their port-matrix row (``shared.ports.Service.identity``,
held equal to their ``ServiceIdentity`` declaration by the kit), so user-service finds them
without importing their code. On every start, under the bootstrap's lock and in one
transaction, each gets a client in the ``platform`` tenant with grant ``client_credentials``
only and exactly its declared scopes:

* no client yet: one is created. Its generated secret is written to
  ``<HATS_VAR_DIR>/service-credentials/<service>.json`` (mode 0600) and nowhere else;
* the file is missing, names another client, or holds a secret that no longer matches (an
  admin rotated it): the secret is rotated, the new one written, and the client's live tokens
  are revoked (``ClientTokensRevoked``): a lost file may have been copied;
* the operator chose the credentials (``<PREFIX>CLIENT_ID`` / ``<PREFIX>CLIENT_SECRET``, given to
  user-service too): the client has that id and secret, and no file is written (a stale one is
  removed); a different id replaces and disables the former client;
* the declared scopes changed: the client's are updated; a scope taken away revokes its tokens;
* a service no longer declares an identity: its client is disabled and its tokens revoked.

A file is written before the transaction commits (a failed write rolls the change back); if the
commit fails after it, the next start finds the file's secret does not match and rotates again.
Every change is a ``DirectoryChanged`` in the outbox, like the bootstrap's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from services.user_service.bootstrap import BootstrapError
from services.user_service.outbox import BOOTSTRAP_ACTOR, Changes
from services.user_service.repository import Directory, Store
from services.user_service.secrets import SecretHasher, new_client_id, new_secret
from shared import ports
from shared.auth.client import ClientCredentials, credentials_from_file, service_credentials_file
from shared.auth.scopes import PLATFORM_TENANT
from shared.events import Event
from shared.private_files import write_private
from shared.settings import IdentitySettings

log = logging.getLogger(__name__)

#: A service account's purpose in ``users.bootstrap_clients``: this prefix and the service's name.
PURPOSE_PREFIX = "service:"
GRANTS = ("client_credentials",)


@dataclass(frozen=True)
class DeclaredIdentity:
    """A service's identity as declared: its scopes, and its credentials if the operator chose them."""

    service: str
    scopes: tuple[str, ...]
    configured: ClientCredentials | None = None


def declared_identities(
    identities: Mapping[str, tuple[str, ...]] | None = None, *, read_environment: bool = True
) -> list[DeclaredIdentity]:
    """The identities of the port matrix (or ``identities``), each with the operator's credentials
    from ``<PREFIX>CLIENT_ID`` / ``<PREFIX>CLIENT_SECRET`` in this process's environment, if set."""
    declared = []
    for service, scopes in (ports.service_identities() if identities is None else identities).items():
        configured = None
        if read_environment:
            settings = IdentitySettings(_env_prefix=ports.service(service).env_prefix)  # type: ignore[call-arg]
            if settings.client_id is not None and settings.client_secret is not None:
                configured = ClientCredentials(settings.client_id, settings.client_secret.get_secret_value())
        declared.append(DeclaredIdentity(service, tuple(scopes), configured))
    return declared


@dataclass
class ProvisionResult:
    #: Services whose client was created, whose secret was rotated, whose scopes changed, retired.
    created: list[str] = field(default_factory=list)
    rotated: list[str] = field(default_factory=list)
    rescoped: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    #: Credentials files written.
    written: list[Path] = field(default_factory=list)
    #: Recorded in the outbox with the changes; to publish once the broker is up.
    events: list[Event] = field(default_factory=list)


async def provision_service_clients(
    store: Store,
    hasher: SecretHasher,
    identities: Iterable[DeclaredIdentity],
    *,
    var_dir: Path,
    token_url: str,
    token_lifetime_s: float = 960.0,
) -> ProvisionResult:
    """Make the service accounts what ``identities`` declare (see the module docstring)."""
    run = _Provisioning(hasher, var_dir, token_url, token_lifetime_s)
    declared = list(identities)
    async with store.transaction() as directory:
        await directory.lock_bootstrap()
        for identity in declared:
            await run.ensure(directory, identity)
        await run.retire_undeclared(directory, {i.service for i in declared})
        for path, document in run.files.items():
            write_private(path, orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
            run.result.written.append(path)
        await directory.record(run.events)
    for path in run.stale_files:
        path.unlink(missing_ok=True)
    run.result.events = run.events
    for what in ("created", "rotated", "rescoped", "retired"):
        if names := getattr(run.result, what):
            log.info("service accounts %s: %s", what, ", ".join(names))
    return run.result


class _Provisioning(Changes):
    def __init__(self, hasher: SecretHasher, var_dir: Path, token_url: str, token_lifetime_s: float) -> None:
        super().__init__(BOOTSTRAP_ACTOR, token_lifetime_s)
        self.hasher, self.var_dir, self.token_url = hasher, var_dir, token_url
        self.result = ProvisionResult()
        #: Files to write before the commit, and files to remove after it.
        self.files: dict[Path, dict[str, object]] = {}
        self.stale_files: list[Path] = []

    def _file(self, service: str) -> Path:
        return service_credentials_file(self.var_dir, service)

    async def ensure(self, directory: Directory, identity: DeclaredIdentity) -> None:
        purpose = PURPOSE_PREFIX + identity.service
        current = await directory.bootstrap_client(purpose)
        client = None if current is None else await directory.client(PLATFORM_TENANT, current)
        configured = identity.configured
        if client is None or (configured is not None and configured.client_id != current):
            await self._create(directory, identity, purpose, replacing=client)
            return
        client_id = client["client_id"]
        if sorted(client["scopes"]) != sorted(identity.scopes):
            await self._rescope(directory, identity, client_id, client["scopes"])
        if client["disabled"]:
            log.warning("the client of %s (%s) is disabled by an admin; it stays so", identity.service, client_id)
        stored = await directory.secret_hash(PLATFORM_TENANT, client_id)
        if configured is not None:
            self.stale_files.append(self._file(identity.service))
            if stored is None or not await self.hasher.verify(stored, configured.client_secret):
                await self._set_secret(directory, identity.service, client_id, configured.client_secret, "configured")
            return
        written = credentials_from_file(self._file(identity.service))
        if (
            written is None
            or written.client_id != client_id
            or stored is None
            or not await self.hasher.verify(stored, written.client_secret)
        ):
            secret = new_secret()
            await self._set_secret(directory, identity.service, client_id, secret, "credentials file missing or stale")
            self._write(identity.service, client_id, secret)

    async def _create(
        self, directory: Directory, identity: DeclaredIdentity, purpose: str, *, replacing: dict | None
    ) -> None:
        configured = identity.configured
        if configured is not None and await directory.client_tenant(configured.client_id) is not None:
            raise BootstrapError(
                f"{ports.service(identity.service).env_prefix}CLIENT_ID {configured.client_id} names an existing "
                "client that is not this service's; choose another id"
            )
        client_id = configured.client_id if configured is not None else new_client_id()
        secret = configured.client_secret if configured is not None else new_secret()
        name = f"service {identity.service}"
        client = await directory.insert_client(
            PLATFORM_TENANT,
            client_id,
            name,
            await self.hasher.hash(secret),
            identity.scopes,
            GRANTS,
            created_by=BOOTSTRAP_ACTOR,
        )
        await directory.set_bootstrap_client(purpose, client_id)
        self.emit(
            PLATFORM_TENANT,
            "client",
            client_id,
            "created",
            name=name,
            scopes=client["scopes"],
            grant_types=client["grant_types"],
            purpose=purpose,
        )
        self.result.created.append(identity.service)
        if configured is None:
            self._write(identity.service, client_id, secret)
        else:
            self.stale_files.append(self._file(identity.service))
        if replacing is not None:
            await self._disable(directory, replacing["client_id"], f"replaced by {client_id}")

    async def _rescope(self, directory: Directory, identity: DeclaredIdentity, client_id: str, held: list[str]) -> None:
        await directory.set_client_scopes(PLATFORM_TENANT, client_id, identity.scopes)
        removed = sorted(set(held) - set(identity.scopes))
        self.emit(PLATFORM_TENANT, "client", client_id, "scopes_changed", scopes=sorted(identity.scopes), previous=held)
        if removed:
            # Its live tokens still carry the scopes it lost.
            await self.revoke_tokens(directory, client_id, "scopes_reduced")
        self.result.rescoped.append(identity.service)

    async def _set_secret(self, directory: Directory, service: str, client_id: str, secret: str, reason: str) -> None:
        await directory.set_secret(PLATFORM_TENANT, client_id, await self.hasher.hash(secret), set_by=BOOTSTRAP_ACTOR)
        self.emit(PLATFORM_TENANT, "client", client_id, "secret_rotated", reason=reason)
        await self.revoke_tokens(directory, client_id, "secret_rotated")
        self.result.rotated.append(service)

    async def _disable(self, directory: Directory, client_id: str, reason: str) -> None:
        _, changed = await directory.disable_client(PLATFORM_TENANT, client_id)
        if changed:
            self.emit(PLATFORM_TENANT, "client", client_id, "disabled", reason=reason)
            await self.revoke_tokens(directory, client_id, "client_disabled")

    async def retire_undeclared(self, directory: Directory, declared: set[str]) -> None:
        for purpose, client_id in (await directory.bootstrap_clients(PURPOSE_PREFIX)).items():
            service = purpose.removeprefix(PURPOSE_PREFIX)
            if service in declared:
                continue
            await self._disable(directory, client_id, "the service no longer declares an identity")
            await directory.forget_bootstrap_client(purpose)
            self.stale_files.append(self._file(service))
            self.result.retired.append(service)

    def _write(self, service: str, client_id: str, secret: str) -> None:
        self.files[self._file(service)] = {
            "service": service,
            "client_id": client_id,
            "client_secret": secret,
            "token_url": self.token_url,
        }
