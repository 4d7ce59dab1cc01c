"""First start: the platform tenant, its admin client, the data-collector client and the MT5 venue link's.

Idempotent and safe when several instances start at once: everything happens in one
transaction under a PostgreSQL advisory lock, and which client *is* the bootstrap
admin is recorded (``users.bootstrap_clients``), not inferred.

Secrets generated here are written once to ``<HATS_VAR_DIR>/credentials.json``
(mode 0600, created exclusively) and exist nowhere else: the database keeps only
their hashes. An operator can instead choose the admin's id and secret with
``HATS_ADMIN_CLIENT_ID`` / ``HATS_ADMIN_CLIENT_SECRET``; that secret is never written.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from services.user_service.outbox import BOOTSTRAP_ACTOR, Changes
from services.user_service.repository import Directory, Store
from services.user_service.secrets import SecretHasher, new_client_id, new_secret
from shared.auth.scopes import ADMIN, COMPLIANCE, MARKET_READ, MARKET_WRITE, PLATFORM_TENANT, TRADE, VENUE
from shared.events import Event
from shared.private_files import write_private
from shared.settings import MIN_OPERATOR_SECRET_CHARS, OPERATOR_CLIENT_ID_PATTERN

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "credentials.json"
ADMIN_PURPOSE = "admin"
COLLECTOR_PURPOSE = "data-collector"
ADMIN_SCOPES = (ADMIN, COMPLIANCE, MARKET_READ, TRADE)
ADMIN_GRANTS = ("client_credentials", "refresh_token")
COLLECTOR_SCOPES = (MARKET_WRITE,)
COLLECTOR_GRANTS = ("client_credentials",)
#: metatrader-connector's venue link (the platform tenant's MT5 accounts).
MT5_LINK_PURPOSE = "metatrader-connector"
MT5_LINK_SCOPES = (VENUE,)
MIN_OVERRIDE_SECRET_LENGTH = MIN_OPERATOR_SECRET_CHARS
_CLIENT_ID_PATTERN = re.compile(OPERATOR_CLIENT_ID_PATTERN)


class BootstrapError(RuntimeError):
    """The bootstrap cannot proceed as configured (a bad override, a clashing client id)."""


@dataclass(frozen=True)
class AdminOverride:
    """The admin client's id and secret as chosen by the operator."""

    client_id: str
    client_secret: str

    @classmethod
    def from_settings(cls, client_id: str | None, client_secret: str | None) -> AdminOverride | None:
        if client_id is None and client_secret is None:
            return None
        if not client_id or not client_secret:
            raise BootstrapError("set both HATS_ADMIN_CLIENT_ID and HATS_ADMIN_CLIENT_SECRET, or neither")
        if not _CLIENT_ID_PATTERN.match(client_id):
            raise BootstrapError("HATS_ADMIN_CLIENT_ID: 3-64 characters of A-Z a-z 0-9 _ . -")
        if len(client_secret) < MIN_OVERRIDE_SECRET_LENGTH:
            raise BootstrapError(f"HATS_ADMIN_CLIENT_SECRET: at least {MIN_OVERRIDE_SECRET_LENGTH} characters")
        return cls(client_id, client_secret)


@dataclass
class BootstrapResult:
    admin_client_id: str
    collector_client_id: str
    #: Purposes whose client this run created ("admin", "data-collector").
    created: list[str] = field(default_factory=list)
    #: Where new secrets were written, if any were generated.
    credentials_path: Path | None = None
    #: Recorded in the outbox with the changes; to publish once the broker is up.
    events: list[Event] = field(default_factory=list)


async def bootstrap(
    store: Store,
    hasher: SecretHasher,
    *,
    var_dir: Path,
    token_url: str,
    override: AdminOverride | None = None,
    token_lifetime_s: float = 960.0,
) -> BootstrapResult:
    """Ensure the platform tenant, the bootstrap admin and the data-collector client exist.

    An admin whose secret the operator changed, or replaced, loses its live tokens
    (``ClientTokensRevoked``, kept ``token_lifetime_s``): changing it says the old one may be known.
    """
    run = _Run(hasher, override, token_lifetime_s)
    async with store.transaction() as directory:
        await directory.lock_bootstrap()
        if await directory.ensure_tenant(PLATFORM_TENANT, "Platform operator"):
            run.emit(PLATFORM_TENANT, "tenant", PLATFORM_TENANT, "created", name="Platform operator")
        admin_id = await run.ensure_admin(directory)
        collector_id = await run.ensure_collector(directory)
        mt5_link_id = await run.ensure_mt5_link(directory)
        result = BootstrapResult(admin_id, collector_id, run.created, events=run.events)
        path = var_dir / CREDENTIALS_FILE
        if run.secrets:
            # Written before the commit: if the file cannot be written the clients are rolled
            # back, rather than existing with secrets nobody will ever see.
            clients = {ADMIN_PURPOSE: admin_id, COLLECTOR_PURPOSE: collector_id, MT5_LINK_PURPOSE: mt5_link_id}
            _write_credentials(path, clients, run.secrets, token_url)
            result.credentials_path = path
        elif run.admin_secret_changed:
            _forget_admin_secret(path)
        await directory.record(run.events)
    for purpose in run.created:
        log.info("bootstrap created the %s client", purpose)
    return result


