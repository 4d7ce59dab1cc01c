"""The client tier's authenticated line to the server: its own OAuth2 client, through the gateway.

The client tier reaches the platform only through the gateway, each program with its own client
holding only its scope (data-collector ``market:write``, metatrader-connector's venue link
``venue``). The token handling is the platform's one client side of OAuth2
(``shared.auth.client.ClientIdentity``: fetched, renewed, replaced on a 401, refused
credentials not hammered); this module adds where the program's credentials come from and
the clock skew it measures against the server.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from pydantic import SecretStr

from shared.auth.client import ClientCredentials, ClientIdentity, NoCredentials, credentials_from_file

if TYPE_CHECKING:
    from shared.kit.service import Runtime

log = logging.getLogger(__name__)

#: A clock skew against the server beyond this is logged (the server refuses ticks > 60 s ahead).
SKEW_WARNING_S = 30.0
#: The collector's entry in the bootstrap's ``var/credentials.json`` (the default).
CREDENTIALS_ENTRY = "data-collector"


def server_time(response: httpx.Response) -> float | None:
    """The server's clock when it answered (its ``Date`` header, 1 s resolution), as a Unix time."""
    try:
        return email.utils.parsedate_to_datetime(response.headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


class ServerClient:
    """Requests to the server through the gateway, with the program's own token (``ClientIdentity``).

    The credentials are the environment's, else the ``entry`` of the credentials file (``data-collector``
    by default), read whenever a token is fetched; if the configured secret was refused and the file
    has another, the file's is used. Every answer's ``Date`` header measures the clock skew
    against the server (``clock_skew_s``).
    """

    def __init__(
        self,
        base_url: str,
        token_url: str,
        credentials: ClientCredentials | None,
        credentials_file: Path,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        entry: str = CREDENTIALS_ENTRY,
        settings_hint: str = "DATA_COLLECTOR_CLIENT_ID/_SECRET",
    ) -> None:
        self._entry = entry
        self._settings_hint = settings_hint
        self._base = base_url.rstrip("/")
        self._configured = credentials
        self._file = credentials_file
        self._http = http
        self._wall_clock = wall_clock
        self.identity = ClientIdentity(token_url, self._credentials, http, clock=clock)
        #: The server's clock minus ours, in seconds, from the last answer's ``Date`` (None: not measured yet).
        self.clock_skew_s: float | None = None
        self._skew_logged = False

    @property
    def auth_problem(self) -> str | None:
        """Why no token can be had right now (no or refused credentials, a lockout), for readiness."""
        return self.identity.auth_problem

    def _credentials(self) -> ClientCredentials:
        from_file = credentials_from_file(self._file, self._entry)
        creds = self._configured or from_file
        if creds is None:
            raise NoCredentials(f"no client credentials: set {self._settings_hint} or provide {self._file}")
        refused = self.identity.refused
        if creds == refused and from_file is not None and from_file != refused:
            creds = from_file  # the configured secret was refused; the file has another one
        return creds

    async def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        """POST ``body`` as JSON; raises ``httpx.HTTPError`` (``TokenRequestFailed``, ``NoCredentials`` among them)."""
        return await self._request("POST", path, json=body, headers=headers)

    async def put(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """PUT ``body`` as JSON; raises as ``post``."""
        return await self._request("PUT", path, json=body)

    async def get(self, path: str) -> httpx.Response:
        """GET ``path``; raises as ``post``."""
        return await self._request("GET", path)

    async def _request(self, method: str, path: str, **options: Any) -> httpx.Response:
        response = await self._http.request(method, self._base + path, auth=self.identity, **options)
        self._measure_skew(response)
        return response

    def _measure_skew(self, response: httpx.Response) -> None:
        server = server_time(response)
        if server is None:
            return
        self.clock_skew_s = server - self._wall_clock()
        if abs(self.clock_skew_s) > SKEW_WARNING_S and not self._skew_logged:
            self._skew_logged = True
            log.warning(
                "this host's clock is %.0fs %s the server's: ticks more than 60 s ahead of the server are refused "
                "until its clock catches up (they are retried, not dropped); synchronise the clocks (NTP)",
                abs(self.clock_skew_s),
                "behind" if self.clock_skew_s > 0 else "ahead of",
            )
        elif abs(self.clock_skew_s) <= SKEW_WARNING_S:
            self._skew_logged = False


class ServerLinkSettings(Protocol):
    """The settings of a client-tier program that talks to the server (collector, connector)."""

    @property
    def server_url(self) -> str | None: ...
    @property
    def token_url(self) -> str | None: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def client_secret(self) -> SecretStr | None: ...


def server_client(
    rt: Runtime[Any, Any],
    settings: ServerLinkSettings,
    *,
    entry: str = CREDENTIALS_ENTRY,
    wall_clock: Callable[[], float] = time.time,
) -> ServerClient:
    """The program's ``ServerClient``: the gateway (or ``server_url``), its token endpoint, and its
    credentials from the settings, else the ``entry`` of ``var/credentials.json``."""
    server_url = rt.url_of("api-gateway", override=settings.server_url)
    configured = (
        ClientCredentials(settings.client_id, settings.client_secret.get_secret_value())
        if settings.client_id and settings.client_secret
        else None
    )
    prefix = rt.definition.entry.env_prefix
    return ServerClient(
        server_url,
        settings.token_url or server_url.rstrip("/") + "/oauth2/token",
        configured,
        rt.platform.hats_var_dir / "credentials.json",
        rt.http,
        wall_clock=wall_clock,
        entry=entry,
        settings_hint=f"{prefix}CLIENT_ID/_SECRET",
    )
