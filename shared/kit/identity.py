"""A service's own OAuth2 client at run time (kit dependency ``ServiceIdentity``).

The credentials are the operator's (``<PREFIX>CLIENT_ID`` / ``<PREFIX>CLIENT_SECRET``), else the
file user-service writes for the service. A background task keeps a token: it waits for the
credentials (user-service may start after this service; nothing crashes, ``/readyz`` says what
is missing), fetches a token, and renews it before it expires. Requests fetch one themselves if
they come first. Tokens go only to the services the contract calls.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import httpx

from shared.auth.client import (
    ClientCredentials,
    ClientIdentity,
    CredentialsRefused,
    NoCredentials,
    TokenEndpointLocked,
    credentials_from_file,
    service_credentials_file,
)
from shared.kit.deps import Resource
from shared.settings import IdentitySettings

if TYPE_CHECKING:
    from shared.kit.service import Runtime

log = logging.getLogger(__name__)

#: How often a missing credentials file is looked for again, seconds.
CREDENTIALS_POLL_S = 0.5
#: While the token endpoint refuses or is unreachable: first and longest pause between attempts.
#: (Refused credentials are not presented again before ``ClientIdentity``'s own pause is over.)
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
#: Never renew more often than this, even for a token of a very short life.
MIN_RENEW_S = 1.0


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or {"http": 80, "https": 443}.get(url.scheme)


class Targets:
    """The origins (scheme, host, port) a service's token may be sent to: the services it calls."""

    def __init__(self, urls: list[str]) -> None:
        self._origins = {_origin(httpx.URL(u)) for u in urls}

    def allow(self, url: str) -> None:
        self._origins.add(_origin(httpx.URL(url)))

    def __call__(self, url: httpx.URL) -> bool:
        return _origin(url) in self._origins


class ServiceAccount(Resource):
    """The opened ``ServiceIdentity``: the service's ``ClientIdentity``, kept supplied with a token."""

    readiness = "identity"

    def __init__(self, identity: ClientIdentity, targets: Targets, waiting_for: str) -> None:
        self.identity = identity
        self.targets = targets
        self._waiting_for = waiting_for
        self._ready = asyncio.Event()

    async def check(self) -> str | None:
        if self.identity.has_token:
            return None
        return self.identity.auth_problem or f"no access token yet ({self._waiting_for})"

    async def ready(self) -> None:
        """Wait until the service has held a token once (e.g. before a warm-up that calls another service)."""
        await self._ready.wait()

    async def keep_token(self) -> None:
        """Hold a token from the start on, renewed before it expires (a background task)."""
        pause = RETRY_FIRST_S
        while True:
            try:
                await self.identity.token()
            except NoCredentials:
                await asyncio.sleep(CREDENTIALS_POLL_S)
                continue
            except (CredentialsRefused, TokenEndpointLocked):
                # Raised at once while the pause lasts, unless the credentials changed (a new file): poll.
                await asyncio.sleep(CREDENTIALS_POLL_S * 4)
                continue
            except httpx.HTTPError as exc:
                log.warning("no token yet (%s: %s); trying again in %.1fs", type(exc).__name__, exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_MAX_S)
                continue
            if not self._ready.is_set():
                log.info("holding a token of this service's own client")
                self._ready.set()
            pause = RETRY_FIRST_S
            await asyncio.sleep(max(self.identity.renew_in_s(), MIN_RENEW_S))


def open_service_account(rt: Runtime[Any, Any], http: httpx.AsyncClient) -> ServiceAccount:
    """Attach the service's identity to ``http`` (``rt.http``) and start keeping its token."""
    settings = rt.settings
    assert isinstance(settings, IdentitySettings)  # ServiceIdentity.check_definition
    prefix = rt.entry.env_prefix
    path = service_credentials_file(rt.platform.hats_var_dir, rt.name)
    configured = (
        ClientCredentials(settings.client_id, settings.client_secret.get_secret_value())
        if settings.client_id is not None and settings.client_secret is not None
        else None
    )

    def credentials() -> ClientCredentials:
        found = configured or credentials_from_file(path)
        if found is None:
            raise NoCredentials(
                f"waiting for this service's credentials: {path} is not written yet (user-service writes it "
                f"when it starts) and {prefix}CLIENT_ID / {prefix}CLIENT_SECRET are not set"
            )
        return found

    gateway = rt.url_of("api-gateway")
    targets = Targets([rt.platform.url_of(name) for name in rt.definition.effective_contract.calls])
    identity = ClientIdentity(gateway + "/oauth2/token", credentials, http, applies_to=targets)
    http.auth = identity
    waiting_for = f"{prefix}CLIENT_ID is set" if configured else f"credentials from {path}"
    account = ServiceAccount(identity, targets, waiting_for)
    rt.background("identity", account.keep_token, restart_after_s=RETRY_MAX_S)
    return account


__all__ = ["ServiceAccount", "Targets", "open_service_account"]