class _Run(Changes):
    """The state of one bootstrap: what it created, which secrets it generated, its events."""

    def __init__(self, hasher: SecretHasher, override: AdminOverride | None, token_lifetime_s: float) -> None:
        super().__init__(BOOTSTRAP_ACTOR, token_lifetime_s)
        self.hasher = hasher
        self.override = override
        self.created: list[str] = []
        #: Generated secrets by purpose; the operator's admin secret is never among them.
        self.secrets: dict[str, str] = {}
        self.admin_secret_changed = False

    async def ensure_admin(self, directory: Directory) -> str:
        if self.override is None:
            return await self._ensure_generated(directory, ADMIN_PURPOSE, "platform admin", ADMIN_SCOPES, ADMIN_GRANTS)
        current = await directory.bootstrap_client(ADMIN_PURPOSE)
        wanted = self.override
        if current == wanted.client_id:
            await self._match_secret(directory, wanted)
            return current
        if await directory.client_tenant(wanted.client_id) is not None:
            raise BootstrapError(
                f"HATS_ADMIN_CLIENT_ID {wanted.client_id} names an existing client that is not "
                "the bootstrap admin; choose another id"
            )
        await self._create(
            directory,
            ADMIN_PURPOSE,
            wanted.client_id,
            "platform admin",
            wanted.client_secret,
            ADMIN_SCOPES,
            ADMIN_GRANTS,
        )
        if current is not None:
            # The operator replaced the admin: the old one (whose secret may sit in
            # credentials.json) must not stay a second, forgotten way in.
            _, changed = await directory.disable_client(PLATFORM_TENANT, current)
            if changed:
                self.emit(PLATFORM_TENANT, "client", current, "disabled", reason="replaced by HATS_ADMIN_CLIENT_ID")
                await self.revoke_tokens(directory, current, "client_disabled")
            self.admin_secret_changed = True
            log.warning(
                "bootstrap admin %s replaced by %s (HATS_ADMIN_CLIENT_ID); the old one is disabled",
                current,
                wanted.client_id,
            )
        return wanted.client_id

    async def ensure_collector(self, directory: Directory) -> str:
        return await self._ensure_generated(
            directory, COLLECTOR_PURPOSE, "data-collector", COLLECTOR_SCOPES, COLLECTOR_GRANTS
        )

    async def ensure_mt5_link(self, directory: Directory) -> str:
        return await self._ensure_generated(
            directory, MT5_LINK_PURPOSE, "metatrader-connector venue link", MT5_LINK_SCOPES, COLLECTOR_GRANTS
        )

    async def _ensure_generated(
        self, directory: Directory, purpose: str, name: str, scopes: tuple[str, ...], grants: tuple[str, ...]
    ) -> str:
        """The bootstrap client for ``purpose``; created with a generated id and secret if missing."""
        current = await directory.bootstrap_client(purpose)
        if current is not None:
            return current
        secret = new_secret()
        client_id = await self._create(directory, purpose, new_client_id(), name, secret, scopes, grants)
        self.secrets[purpose] = secret
        return client_id

    async def _match_secret(self, directory: Directory, wanted: AdminOverride) -> None:
        """Re-hash the admin's secret to the operator's, unless it already is that secret."""
        stored = await directory.secret_hash(PLATFORM_TENANT, wanted.client_id)
        if stored is not None and await self.hasher.verify(stored, wanted.client_secret):
            return
        await directory.set_secret(
            PLATFORM_TENANT, wanted.client_id, await self.hasher.hash(wanted.client_secret), set_by=BOOTSTRAP_ACTOR
        )
        self.admin_secret_changed = True
        self.emit(PLATFORM_TENANT, "client", wanted.client_id, "secret_rotated", reason="HATS_ADMIN_CLIENT_SECRET")
        await self.revoke_tokens(directory, wanted.client_id, "secret_rotated")

    async def _create(
        self,
        directory: Directory,
        purpose: str,
        client_id: str,
        name: str,
        secret: str,
        scopes: tuple[str, ...],
        grants: tuple[str, ...],
    ) -> str:
        client = await directory.insert_client(
            PLATFORM_TENANT, client_id, name, await self.hasher.hash(secret), scopes, grants, created_by=BOOTSTRAP_ACTOR
        )
        await directory.set_bootstrap_client(purpose, client_id)
        self.created.append(purpose)
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
        return client_id


def _write_credentials(path: Path, clients: dict[str, str], generated: dict[str, str], token_url: str) -> None:
    """Write every bootstrap client (``clients``: purpose -> client id) with the secrets generated now.

    A client created on an earlier start (a var/ that predates a newer bootstrap client) keeps
    the secret the earlier file holds for it: only its own run ever knew it.
    """
    try:
        earlier = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        earlier = {}
    document: dict[str, object] = {}
    for purpose, client_id in clients.items():
        secret = generated.get(purpose)
        previous = earlier.get(purpose) if isinstance(earlier, dict) else None
        if secret is None and isinstance(previous, dict) and previous.get("client_id") == client_id:
            secret = previous.get("client_secret")
        document[purpose] = _entry(client_id, secret)
    document["token_url"] = token_url
    write_private(path, orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    log.info("bootstrap credentials written to %s (mode 0600)", path)


def _entry(client_id: str, secret: str | None) -> dict[str, str]:
    # A secret not generated by this run (the operator's, or one set on an earlier start) is not known here.
    return {"client_id": client_id} if secret is None else {"client_id": client_id, "client_secret": secret}


def _forget_admin_secret(path: Path) -> None:
    """Drop a stale admin secret from an earlier credentials file (the operator replaced it)."""
    try:
        document = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return
    admin = document.get(ADMIN_PURPOSE)
    if isinstance(admin, dict) and admin.pop("client_secret", None) is not None:
        write_private(path, orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
